"""One vote, committed: latency with 20 people voting at once on one step of 20 candidates.

Each simulated person taps like a quick human: looks at a pair for 100–400 ms, then votes
(uniform, seeded), 100 votes each, never the same pair twice: 2 000 votes in all. The latency
of a vote is from the call to its commit, queueing behind the others included (and behind the
background refits of the step's ratings, which take the same connection and CPU). Afterwards,
once the last refit has landed, the ratings are fitted once more from every stored vote; a
candidate whose stored rating differs from that fit is a lost update. A second
pass without any pause (every voter hammering) shows the worst case.

Usage: python benchmarks/vote.py [--voters 20] [--votes 2000]
Last line: p95_ms=<p95 of one committed vote> lost_updates=<n>
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import time
from pathlib import Path

from common import fresh_database_async, percentile
from sqlalchemy import select

from app.context import App
from app.pairs import vote
from app.refits import ratings_settled
from db.engine import create_engine, create_session_factory
from db.models import ImageCandidate, Vote
from orchestration.fit import fit_ratings
from orchestration.jobs import StoredImage, claim_next_job, complete_job
from orchestration.pipelines import import_pipeline
from orchestration.runs import RunSettings, create_run

CANDIDATES = 20
REPO = Path(__file__).resolve().parents[1]


async def setup(factory, tmp) -> tuple[int, list[int]]:
    async with factory() as s:
        await import_pipeline(s, REPO / "pipelines" / "cpu-demo")
        run = await create_run(s, "cpu-demo", "vote bench", {}, RunSettings(max_children=20))
        rng = random.Random(0)
        for i in range(CANDIDATES):
            job = await claim_next_job(s, rng)
            await complete_job(s, job.job_id, [StoredImage(f"c{i}.png", 0)])  # type: ignore[union-attr]
        await s.commit()
        ids = list(await s.scalars(select(ImageCandidate.id).order_by(ImageCandidate.id)))
    return run.run_id, ids


async def voter(factory, run_id, name, pairs, rng, pause, latencies):
    for a, b in pairs:
        if pause:
            await asyncio.sleep(rng.uniform(0.1, 0.4))
        winner, loser = (a, b) if rng.random() < 0.5 else (b, a)
        t0 = time.perf_counter()
        await vote(App(factory), run_id, winner, loser, name)
        latencies.append((time.perf_counter() - t0) * 1000)


async def lost_updates(factory, ids) -> int:
    async with factory() as s:
        stored = {
            cid: elo for cid, elo in await s.execute(select(ImageCandidate.id, ImageCandidate.elo))
        }
        votes = (
            await s.execute(select(Vote.winner_id, Vote.low_id, Vote.high_id).order_by(Vote.id))
        ).all()
    replay = fit_ratings((winner, low + high - winner, 1) for winner, low, high in votes)
    return sum(1 for cid in ids if abs(replay.elo(cid) - stored[cid]) > 1e-6)


async def one_pass(voters: int, votes: int, pause: bool) -> tuple[list[float], int, float]:
    path, url = await fresh_database_async("vote")
    engine = create_engine(url)
    factory = create_session_factory(engine)
    run_id, ids = await setup(factory, path.parent)
    all_pairs = list(itertools.combinations(ids, 2))
    per_voter = votes // voters
    latencies: list[float] = []
    tasks = []
    for v in range(voters):
        rng = random.Random(100 + v)
        tasks.append(
            voter(
                factory,
                run_id,
                f"voter-{v}",
                rng.sample(all_pairs, per_voter),
                rng,
                pause,
                latencies,
            )
        )
    t0 = time.perf_counter()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    await ratings_settled()
    lost = await lost_updates(factory, ids)
    await engine.dispose()
    return latencies, lost, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voters", type=int, default=20)
    parser.add_argument("--votes", type=int, default=2000)
    args = parser.parse_args()

    worst, worst_lost, worst_s = asyncio.run(one_pass(args.voters, args.votes, pause=False))
    print(
        f"no pauses: {len(worst)} votes in {worst_s:.1f} s ({len(worst) / worst_s:.0f}/s), "
        f"median {statistics.median(worst):.2f} ms, p95 {percentile(worst, 95):.2f} ms, "
        f"lost updates {worst_lost}"
    )
    lat, lost, secs = asyncio.run(one_pass(args.voters, args.votes, pause=True))
    print(
        f"human pace: {len(lat)} votes in {secs:.1f} s, median {statistics.median(lat):.2f} ms, "
        f"p95 {percentile(lat, 95):.2f} ms, p99 {percentile(lat, 99):.2f} ms"
    )
    print(f"p95_ms={percentile(lat, 95):.2f} lost_updates={lost + worst_lost}")


if __name__ == "__main__":
    main()
