"""Write docs/settings.md from the settings classes (variables, defaults, descriptions).

python scripts/settings_doc.py          # rewrite docs/settings.md
python scripts/settings_doc.py --check  # exit 1 if it is not current (.ci/run)
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from companion.config import GROUPS, PREFIX, Settings, flat_names

DOC = Path(__file__).resolve().parents[1] / "docs" / "settings.md"
HEAD = """# Settings

Every setting is an environment variable with the `COMPANION_` prefix (some are also options of
`companion serve`: `--host`, `--port`, `--data-dir`). Migrations run at start (`companion db
upgrade` runs them alone). The code reads them grouped by concern (`settings.llm.base_url` is
`COMPANION_LLM_BASE_URL`). This page is written by `python scripts/settings_doc.py` from the
settings classes (`companion/config.py`); CI checks that it is current.
"""


def _default(field: FieldInfo) -> str:
    default = field.default
    if default is PydanticUndefined:
        factory = field.default_factory
        default = factory() if factory else None  # type: ignore[call-arg]
    if hasattr(default, "get_secret_value"):
        default = default.get_secret_value()
    if default is None or default == []:
        return "—"
    return f"`{default}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a bar would end the table's cell


def _table(rows: list[tuple[str, FieldInfo]]) -> str:
    lines = ["| variable | default | what it does |", "|---|---|---|"]
    lines += [
        f"| `{PREFIX}{flat.upper()}` | {_default(field)} | {_cell(field.description or '')} |"
        for flat, field in rows
    ]
    return "\n".join(lines)


def render() -> str:
    flat_of = {where: flat for flat, where in flat_names().items()}
    top = [(name, f) for name, f in Settings.model_fields.items() if name not in GROUPS]
    parts = [HEAD, "## The service\n", _table(top)]
    for group, model in GROUPS.items():
        rows = [(flat_of[(group, name)], f) for name, f in model.model_fields.items()]
        title = (model.__doc__ or group).strip().splitlines()[0]
        parts += [f"\n## `{group}`: {title}\n", _table(rows)]
    return "\n".join(parts) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not DOC.exists() or DOC.read_text(encoding="utf-8") != text:
            print("docs/settings.md is not current: run python scripts/settings_doc.py")
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
