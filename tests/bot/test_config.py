"""docs/configuration.md lists every setting with the default the code has."""

from __future__ import annotations

import re
from pathlib import Path

from bot.config import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def documented() -> dict[str, str]:
    rows = re.findall(r"^\| `([A-Z_]+)` \| (.+?) \|", DOC.read_text(), flags=re.MULTILINE)
    return dict(rows)


def test_every_setting_is_documented_and_nothing_else():
    assert set(documented()) == {name.upper() for name in Settings.model_fields}


def test_documented_defaults_match_the_code():
    for name, default in documented().items():
        field = Settings.model_fields[name.lower()]
        if field.is_required() or field.default in (None, ""):
            continue  # "—", "none" or a computed default in the table
        value = getattr(field.default, "value", field.default)  # enums by their value
        if isinstance(value, bool):
            value = str(value).lower()
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        assert f"`{value}`" == default.strip(), name
