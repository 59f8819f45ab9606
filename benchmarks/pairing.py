"""Votes until the exact top-k is right: active pairing against uniformly random pairs.

A simulated noisy voter judges a step of n candidates whose true strengths are evenly spaced:
each candidate beats the next one down with probability --p-adj. With probability --lapse a tap
is random, and --position-bias is the extra chance of tapping the pair's first image (A). Every
tap is a different person by default (a crowd with one taste); --voters V makes V people take
turns, and then nobody is shown a pair twice.

Per seed:
- active: in a real SQLite file (a run of the cpu-demo pipeline whose step 2 holds n candidates
  and awaits approval), the bot's own loop — `next_pair` → simulated tap → `record_vote` — until
  the policy says the top k is settled, or --active-cap votes (default 20·n: a curator approves
  at some point); its answer then stands. Scored with the code /approve uses: `refit_step`
  (the Bradley–Terry fit of the step's votes), then `ranked_candidates`.
- random: uniformly random pairs judged by the same voter, scored with the same fit
  (`fit_ratings`) and ranking rule (`ranking_key`) in memory, up to --max-votes.
Both are scored at checkpoints (every 2 votes up to 100, then ever sparser). V90 is the fewest
votes from which on the top-k set is exactly right in at least 90 % of seeds. For the
Elo-or-Bradley–Terry decision, online Elo (K = 32) is replayed over the same votes. Finally one
pair decision is timed at n = 30.

Usage: python benchmarks/pairing.py [--n 20] [--k 3] [--p-adj 0.65] [--lapse 0]
       [--position-bias 0] [--seeds 200] [--max-votes 3000] [--voters 0] [--workers 2]
       [--active-cap 20·n]
Last line: active_v90=<n> random_v90=<n> ratio=<active/random>
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from common import fresh_database

from app.context import App
from app.pairs import vote
from app.refits import ratings_settled
from db.engine import SessionFactory, create_engine, create_session_factory
from db.models import ImageCandidate
from orchestration.approvals import awaiting_approval, ranked_candidates
from orchestration.fit import fit_ratings
from orchestration.pairing import next_pair
from orchestration.pipelines import import_pipeline
from orchestration.ranking import ranking_key
from orchestration.refits import refit_step
from orchestration.runs import RunSettings, create_run

REPO = Path(__file__).resolve().parents[1]
STEP = 2
ELO_K = 32.0


@dataclass(frozen=True)
class Options:
    n: int
    k: int
    p_adj: float
    lapse: float
    position_bias: float
    max_votes: int
    voters: int
    active_cap: int = 0  # the active loop stops here at the latest (0: --max-votes)


@dataclass(frozen=True)
class SeedResult:
    active: list[bool]  # top-k right at each checkpoint
    random: list[bool]
    elo_active: list[bool]
    elo_random: list[bool]
    stopped_at: int | None  # votes when the policy said settled
    right_when_stopped: bool | None


def checkpoints(max_votes: int) -> list[int]:
    points, v = [], 0
    while v < max_votes:
        v += 2 if v < 100 else 5 if v < 300 else 10 if v < 1000 else 25
        points.append(min(v, max_votes))
    return points


class Voter:
    """One taste, noisy: P(A wins) = logistic(θA − θB) + position bias; lapses tap at random."""

    def __init__(self, strength: dict[int, float], opts: Options, rng: random.Random) -> None:
        self.strength, self.opts, self.rng = strength, opts, rng

    def winner(self, a: int, b: int) -> int:
        if self.rng.random() < self.opts.lapse:
            return a if self.rng.random() < 0.5 else b
        p = 1.0 / (1.0 + math.exp(-(self.strength[a] - self.strength[b])))
        return a if self.rng.random() < min(1.0, p + self.opts.position_bias) else b


async def make_step(factory: SessionFactory, name: str, opts: Options) -> tuple[int, list[int]]:
    """A run whose step 2 holds n candidates and awaits approval (nothing else can grow)."""
    async with factory() as s:
        settings = RunSettings(max_children=opts.n, budget=opts.n + 1, top_k=opts.k)
        run = (await create_run(s, "cpu-demo", name, {}, settings)).run_id
        parent = ImageCandidate(run_id=run, step=1, seed=0, image_path="base.png", advancing=True,
                                child_slots=opts.n)
        s.add(parent)
        await s.flush()
        children = [
            ImageCandidate(
                run_id=run, step=STEP, parent_id=parent.id, seed=i, image_path=f"{i}.png"
            )
            for i in range(opts.n)
        ]
        s.add_all(children)
        await s.commit()
        assert await awaiting_approval(s, run) == [STEP]
        return run, [c.id for c in children]


async def top_k_right(factory: SessionFactory, run: int, k: int, best: set[int]) -> bool:
    async with factory() as s:
        await refit_step(s, run, STEP)
        return {c.id for c in await ranked_candidates(s, run, STEP, limit=k)} == best


def elo_right(
    votes: list[tuple[int, int]], points: list[int], ids: list[int], k: int, best: set[int]
) -> list[bool]:
    """Online Elo (K = 32) replayed over the votes: is its top k right at each checkpoint?"""
    ratings = dict.fromkeys(ids, 1000.0)
    right, done = [], 0
    for point in points:
        for w, lo in votes[done:point]:
            win = 1.0 / (1.0 + math.pow(10.0, (ratings[lo] - ratings[w]) / 400.0))
            delta = ELO_K * (1.0 - win)
            ratings[w] += delta
            ratings[lo] -= delta
        done = max(done, min(point, len(votes)))
        right.append(set(sorted(ids, key=lambda c: (-ratings[c], c))[:k]) == best)
    return right


def fitted_right(results: Counter[tuple[int, int]], ids: list[int], k: int, best: set[int]) -> bool:
    """The product's fit (`fit_ratings`) and ranking rule (`ranking_key`) of these results."""
    fit = fit_ratings((w, lo, times) for (w, lo), times in results.items())
    ranked = sorted(ids, key=lambda c: ranking_key(fit.elo(c), fit.votes(c), c))
    return set(ranked[:k]) == best


