"""How long the run option's autocomplete takes, and how many SQL statements, with 500 runs.

250 of the runs are completed, 250 running, each of a three-step pipeline with candidates, so a
choice list that asked per run whether it has work or awaits approval would show here as
hundreds of statements. Each keystroke is one call of the bot's own `running_run_choices`; the
typed text cycles through what a person types ("", "#1", "gym", "#42 m", ...).

Usage: python benchmarks/autocomplete.py [--calls 300]
Last line: median_ms=<median per keystroke> statements=<most statements one keystroke ran>
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

from common import fresh_database
from sqlalchemy import event

from app.context import App
from cogs.common import running_run_choices
from db.engine import create_engine, create_session_factory

RUNS = 500
TYPED = ["", "#1", "gym", "#42 m", "sofa 3", "run", "#49", "zzz"]


def populate(path: Path) -> None:
    con = sqlite3.connect(path)
    now = "2026-01-01 00:00:00"
    con.execute("INSERT INTO pipelines (id, name, description, source, created_at) "
                "VALUES (1, 'bench', '', '', ?)", (now,))
    wf = json.dumps({"9": {"class_type": "SaveImage", "inputs": {}}})
    for pos in range(1, 4):
        con.execute("INSERT INTO pipeline_steps (pipeline_id, position, name, slug, workflow, "
                    "variables) VALUES (1, ?, ?, ?, ?, '[]')", (pos, f"s{pos}", f"s{pos}", wf))
    for run in range(1, RUNS + 1):
        status = "completed" if run % 2 else "running"
        name = ("morning gym " if run % 3 else "sofa ") + str(run)
        con.execute(
            "INSERT INTO pipeline_runs (id, pipeline_id, name, status, variables, max_children, "
            'target_leaves, "order", gates, budget, top_k, base_quota, folder, created_by, '
            "created_at) VALUES (?, 1, ?, ?, '{}', 3, 10, 'breadth_first', 1, 100, 3, 3, ?, '',"
            " ?)", (run, name, status, f"run-{run:04d}", now))
        for pos in range(1, 4):
            con.execute("INSERT INTO pipeline_run_steps (run_id, step, step_id, approved) "
                        "VALUES (?, ?, ?, ?)", (run, pos, pos, int(pos == 1)))
    con.commit()
    con.close()


class StandIn:
    """What `running_run_choices` reads of the bot."""

    def __init__(self, sessions: Any) -> None:
        self.app = App(sessions)


async def measure(url: str, calls: int) -> tuple[float, int]:
    engine = create_engine(url)
    statements: list[int] = [0]

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _count(*_: Any) -> None:
        statements[-1] += 1

    bot = StandIn(create_session_factory(engine))
    times, most = [], 0
    try:
        for i in range(calls):
            statements.append(0)
            start = time.perf_counter()
            typed = TYPED[i % len(TYPED)]
            choices = await running_run_choices(bot, typed)  # type: ignore[arg-type]
            times.append((time.perf_counter() - start) * 1000)
            most = max(most, statements[-1])  # the transaction's BEGIN counts too
            assert len(choices) <= 25
    finally:
        await engine.dispose()
    return statistics.median(times), most


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    path, url = fresh_database("autocomplete")
    populate(path)
    median_ms, statements = asyncio.run(measure(url, args.calls))
    print(f"{RUNS} runs ({RUNS // 2} completed), {args.calls} keystrokes")
    print(f"median_ms={median_ms:.2f} statements={statements}")


if __name__ == "__main__":
    main()
