"""Prompt files under prompts/<feature>/: versioned text and data, one file per language.

A template's first line is `# version: N`; `$name` placeholders are filled with string.Template,
so braces in JSON examples need no escaping.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

from companion.method.phases import Language

# The repository's prompts/ by default; an installed deployment points COMPANION_PROMPTS_DIR at
# its copy.
PROMPTS = Path(
    os.environ.get("COMPANION_PROMPTS_DIR")
    or Path(__file__).resolve().parent.parent.parent / "prompts"
)


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    template: Template

    def render(self, **values: str) -> str:
        return self.template.substitute(**values)


@cache
def prompt(feature: str, name: str, language: Language) -> Prompt:
    path = PROMPTS / feature / f"{name}.{language}.md"
    first, _, body = path.read_text(encoding="utf-8").partition("\n")
    if not first.startswith("# version:"):
        raise ValueError(f"{path} must start with '# version: N'")
    return Prompt(f"{feature}/{name}.{language}", first.split(":", 1)[1].strip(), Template(body))


@cache
def data(feature: str, name: str, language: Language) -> dict[str, Any]:
    path = PROMPTS / feature / f"{name}.{language}.toml"
    with path.open("rb") as handle:
        return tomllib.load(handle)
