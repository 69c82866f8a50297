"""Prompt files under prompts/<feature>/: versioned text and data, one file per language.

A template's first line is `# version: N`; the rest is a langchain-core `PromptTemplate` in
its f-string form: `{name}` placeholders, literal braces (JSON examples) doubled as `{{ }}`.
Only `format` is used, never `invoke`: nothing goes through langchain's callbacks or tracing
(and `companion.config` refuses to start with LangSmith tracing switched on).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from langchain_core.prompts import PromptTemplate

from companion.method.phases import Language

# The repository's prompts/ by default; an installed deployment points COMPANION_PROMPTS_DIR at
# its copy.
PROMPTS = Path(
    os.environ.get("COMPANION_PROMPTS_DIR") or Path(__file__).resolve().parent.parent / "prompts"
)
# The placeholder style of string.Template: a file still written that way would be sent with
# `$name` in it, unfilled, so it is refused when loaded.
_DOLLAR_PLACEHOLDER = re.compile(r"\$\{?[A-Za-z_]\w*")


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    template: PromptTemplate

    @property
    def variables(self) -> list[str]:
        return list(self.template.input_variables)

    def render(self, **values: str) -> str:
        missing = set(self.template.input_variables) - values.keys()
        if missing:  # str.format would raise a bare KeyError
            raise KeyError(f"{self.name} needs {', '.join(sorted(missing))}")
        return self.template.format(**values)


def template(text: str, name: str) -> PromptTemplate:
    """A langchain PromptTemplate from f-string text, checked for leftover `$name`s."""
    stray = _DOLLAR_PLACEHOLDER.search(text)
    if stray:
        raise ValueError(f"{name}: '{stray.group(0)}' — placeholders are written {{name}}")
    return PromptTemplate.from_template(text, template_format="f-string")


def data_line(text: str) -> str:
    """Something said in the session, as data in a prompt: on one line, and unable to close
    the tags (<questions>, <learnings>…) it is placed between."""
    return " ".join(text.split()).replace("<", "‹").replace(">", "›")


@cache
def prompt(feature: str, name: str, language: Language) -> Prompt:
    path = PROMPTS / feature / f"{name}.{language}.md"
    first, _, body = path.read_text(encoding="utf-8").partition("\n")
    if not first.startswith("# version:"):
        raise ValueError(f"{path} must start with '# version: N'")
    full = f"{feature}/{name}.{language}"
    return Prompt(full, first.split(":", 1)[1].strip(), template(body, full))


@cache
def data(feature: str, name: str, language: Language) -> dict[str, Any]:
    path = PROMPTS / feature / f"{name}.{language}.toml"
    with path.open("rb") as handle:
        return tomllib.load(handle)