async def run_seed(template: Path, seed: int, opts: Options) -> SeedResult:
    folder = Path(tempfile.mkdtemp(prefix="bench-pairing-"))
    shutil.copyfile(template, folder / "bench.db")
    engine = create_engine(f"sqlite+aiosqlite:///{folder / 'bench.db'}")
    factory = create_session_factory(engine)
    try:
        async with factory() as s:
            await import_pipeline(s, REPO / "pipelines" / "cpu-demo")
            await s.commit()
        rng = random.Random(seed)
        points = checkpoints(opts.max_votes)
        step = math.log(opts.p_adj / (1.0 - opts.p_adj))

        # Active: the bot's loop.
        run, ids = await make_step(factory, "active", opts)
        order = rng.sample(ids, len(ids))  # which id is best is random, not the lowest
        strength = {cid: -step * rank for rank, cid in enumerate(order)}
        best = set(order[: opts.k])
        voter = Voter(strength, opts, rng)
        taken: list[tuple[int, int]] = []
        active: list[bool] = []
        stopped_at = None
        cap = opts.active_cap or opts.max_votes
        for point in points:
            if stopped_at is not None or point > cap:
                active.append(active[-1])  # nothing changes once the policy stops
                continue
            while len(taken) < point:
                person = f"person-{len(taken) % opts.voters if opts.voters else len(taken)}"
                async with factory() as s:
                    decision = await next_pair(s, run, person, rng=rng)
                if decision.pair is None:
                    stopped_at = len(taken)
                    break
                a, b = decision.pair
                w = voter.winner(a, b)
                lo = b if w == a else a
                await vote(App(factory), run, w, lo, person)
                taken.append((w, lo))
            active.append(await top_k_right(factory, run, opts.k, best))
        right_when_stopped = active[-1] if stopped_at is not None else None
        elo_active = elo_right(taken, points, ids, opts.k, best)

        # Random: the same voter and rating code (in memory: the votes of a step are all the
        # fit needs), uniformly random pairs.
        order_r = rng.sample(ids, len(ids))
        voter_r = Voter({c: -step * r for r, c in enumerate(order_r)}, opts, rng)
        best_r = set(order_r[: opts.k])
        votes_r: list[tuple[int, int]] = []
        results: Counter[tuple[int, int]] = Counter()
        rand: list[bool] = []
        for point in points:
            while len(votes_r) < point:
                a, b = rng.sample(ids, 2)
                w = voter_r.winner(a, b)
                lo = b if w == a else a
                votes_r.append((w, lo))
                results[(w, lo)] += 1
            rand.append(fitted_right(results, ids, opts.k, best_r))
        elo_random = elo_right(votes_r, points, ids, opts.k, best_r)
        await ratings_settled()
        return SeedResult(active, rand, elo_active, elo_random, stopped_at, right_when_stopped)
    finally:
        await engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)


def seed_job(args: tuple[Path, int, Options]) -> SeedResult:
    return asyncio.run(run_seed(*args))


