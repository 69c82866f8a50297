"""Write docs/settings.md from the settings class (names, defaults, descriptions).

python scripts/settings_doc.py          # rewrite docs/settings.md
python scripts/settings_doc.py --check  # exit 1 if it is not current (.ci/run)
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic_core import PydanticUndefined

from companion.config import Settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "settings.md"
HEAD = """# Settings

Every setting is an environment variable with the `COMPANION_` prefix (some are also options of
`companion serve`: `--host`, `--port`, `--data-dir`). Migrations run at start (`companion db
upgrade` runs them alone). This page is written by `python scripts/settings_doc.py` from the
settings class (`companion/config.py`); CI checks that it is current.

| variable | default | what it does |
|---|---|---|
"""


def _default(field: object) -> str:
    default = getattr(field, "default", None)
    if default is PydanticUndefined:
        factory = getattr(field, "default_factory", None)
        default = factory() if factory else None  # type: ignore[misc]
    if default is None or default == []:
        return "—"
    return f"`{default}`"


def render() -> str:
    rows = [
        f"| `COMPANION_{name.upper()}` | {_default(field)} | {field.description or ''} |"
        for name, field in Settings.model_fields.items()
    ]
    return HEAD + "\n".join(rows) + "\n"


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
