"""How long one `select_next_job` takes with 100 running runs, at 20 000 and 200 000 candidates.

Each run is a 3-step tree grown breadth-first with gates off (N = 3): every base image has its
three step-2 children, most step-2 candidates have their three step-3 children, one in five is
still being filled, one candidate in twenty is rejected, and every candidate has the succeeded
job that made it. Ten times the candidates means ten times bigger trees, so a selection that
counted candidates in Python would cost ten times more.

Usage: python benchmarks/select_next_job.py [--calls 400]
Last line: median_ms=<20k median> ratio_10x=<200k median / 20k median>
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import time
from pathlib import Path

from common import fresh_database, percentile
from sqlalchemy import text

from db.engine import create_engine, create_session_factory
from orchestration.selection import select_next_job

RUNS = 100
STEPS = 3
N = 3


def populate(path: Path, per_run: int, rng: random.Random) -> int:
    """Fill the database directly with sqlite3 (fast bulk inserts); returns candidates made."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA foreign_keys=ON")
    now = "2026-01-01 00:00:00"
    con.execute(
        "INSERT INTO pipelines (id, name, description, source, created_at) "
        "VALUES (1, 'bench', '', '', ?)",
        (now,),
    )
    wf = json.dumps({"9": {"class_type": "SaveImage", "inputs": {}}})
    for pos in range(1, STEPS + 1):
        con.execute(
            "INSERT INTO pipeline_steps (pipeline_id, position, name, slug, workflow, "
            "variables) VALUES (1, ?, ?, ?, ?, '[]')",
            (pos, f"s{pos}", f"s{pos}", wf),
        )
    # A base image brings 1 + 3 + (0.8 * 3 + 0.2 * 1) * 3 = 11.8 candidates on average.
    bases = max(1, round(per_run / 11.8))
    next_id = 1
    cands: list[tuple] = []
    jobs: list[tuple] = []
    for run in range(1, RUNS + 1):
        con.execute(
            "INSERT INTO pipeline_runs (id, pipeline_id, name, status, variables, max_children, "
            'target_leaves, "order", gates, budget, top_k, base_quota, folder, created_by, '
            "created_at) VALUES (?, 1, ?, 'running', '{}', ?, 100000, 'breadth_first', 0, "
            "1000000, 3, ?, '', '', ?)",
            (run, f"run {run}", N, bases, now),
        )
        for pos in range(1, STEPS + 1):
            con.execute(
                "INSERT INTO pipeline_run_steps (run_id, step, step_id, approved) "
                "VALUES (?, ?, ?, ?)",
                (run, pos, pos, pos == 1),
            )

        def add(step: int, parent: int | None, run: int = run) -> int:
            nonlocal next_id
            cid = next_id
            next_id += 1
            status = "rejected" if rng.random() < 0.05 else "active"
            jobs.append((cid, run, step, parent, rng.randrange(1 << 24), now))
            cands.append((cid, run, step, parent, cid, rng.gauss(1000, 80), status, now))
            return cid

        for _ in range(bases):
            base = add(1, None)
            for _ in range(N):
                mid = add(2, base)
                for _ in range(N if rng.random() < 0.8 else rng.randrange(N)):
                    add(3, mid)
    con.executemany(
        "INSERT INTO jobs (id, run_id, step, parent_id, mode, reason, seed, status, attempts, "
        "created_at) VALUES (?, ?, ?, NULL, 'child_generation', '', ?, 'succeeded', 1, ?)",
        [(j[0], j[1], j[2], j[4], j[5]) for j in jobs],
    )
    con.executemany(
        "INSERT INTO image_candidates (id, run_id, step, parent_id, job_id, output_index, seed, "
        "image_path, elo, votes, status, advancing, child_slots, created_at) "
        "VALUES (?, ?, ?, ?, ?, 0, 0, 'x.png', ?, 0, ?, NULL, 0, ?)",
        cands,
    )
    con.execute(
        "UPDATE jobs SET parent_id = (SELECT parent_id FROM image_candidates c "
        "WHERE c.id = jobs.id)"
    )
    con.execute(
        "UPDATE image_candidates SET child_slots = (SELECT count(*) FROM "
        "image_candidates ch WHERE ch.parent_id = image_candidates.id)"
    )
    con.commit()
    con.execute("ANALYZE")
    con.close()
    return len(cands)


async def measure(url: str, calls: int) -> list[float]:
    engine = create_engine(url)
    factory = create_session_factory(engine)
    rng = random.Random(1)
    timings: list[float] = []
    async with factory() as session:
        for _ in range(calls + 20):
            t0 = time.perf_counter()
            decision = await select_next_job(session, rng)
            timings.append((time.perf_counter() - t0) * 1000)
            assert decision.has_work, decision.reason
            # Move the round-robin on, as claiming the job would (not timed).
            await session.execute(
                text("UPDATE scheduler_state SET last_run_id = :r"), {"r": decision.run_id}
            )
            await session.commit()
    await engine.dispose()
    return timings[20:]  # the first calls warm caches


ROUNDS = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    scales = []
    for per_run in (200, 2000):
        path, url = fresh_database(f"select-{per_run}")
        scales.append((populate(path, per_run, random.Random(per_run)), url))
    # The two sizes take turns, a quarter of the calls at a time, so a change in the machine's
    # load (a 2-core VM's neighbours) weighs on both alike instead of skewing their ratio.
    timings: list[list[float]] = [[] for _ in scales]
    for _ in range(ROUNDS):
        for times, (_, url) in zip(timings, scales, strict=True):
            times.extend(asyncio.run(measure(url, args.calls // ROUNDS)))
    medians = []
    for (made, _), t in zip(scales, timings, strict=True):
        med = statistics.median(t)
        medians.append(med)
        print(
            f"{RUNS} runs, {made} candidates: median {med:.2f} ms, "
            f"p95 {percentile(t, 95):.2f} ms over {len(t)} calls"
        )
    print(f"median_ms={medians[0]:.2f} ratio_10x={medians[1] / medians[0]:.2f}")


if __name__ == "__main__":
    main()
