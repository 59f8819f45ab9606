"""Every module, function or setting the docs name in backticks (`app.pairs.answer`,
`orchestration/votes.py`) exists, so the docs cannot drift from the code unseen."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("app", "bot", "cogs", "comfy", "db", "orchestration", "scheduler")
DOTTED = re.compile(r"`((?:{})(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`".format("|".join(OURS)))
PATH = re.compile(r"`((?:{})/[A-Za-z0-9_/]*(?:\.py|/))`".format("|".join(OURS)))
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_what_the_docs_name_exists(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    names = {n for n in DOTTED.findall(text) if not n.endswith(".py")}
    missing = [name for name in sorted(names) if not resolves(name)]
    missing += [path for path in sorted(set(PATH.findall(text))) if not (ROOT / path).exists()]
    assert not missing, f"{doc.name} names what the code does not have: {', '.join(missing)}"
