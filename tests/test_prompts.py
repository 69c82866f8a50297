"""Prompt files: every one loads as a langchain PromptTemplate and fills completely."""

from __future__ import annotations

import re

import pytest

from companion import prompts
from companion.config import Settings
from companion.method.phases import Language

FILES = sorted(prompts.PROMPTS.glob("*/*.md"))


def test_there_are_prompt_files() -> None:
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_prompt_fills_every_placeholder(path) -> None:
    feature, (name, language, _) = path.parent.name, path.name.split(".")
    template = prompts.prompt(feature, name, Language(language))
    assert template.version.isdigit()
    values = {v: f"<{v.upper()}>" for v in template.variables}
    text = template.render(**values)
    for marker in values.values():
        assert marker in text
    # No placeholder is left unfilled, and doubled braces became JSON braces.
    assert not re.search(r"\{[a-z_]+\}|\$[a-z_]+|\{\{", text)


def test_braces_in_values_are_kept_as_they_are() -> None:
    retry = prompts.prompt("gateway", "retry", Language.en)
    assert "{x} ${y}" in retry.render(problem="{x} ${y}")


def test_a_missing_value_is_named() -> None:
    with pytest.raises(KeyError, match="problem"):
        prompts.prompt("gateway", "retry", Language.en).render()


def test_a_dollar_placeholder_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\$name"):
        prompts.template("Hello $name", "test")


@pytest.mark.parametrize("variable", ["LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"])
def test_langsmith_tracing_refuses_to_start(monkeypatch, variable) -> None:
    monkeypatch.setenv(variable, "true")
    with pytest.raises(ValueError, match="off the premises"):
        Settings()
    monkeypatch.setenv(variable, "false")
    Settings()
