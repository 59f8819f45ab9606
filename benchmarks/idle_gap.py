"""How long the GPU waits between jobs: one prompt's end to the next one's start, server side.

The real Scheduler drives one simulated ComfyUI worker whose prompts take 0.5 s each. Three runs
of the cpu-demo pipeline with gates off, N = 2 and T = 1 make 2 + 4 + 8 = 14 jobs each, 42 in all,
with no person to wait for, so every gap is the scheduler's own: noticing the end, downloading
and storing the image, recording the candidate, choosing and claiming the next job, uploading its
parent image and submitting it. Gaps come from `SimulatedComfy.idle_gaps()`.

Usage: python benchmarks/idle_gap.py [--duration 0.5] [--runs 3]
Last line: median_ms=<n> p95_ms=<n>
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

from common import fresh_database_async, percentile

from comfy.simulator import SimulatedComfy
from db.engine import create_engine, create_session_factory
from orchestration.pipelines import import_pipeline
from orchestration.runs import RunSettings, create_run
from scheduler.process import Scheduler

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "cpu-demo"
SETTINGS = RunSettings(max_children=2, target_leaves=1, gates=False)


async def measure(duration: float, runs: int) -> tuple[list[float], list[float], float]:
    """Idle gaps (ms), prompt run times (s, server side) and the wall-clock seconds."""
    _, url = await fresh_database_async("idle-gap")
    engine = create_engine(url)
    sessions = create_session_factory(engine)
    async with sessions() as session:
        await import_pipeline(session, PIPELINE)
        for index in range(runs):
            await create_run(session, "cpu-demo", f"bench {index + 1}", {}, SETTINGS)
        await session.commit()
    folder = Path(tempfile.mkdtemp(prefix="bench-idle-gap-"))
    async with SimulatedComfy(duration=duration, root=folder / "comfy", seed=1) as sim:
        scheduler = Scheduler(sessions, [sim.url], folder / "data", rng=random.Random(1),
                              tick_seconds=30)
        started = time.monotonic()
        await scheduler.start()
        try:
            async with asyncio.timeout(600):
                await scheduler.wait_idle()
        finally:
            await scheduler.stop()
        elapsed = time.monotonic() - started
        gaps = sim.idle_gaps()
        spans = [t.ended - t.started for t in sim.timings
                 if t.started is not None and t.ended is not None]
    await engine.dispose()
    return [g * 1000 for g in gaps], spans, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=0.5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    gaps, spans, elapsed = asyncio.run(measure(args.duration, args.runs))
    median, p95 = statistics.median(gaps), percentile(gaps, 95)
    print(f"{len(spans)} jobs of {args.duration:g} s over {args.runs} runs, one worker: "
          f"{elapsed:.1f} s wall clock, ComfyUI busy {sum(spans) / elapsed:.0%} of it "
          f"(a prompt took {statistics.median(spans) * 1000:.0f} ms server side, median)")
    print(f"idle gaps ({len(gaps)}): median {median:.1f} ms, p95 {p95:.1f} ms, "
          f"min {min(gaps):.1f} ms, max {max(gaps):.1f} ms")
    print(f"median_ms={median:.1f} p95_ms={p95:.1f}")


if __name__ == "__main__":
    main()