def v90(rows: list[list[bool]], points: list[int]) -> int | None:
    share = np.mean(np.array(rows, dtype=float), axis=0)
    for i in range(len(points)):
        if (share[i:] >= 0.9).all():
            return points[i]
    return None


async def decision_cost(template: Path, n: int, k: int) -> list[float]:
    """Milliseconds per `next_pair` at a step of n candidates after 3n votes."""
    folder = Path(tempfile.mkdtemp(prefix="bench-pairing-cost-"))
    shutil.copyfile(template, folder / "bench.db")
    engine = create_engine(f"sqlite+aiosqlite:///{folder / 'bench.db'}")
    factory = create_session_factory(engine)
    opts = Options(n, k, 0.65, 0.0, 0.0, 0, 0)
    try:
        async with factory() as s:
            await import_pipeline(s, REPO / "pipelines" / "cpu-demo")
            await s.commit()
        run, ids = await make_step(factory, "cost", opts)
        rng = random.Random(1)
        voter = Voter({c: -0.62 * r for r, c in enumerate(ids)}, opts, rng)
        for v in range(3 * n):
            async with factory() as s:
                decision = await next_pair(s, run, f"p{v}", rng=rng)
            if decision.pair is None:
                break
            a, b = decision.pair
            w = voter.winner(a, b)
            await vote(App(factory), run, w, b if w == a else a, f"p{v}")
        await ratings_settled()
        times = []
        for i in range(50):
            t0 = time.perf_counter()
            async with factory() as s:
                await next_pair(s, run, f"timer{i}", rng=rng)
            times.append((time.perf_counter() - t0) * 1000)
        return times
    finally:
        await engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)


def fmt(v: int | None) -> str:
    return "never" if v is None else str(v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--p-adj", type=float, default=0.65)
    parser.add_argument("--lapse", type=float, default=0.0)
    parser.add_argument("--position-bias", type=float, default=0.0)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--max-votes", type=int, default=3000)
    parser.add_argument("--voters", type=int, default=0, help="0: every tap a new person")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--active-cap",
        type=int,
        default=0,
        help="active votes at most; the answer then stands (default 20·n, as a curator "
        "approves at some point)",
    )
    args = parser.parse_args()
    opts = Options(
        args.n,
        args.k,
        args.p_adj,
        args.lapse,
        args.position_bias,
        args.max_votes,
        args.voters,
        args.active_cap or 20 * args.n,
    )
    template, _ = fresh_database("pairing")
    t0 = time.perf_counter()
    jobs = [(template, seed, opts) for seed in range(args.seeds)]
    results = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for done, result in enumerate(pool.map(seed_job, jobs), start=1):
            results.append(result)
            print(f"\r{done}/{args.seeds} seeds", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    elapsed = time.perf_counter() - t0
    points = checkpoints(args.max_votes)
    active = v90([r.active for r in results], points)
    rand = v90([r.random for r in results], points)
    elo_active = v90([r.elo_active for r in results], points)
    elo_random = v90([r.elo_random for r in results], points)
    stops = [r.stopped_at for r in results if r.stopped_at is not None]
    right = [r.right_when_stopped for r in results if r.right_when_stopped is not None]

    print(
        f"n={args.n} k={args.k} p_adj={args.p_adj} lapse={args.lapse} "
        f"position_bias={args.position_bias} seeds={args.seeds} max_votes={args.max_votes} "
        f"voters={args.voters or 'a new person each tap'}; "
        f"{elapsed:.0f} s on {args.workers} workers"
    )
    print(f"V90 (exact top-{args.k} right in >= 90 % of seeds from then on), votes:")
    print(f"  Bradley-Terry, active pairing: {fmt(active)}")
    print(f"  Bradley-Terry, random pairs:   {fmt(rand)}")
    print(f"  online Elo K=32, the same active votes: {fmt(elo_active)}")
    print(f"  online Elo K=32, the same random votes: {fmt(elo_random)}")
    if stops:
        print(
            f"policy said settled in {len(stops)}/{len(results)} seeds, median after "
            f"{statistics.median(stops):.0f} votes (max {max(stops)}); top-{args.k} right then "
            f"in {100 * sum(right) / len(right):.0f} %"
        )
    cost = asyncio.run(decision_cost(template, 30, args.k))
    print(
        f"pair decision at n=30 (after 90 votes): median {statistics.median(cost):.1f} ms, "
        f"max {max(cost):.1f} ms"
    )
    ratio = f"{active / rand:.3f}" if active is not None and rand is not None else "none"
    print(f"active_v90={fmt(active)} random_v90={fmt(rand)} ratio={ratio}")


if __name__ == "__main__":
    main()
