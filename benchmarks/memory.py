"""The bot process's memory with 20 000 candidates in its database, at steady state.

A child process builds the database (100 running runs, about 20 000 candidates, with the bulk
insert of benchmarks/select_next_job.py), so this process holds only what the bot would: the
modules it imports (discord.py, SQLAlchemy, aiohttp, Pillow, the scheduler, the renderer), an
engine, and the work it repeats all day: `select_next_job` after every job, the ranked
candidates of steps (galleries, approvals), and claiming and completing jobs. RSS is sampled
after each phase with psutil; the figure is the highest sample.

Usage: python benchmarks/memory.py [--selections 2000] [--jobs 20]
Last line: rss_mb=<n>
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import subprocess
import sys
from pathlib import Path

import discord  # noqa: F401  (the bot process has it loaded)
import psutil
from common import fresh_database

import bot.render  # noqa: F401
import comfy.client  # noqa: F401
import scheduler.process  # noqa: F401
from db.engine import create_engine, create_session_factory
from orchestration.approvals import ranked_candidates
from orchestration.jobs import ClaimedJob, StoredImage, claim_next_job, complete_job
from orchestration.selection import runs_in_rotation, select_next_job

PER_RUN = 200  # 100 runs x ~200 = ~20 000 candidates
MB = 1024 * 1024


def build(path: Path) -> None:
    """Runs in the child process: bulk-insert the candidates."""
    from select_next_job import populate

    made = populate(path, PER_RUN, random.Random(PER_RUN))
    print(made)


class Meter:
    def __init__(self) -> None:
        self.process = psutil.Process()
        self.samples: list[tuple[str, float]] = []

    def sample(self, phase: str) -> None:
        gc.collect()
        rss = self.process.memory_info().rss / MB
        self.samples.append((phase, rss))
        print(f"  {phase:<44} rss {rss:6.1f} MB")

    @property
    def peak(self) -> float:
        return max(rss for _, rss in self.samples)


async def steady_state(url: str, selections: int, jobs: int, meter: Meter) -> None:
    engine = create_engine(url)
    sessions = create_session_factory(engine)
    rng = random.Random(1)
    meter.sample("engine open")
    async with sessions() as session:
        for _ in range(selections):
            decision = await select_next_job(session, rng)
            assert decision.has_work, decision.reason
    meter.sample(f"{selections} select_next_job")
    async with sessions() as session:
        runs = await runs_in_rotation(session)
        shown = 0
        for run_id in runs:
            for step in (1, 2, 3):
                shown += len(await ranked_candidates(session, run_id, step))
    meter.sample(f"ranked_candidates of {len(runs) * 3} steps ({shown} rows)")
    for _ in range(jobs):
        async with sessions() as session, session.begin():
            claimed = await claim_next_job(session, rng)
            assert isinstance(claimed, ClaimedJob), claimed.reason
            await complete_job(session, claimed.job_id, [StoredImage("bench.png", 0)])
    meter.sample(f"{jobs} jobs claimed and completed")
    async with sessions() as session:
        for _ in range(selections):
            await select_next_job(session, rng)
    meter.sample(f"{selections} more select_next_job")
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--selections", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        build(args.build)
        return
    meter = Meter()
    meter.sample("modules imported")
    path, url = fresh_database("memory")  # migrating is part of every start
    made = subprocess.run([sys.executable, __file__, "--build", str(path)], check=True,
                          capture_output=True, text=True).stdout.strip()
    print(f"database with {made} candidates in 100 running runs: "
          f"{path.stat().st_size / MB:.1f} MB on disk")
    meter.sample("database migrated and filled (by a child)")
    asyncio.run(steady_state(url, args.selections, args.jobs, meter))
    print(f"highest RSS {meter.peak:.1f} MB")
    print(f"rss_mb={meter.peak:.1f}")


if __name__ == "__main__":
    main()
