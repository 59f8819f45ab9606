"""Migration 0003 (notice marks) on a real file: an 0002 database keeps its rows and gains
empty marks; the downgrade removes them and keeps the rows."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from alembic import command
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from db.migrate import alembic_config, current_revision, head_revision, upgrade_database


async def downgrade_database(url: str, revision: str) -> None:
    """As `upgrade_database` does: a connection of its own, SQLite's foreign keys off."""
    cfg = alembic_config(url)

    def run(connection: Connection) -> None:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run)
    finally:
        await engine.dispose()


def sql(path: Path, query: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as con:
        return con.execute(query).fetchall()


def columns(path: Path, table: str) -> set[str]:
    return {str(row[1]) for row in sql(path, f"PRAGMA table_info({table})")}


def seed_0002(path: Path) -> None:
    """A run with two steps, one approved, as an 0002 database holds it."""
    with closing(sqlite3.connect(path)) as con:
        con.executescript(
            """
            INSERT INTO pipelines (id, name, description, source, created_at)
                VALUES (1, 'p', '', '', '2026-01-01 00:00:00');
            INSERT INTO pipeline_steps (id, pipeline_id, position, name, slug, workflow, variables)
                VALUES (1, 1, 1, 'base', '01-base', '{}', '[]'),
                       (2, 1, 2, 'refine', '02-refine', '{}', '[]');
            INSERT INTO pipeline_runs (id, pipeline_id, name, status, variables, max_children,
                    target_leaves, "order", gates, budget, top_k, base_quota, folder, channel_id,
                    created_by, created_at)
                VALUES (1, 1, 'kept', 'running', '{}', 2, 10, 'breadth_first', 1, 200, 3, 2,
                    'run-0001-kept', 555, '', '2026-01-01 00:00:00');
            INSERT INTO pipeline_run_steps (run_id, step, step_id, approved, approved_by)
                VALUES (1, 1, 1, 1, 'system'), (1, 2, 2, 0, NULL);
            """
        )


async def test_0002_database_gains_empty_marks_and_loses_them_on_downgrade(tmp_path):
    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_database(url, "0002")
    seed_0002(path)

    await upgrade_database(url)  # also checks that no reference dangles
    assert await current_revision(url) == head_revision()
    assert "no_work_notified_at" in columns(path, "pipeline_runs")
    assert "awaiting_notified_at" in columns(path, "pipeline_run_steps")
    # Nothing was ever posted before 0003: every notice is still due once.
    assert sql(path, "SELECT name, channel_id, no_work_notified_at FROM pipeline_runs") == [
        ("kept", 555, None)
    ]
    assert sql(
        path, "SELECT step, approved, awaiting_notified_at FROM pipeline_run_steps ORDER BY step"
    ) == [(1, 1, None), (2, 0, None)]

    await downgrade_database(url, "0002")
    assert await current_revision(url) == "0002"
    assert "no_work_notified_at" not in columns(path, "pipeline_runs")
    assert "awaiting_notified_at" not in columns(path, "pipeline_run_steps")
    assert sql(path, "SELECT name FROM pipeline_runs") == [("kept",)]
    assert sql(path, "SELECT count(*) FROM pipeline_run_steps") == [(2,)]
    assert sql(path, "PRAGMA foreign_key_check") == []

    await upgrade_database(url)  # and up again
    assert await current_revision(url) == head_revision()
