"""How soon a restarted bot takes in a prompt that ended while it was down or starting.

One scheduler posts a prompt to a simulated ComfyUI and is stopped while the prompt runs; a
second scheduler on the same database and data folder then starts, either after the prompt has
ended ("down": it is found in the history at reconciliation) or at once, while it still runs
("during": its end frame reaches the new process, which gives ComfyUI the same client id). The
figure is the time from the later of the new start and the prompt's end to the candidate being
in the database. Both schedulers poll history only every 30 s, so a figure under that comes
from reconciliation or from the websocket, not from polling.

Usage: python benchmarks/restart_ingest.py [--repeats 5]
Last line: down_ms=<median> during_ms=<median>
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import tempfile
import time
from pathlib import Path

from common import fresh_database_async
from sqlalchemy import func, select

from comfy.simulator import SimulatedComfy
from db.engine import SessionFactory, create_engine, create_session_factory
from db.models import ImageCandidate
from orchestration.pipelines import import_pipeline
from orchestration.runs import RunSettings, create_run
from scheduler.process import Scheduler

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "cpu-demo"
SLOW_POLL = {"idle_poll_interval": 30.0, "poll_interval": 30.0, "silence_after": 30.0}
PROMPT_SECONDS = 1.0


async def ingested(sessions: SessionFactory) -> float:
    """Poll until the one candidate exists; returns when it was seen (time.monotonic)."""
    while True:
        async with sessions() as session:
            if await session.scalar(select(func.count()).select_from(ImageCandidate)):
                return time.monotonic()
        await asyncio.sleep(0.002)


async def once(wait_for_end: bool, seed: int) -> float:
    _, url = await fresh_database_async("restart-ingest")
    engine = create_engine(url)
    sessions = create_session_factory(engine)
    async with sessions() as session:
        await import_pipeline(session, PIPELINE)
        await create_run(session, "cpu-demo", "bench", {}, RunSettings(max_children=1, budget=1))
        await session.commit()
    folder = Path(tempfile.mkdtemp(prefix="bench-restart-ingest-"))

    def scheduler() -> Scheduler:
        return Scheduler(sessions, [sim.url], folder / "data", rng=random.Random(seed),
                         tick_seconds=60, client_options=SLOW_POLL)

    async with SimulatedComfy(duration=PROMPT_SECONDS, root=folder / "comfy", seed=seed) as sim:
        first = scheduler()
        await first.start()
        async with asyncio.timeout(30):
            await sim.wait_running()
        await first.stop()
        if wait_for_end:
            async with asyncio.timeout(30):
                await sim.wait_idle()
        second = scheduler()
        up = time.monotonic()
        await second.start()
        try:
            async with asyncio.timeout(30):
                seen = await ingested(sessions)
        finally:
            await second.stop()
        [timing] = sim.timings
        assert timing.ended is not None
        since = max(up, timing.ended)
    await engine.dispose()
    return (seen - since) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    down = [asyncio.run(once(True, seed)) for seed in range(args.repeats)]
    during = [asyncio.run(once(False, seed)) for seed in range(args.repeats)]
    for name, values in (("ended while down", down), ("ended while starting", during)):
        print(f"{name} ({len(values)}): median {statistics.median(values):.0f} ms, "
              f"max {max(values):.0f} ms")
    print(f"down_ms={statistics.median(down):.0f} during_ms={statistics.median(during):.0f}")


if __name__ == "__main__":
    main()
