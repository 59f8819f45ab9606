"""A start-up cut short during its schema upgrade: the next start finishes the job. Each
broken file here is built by hand as an interrupted upgrade of an older release left it."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from db.migrate import MigrationError, current_revision, head_revision, upgrade_database
from tests.db.old_database import kept_rows, seed_0001, sql, tables


def execute(path: Path, *statements: str) -> None:
    with closing(sqlite3.connect(path)) as con, con:
        for statement in statements:
            con.execute(statement)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "curator.db"


def url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def at_head(path: Path) -> set[str]:
    """A file migrated from scratch: the tables every upgraded one must end up with."""
    fresh = path.with_name("fresh.db")
    await upgrade_database(url(fresh))
    return tables(fresh)


@pytest.mark.parametrize("version_table", ["absent", "empty"])
async def test_first_start_cut_short_is_started_over(path, version_table):
    """Tables made, no revision stamped yet, one batch copy begun: every table is empty, so
    nothing is lost by building the schema again."""
    await upgrade_database(url(path), "0001")
    execute(
        path,
        "DROP TABLE alembic_version" if version_table == "absent"
        else "DELETE FROM alembic_version",
        "CREATE TABLE _alembic_tmp_pipeline_runs AS SELECT * FROM pipeline_runs",
    )

    await upgrade_database(url(path))

    assert await current_revision(url(path)) == head_revision()
    assert tables(path) == await at_head(path)


async def test_batch_copy_cut_short_is_dropped_and_the_upgrade_runs(path):
    """A copy of image_candidates half made next to the intact original: the original has
    every row, the copy is thrown away and the upgrade runs again."""
    await upgrade_database(url(path), "0001")
    seed_0001(path)
    before = kept_rows(path)
    execute(
        path,
        "CREATE TABLE _alembic_tmp_image_candidates AS SELECT * FROM image_candidates LIMIT 3",
    )

    await upgrade_database(url(path))

    assert await current_revision(url(path)) == head_revision()
    assert tables(path) == await at_head(path)
    assert kept_rows(path) == before
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]


async def test_tables_with_rows_but_no_revision_are_left_alone(path):
    """Which revision the rows belong to is unknown: the start stops and changes nothing."""
    await upgrade_database(url(path), "0001")
    seed_0001(path)
    execute(path, "DELETE FROM alembic_version")
    before = kept_rows(path), tables(path)

    with pytest.raises(MigrationError) as refused:
        await upgrade_database(url(path))

    message = str(refused.value)
    assert "\n" not in message
    assert "no schema revision" in message and "backup" in message and str(path) in message
    assert (kept_rows(path), tables(path)) == before


async def test_batch_copy_without_its_original_is_left_alone(path):
    """The original table is gone: its rows may be only in the copy, which is not thrown away."""
    await upgrade_database(url(path), "0001")
    seed_0001(path)
    execute(path, "ALTER TABLE votes RENAME TO _alembic_tmp_votes")
    before = tables(path)

    with pytest.raises(MigrationError) as refused:
        await upgrade_database(url(path))

    message = str(refused.value)
    assert "\n" not in message and "_alembic_tmp_votes" in message and "backup" in message
    assert tables(path) == before
    assert sql(path, "SELECT count(*) FROM _alembic_tmp_votes") == [(39,)]


async def test_failed_upgrade_leaves_the_file_as_it_was(path):
    """Every revision of one start is applied in one transaction: when the check at its end
    fails, not a table, column or stamp of it remains."""
    await upgrade_database(url(path), "0001")
    seed_0001(path)
    execute(path, "UPDATE image_candidates SET parent_id = 999 WHERE id = 1")  # dangles
    schema = sql(path, "SELECT type, name, sql FROM sqlite_master ORDER BY name")

    with pytest.raises(MigrationError, match="dangling"):
        await upgrade_database(url(path))

    assert await current_revision(url(path)) == "0001"
    assert sql(path, "SELECT type, name, sql FROM sqlite_master ORDER BY name") == schema
