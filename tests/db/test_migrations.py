"""The schema: migrations build what the models declare, and constraints hold in SQLite."""

from __future__ import annotations

import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from db.base import Base
from db.engine import create_engine
from db.migrate import current_revision, head_revision, upgrade_database
from db.models import ImageCandidate, PipelineRunStep, Vote
from tests.factories import add_candidate, make_pipeline, make_run


async def test_empty_database_is_upgraded_to_head(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/sub/dir/new.db"  # folders are created too
    await upgrade_database(url)
    assert await current_revision(url) == head_revision()
    await upgrade_database(url)  # a second start changes nothing
    assert await current_revision(url) == head_revision()


async def test_migrated_schema_matches_models(db_url):
    engine = create_engine(db_url)
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
        )
    await engine.dispose()
    assert diff == []


def test_old_database_is_upgraded(tmp_path):
    """A file at an older revision (here: none) is brought to head without losing rows."""
    import asyncio

    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"
    asyncio.run(upgrade_database(url, "0001"))
    con = sqlite3.connect(path)
    con.execute("INSERT INTO pipelines (name, description, source, created_at) "
                "VALUES ('kept', '', '', '2026-01-01 00:00:00')")
    con.commit()
    con.close()
    asyncio.run(upgrade_database(url))
    assert sqlite3.connect(path).execute("SELECT name FROM pipelines").fetchall() == [("kept",)]


async def test_foreign_keys_are_enforced(session, tmp_path):
    await make_pipeline(session, tmp_path)
    run = await make_run(session)
    session.add(ImageCandidate(run_id=run, step=9, seed=1, image_path="x"))  # no step 9
    with pytest.raises(IntegrityError, match="FOREIGN KEY"):
        await session.commit()
    await session.rollback()
    fk = await session.scalar(text("PRAGMA foreign_keys"))
    assert fk == 1


async def test_unique_run_step_and_vote_pair(session, tmp_path):
    await make_pipeline(session, tmp_path)
    run = await make_run(session)
    rs = await session.get_one(PipelineRunStep, (run, 1))
    session.expunge(rs)
    session.add(PipelineRunStep(run_id=run, step=1, step_id=rs.step_id))
    with pytest.raises(IntegrityError):
        await session.commit()
    await session.rollback()

    a = await add_candidate(session, run, 1)
    b = await add_candidate(session, run, 1)
    session.add(Vote(run_id=run, step=1, low_id=a, high_id=b, winner_id=a, voter="v"))
    await session.commit()
    session.add(Vote(run_id=run, step=1, low_id=a, high_id=b, winner_id=b, voter="v"))
    with pytest.raises(IntegrityError, match="UNIQUE"):
        await session.commit()
    await session.rollback()
    session.add(Vote(run_id=run, step=1, low_id=b, high_id=a, winner_id=b, voter="w"))
    with pytest.raises(IntegrityError, match="CHECK"):
        await session.commit()


async def test_selection_query_uses_its_index(session, tmp_path):
    await make_pipeline(session, tmp_path)
    run = await make_run(session)
    plan = (await session.execute(text(
        "EXPLAIN QUERY PLAN SELECT id, elo FROM image_candidates WHERE run_id = :r "
        "AND status = 'active' AND step < 3 AND child_slots < 3 AND advancing IS 1"),
        {"r": run})).all()
    assert any("ix_image_candidates_selection" in str(row) for row in plan), plan


def test_upgrading_to_0006_keeps_rows_and_never_gives_their_ids_again(tmp_path):
    """0006 copies the tables whose ids outlive their rows into AUTOINCREMENT ones: the rows
    stay, and the counter starts at the highest id, so deleting the newest run frees no id."""
    import asyncio

    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"
    asyncio.run(upgrade_database(url, "0005"))

    def add_run(con: sqlite3.Connection, run_id: int | None) -> None:
        con.execute(
            "INSERT INTO pipeline_runs (id, pipeline_id, name, status, variables, max_children, "
            "target_leaves, \"order\", gates, budget, top_k, base_quota, folder, created_by, "
            "created_at) VALUES (?, 1, 'r', 'running', '{}', 1, 1, 'breadth_first', 1, 1, 1, 1, "
            "'run-r', '', '2026-01-01 00:00:00')", (run_id,))

    with sqlite3.connect(path) as con:
        con.execute("INSERT INTO pipelines (id, name, description, source, created_at) "
                    "VALUES (1, 'p', '', '', '2026-01-01 00:00:00')")
        add_run(con, 7)
    asyncio.run(upgrade_database(url))
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT id, name FROM pipeline_runs").fetchall() == [(7, "r")]
        con.execute("DELETE FROM pipeline_runs WHERE id = 7")
        add_run(con, None)
        assert con.execute("SELECT id FROM pipeline_runs").fetchall() == [(8,)]
