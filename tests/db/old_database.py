"""A database at revision 0001 holding rows in every table, written with plain SQL as the
0001 schema has it, and the means to compare its rows before and after an upgrade."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

STAMP = "'2026-01-01 00:00:00'"


def seed_0001(path: Path, candidates: int = 40) -> None:
    """One pipeline of two steps, a run with `candidates` images from as many jobs, and votes."""
    statements = [
        f"INSERT INTO pipelines VALUES (1, 'p', '', '', {STAMP})",
        "UPDATE scheduler_state SET last_run_id = 1",
        "INSERT INTO pipeline_steps VALUES (1, 1, 1, 'base', '01-base', '{}', '[]'),"
        " (2, 1, 2, 'refine', '02-refine', '{}', '[]')",
        "INSERT INTO pipeline_runs (id, pipeline_id, name, status, variables, max_children,"
        " target_leaves, \"order\", gates, budget, top_k, base_quota, folder, channel_id,"
        f" created_by, created_at) VALUES (1, 1, 'kept', 'running', '{{}}', 2, 10,"
        f" 'breadth_first', 1, 200, 3, 2, 'run-0001-kept', 555, '', {STAMP})",
        "INSERT INTO pipeline_run_steps (run_id, step, step_id, approved)"
        " VALUES (1, 1, 1, 1), (1, 2, 2, 0)",
    ]
    for i in range(1, candidates + 1):
        statements.append(
            "INSERT INTO jobs (id, run_id, step, mode, reason, seed, payload, prompt_id, status,"
            f" attempts, created_at) VALUES ({i}, 1, 1, 'base_generation', 'base', {i},"
            f" '{{\"1\": {{}}}}', 'prompt-{i}', 'succeeded', 1, {STAMP})"
        )
        statements.append(
            "INSERT INTO image_candidates (id, run_id, step, job_id, output_index, seed,"
            " image_path, elo, votes, status, child_slots, created_at)"
            f" VALUES ({i}, 1, 1, {i}, 0, {i}, 'run-0001-kept/01-base/job-{i:06d}-0.png',"
            f" 1000.0, 0, 'active', 0, {STAMP})"
        )
    for low in range(1, candidates):
        statements.append(
            "INSERT INTO votes (id, run_id, step, low_id, high_id, winner_id, voter, created_at)"
            f" VALUES ({low}, 1, 1, {low}, {low + 1}, {low + low % 2}, 'v', {STAMP})"
        )
    with closing(sqlite3.connect(path)) as con, con:
        for statement in statements:
            con.execute(statement)


def sql(path: Path, query: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as con:
        return con.execute(query).fetchall()


def tables(path: Path) -> set[str]:
    rows = sql(path, "SELECT name FROM sqlite_master WHERE type = 'table'")
    return {str(name) for (name,) in rows}


KEPT = {
    "pipelines": "id, name",
    "scheduler_state": "id, last_run_id",
    "pipeline_steps": "id, pipeline_id, position, slug",
    "pipeline_runs": "id, name, status, folder, channel_id",
    "pipeline_run_steps": "run_id, step, step_id, approved",
    "jobs": "id, run_id, step, seed, prompt_id, status",
    "image_candidates": "id, run_id, step, job_id, seed, image_path, status",
    "votes": "id, low_id, high_id, winner_id, voter",
}


def kept_rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """The columns of every 0001 table that no later revision changes, row by row."""
    return {
        table: sql(path, f"SELECT {columns} FROM {table} ORDER BY 1, 2")
        for table, columns in KEPT.items()
    }
