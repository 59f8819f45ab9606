"""Migrations are frozen: what an upgrade does to old data never follows later product code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from db.migrate import upgrade_database
from tests.db.old_database import seed_0001, sql

VERSIONS = Path(__file__).resolve().parents[2] / "db" / "migrations" / "versions"
PRODUCT = {"app", "bot", "cogs", "comfy", "db", "orchestration", "scheduler"}


@pytest.mark.parametrize("migration", sorted(VERSIONS.glob("*.py")), ids=lambda p: p.stem)
def test_a_migration_imports_no_product_code(migration):
    tree = ast.parse(migration.read_text())
    for node in ast.walk(tree):
        names = (
            [a.name for a in node.names] if isinstance(node, ast.Import)
            else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        )
        for name in names:
            assert name.split(".")[0] not in PRODUCT, f"{migration.name} imports {name}"


async def test_upgrading_a_first_version_database_holding_votes_fits_them_as_0002_did(tmp_path):
    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_database(url, "0001")
    seed_0001(path, candidates=6)  # votes 1-2 won by 2, 2-3 by 2, 3-4 by 4, ...
    await upgrade_database(url)
    rows = sql(path, "SELECT id, round(elo, 2), round(elo_sd, 2), votes FROM image_candidates"
                     " ORDER BY id")
    assert rows == PINNED


# What revision 0002 made of those votes when it was written.
PINNED = [
    (1, 862.11, 439.14, 1),
    (2, 1255.07, 428.94, 2),
    (3, 783.39, 419.46, 2),
    (4, 1216.61, 419.46, 2),
    (5, 744.93, 428.94, 2),
    (6, 1137.89, 439.14, 1),
]
