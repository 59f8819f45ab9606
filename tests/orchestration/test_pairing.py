"""Active pairing and the confidence of a step's top k (docs/voting.md)."""

from __future__ import annotations

import math
import random

import pytest
from sqlalchemy import insert

from app.refits import finish_refits
from db.base import utcnow
from db.models import Vote
from orchestration.approvals import awaiting_approval
from orchestration.confidence import top_k_confidence
from orchestration.errors import NotFound
from orchestration.pairing import SETTLED_AT, Phase, next_pair
from orchestration.runs import RunSettings
from tests.committed import approve_step, record_vote, reject_candidate
from tests.factories import add_candidate, make_pipeline, make_run


async def step_awaiting(session, tmp_path, n=6, k=2):
    """A run whose step 2 holds n candidates and awaits approval."""
    await make_pipeline(session, tmp_path, steps=3)
    run = await make_run(session, settings=RunSettings(max_children=n, budget=n + 1, top_k=k))
    parent = await add_candidate(session, run, 1)
    ids = [await add_candidate(session, run, 2, parent) for _ in range(n)]
    assert await awaiting_approval(session, run) == [2]
    return run, ids


class Taste:
    """A seeded voter whose true order is the order of `ids`, adjacent win chance p_adj."""

    def __init__(self, ids, p_adj=0.7, seed=0):
        gap = math.log(p_adj / (1 - p_adj))
        self.strength = {cid: -gap * rank for rank, cid in enumerate(ids)}
        self.rng = random.Random(seed)

    def judge(self, a, b):
        p = 1 / (1 + math.exp(self.strength[b] - self.strength[a]))
        return (a, b) if self.rng.random() < p else (b, a)


async def test_warm_up_shows_every_candidate_first(session, tmp_path):
    run, ids = await step_awaiting(session, tmp_path, n=7)
    taste, rng = Taste(ids), random.Random(1)
    seen: set[int] = set()
    phases = []
    for v in range(12):
        decision = await next_pair(session, run, f"p{v}", rng=rng)
        assert decision.step == 2 and decision.k == 2
        phases.append(decision.phase)
        if decision.phase is not Phase.warm_up:
            break
        assert decision.pair is not None
        seen.update(decision.pair)
        await record_vote(session, run, *taste.judge(*decision.pair), f"p{v}")
    assert seen == set(ids)
    assert phases[:4] == [Phase.warm_up] * 4  # 7 candidates: 4 pairs cover them
    assert phases[-1] is Phase.boundary


async def test_a_person_never_sees_a_pair_twice(session, tmp_path):
    run, ids = await step_awaiting(session, tmp_path, n=5)
    taste, rng = Taste(ids, p_adj=0.55), random.Random(2)
    shown: list[frozenset[int]] = []
    for _ in range(12):
        decision = await next_pair(session, run, "alice", rng=rng)
        if decision.pair is None:
            break
        shown.append(frozenset(decision.pair))
        await record_vote(session, run, *taste.judge(*decision.pair), "alice")
    assert len(shown) >= 5
    assert len(set(shown)) == len(shown)
    # Someone else may still be shown what alice already judged.
    other = await next_pair(session, run, "bob", rng=rng)
    assert other.pair is not None


async def test_a_person_who_judged_every_pair_is_told_so(session, tmp_path):
    run, ids = await step_awaiting(session, tmp_path, n=3, k=1)
    for a, b in [(0, 1), (1, 2), (2, 0)]:  # a cycle: nothing is certain
        await record_vote(session, run, ids[a], ids[b], "alice")
    decision = await next_pair(session, run, "alice")
    assert decision.pair is None and decision.phase is Phase.nothing
    assert "every pair" in decision.message
    assert (await next_pair(session, run, "bob")).pair is not None


async def add_votes(session, run, step, results):
    """Votes written straight to the table, as many people would have cast them."""
    rows = [
        {"run_id": run, "step": step, "low_id": min(w, lo), "high_id": max(w, lo),
         "winner_id": w, "voter": f"v{i}", "created_at": utcnow()}
        for i, (w, lo) in enumerate(results)
    ]
    await session.execute(insert(Vote), rows)
    await session.commit()


async def test_a_certain_top_k_is_reported_settled(session, tmp_path):
    run, ids = await step_awaiting(session, tmp_path, n=6, k=2)
    top, rest = ids[:2], ids[2:]
    # Each of the two beat each of the others 10 times in 11.
    won = [(t, r) for t in top for r in rest for _ in range(10)]
    await add_votes(session, run, 2, won + [(r, t) for t in top for r in rest])
    decision = await next_pair(session, run, "alice")
    assert decision.phase is Phase.settled and decision.pair is None
    assert decision.message == "The top 2 of step 2 are settled — ready to /approve."
    confidence = await top_k_confidence(session, run, 2, 2)
    assert set(confidence.top_ids) == set(top)
    assert confidence.probability >= SETTLED_AT
    assert confidence.few_votes_warning is None
    assert confidence.label.startswith("very likely")


async def test_an_uncertain_top_k_asks_for_the_boundary_and_warns(session, tmp_path):
    run, ids = await step_awaiting(session, tmp_path, n=6, k=2)
    # Everyone has played once; the order is a guess.
    await add_votes(session, run, 2, [(ids[0], ids[1]), (ids[2], ids[3]), (ids[4], ids[5])])
    decision = await next_pair(session, run, "alice")
    assert decision.phase is Phase.boundary
    confidence = await top_k_confidence(session, run, 2, 2)
    assert confidence.probability < 0.5
    assert confidence.few_votes_warning is not None
    assert f"{round(100 * confidence.probability)} %" in confidence.few_votes_warning


async def test_the_boundary_pair_is_the_least_certain_difference(session, tmp_path):
    run, ids = await step_awaiting(session, tmp_path, n=4, k=1)
    a, b, c, d = ids
    # a is clearly first over c and d; b has one win over c. a vs b is the open question.
    await add_votes(
        session, run, 2, [(a, c)] * 6 + [(a, d)] * 6 + [(c, d)] * 3 + [(b, c)] + [(b, d)] * 2
    )
    decision = await next_pair(session, run, "alice")
    assert decision.phase is Phase.boundary
    assert set(decision.pair) == {a, b}


async def test_a_rejected_candidate_is_never_paired_and_leaves_the_top(session, tmp_path):
    run, ids = await step_awaiting(session, tmp_path, n=5, k=2)
    taste, rng = Taste(ids), random.Random(3)
    for v in range(6):
        decision = await next_pair(session, run, f"p{v}", rng=rng)
        await record_vote(session, run, *taste.judge(*decision.pair), f"p{v}")
    before = await top_k_confidence(session, run, 2, 2)
    dropped = before.top_ids[0]
    await reject_candidate(session, run, dropped, "alice")
    for v in range(15):
        decision = await next_pair(session, run, f"q{v}", rng=rng)
        if decision.pair is None:
            break
        assert dropped not in decision.pair
        await record_vote(session, run, *taste.judge(*decision.pair), f"q{v}")
    after = await top_k_confidence(session, run, 2, 2)
    assert dropped not in after.top_ids and len(after.top_ids) == 2


async def test_the_step_awaiting_approval_comes_before_step_1(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=3)
    run = await make_run(session, settings=RunSettings(max_children=3, budget=8, top_k=1))
    parents = [await add_candidate(session, run, 1) for _ in range(2)]
    ids = [await add_candidate(session, run, 2, p) for p in parents for _ in range(3)]
    assert await awaiting_approval(session, run) == [2]
    decision = await next_pair(session, run, "alice")
    assert decision.step == 2 and decision.pair is not None
    won = [(ids[0], other) for other in ids[1:] for _ in range(10)]
    await add_votes(session, run, 2, won + [(other, ids[0]) for other in ids[1:]])
    await add_votes(session, run, 2, [(a, b) for a in ids[1:] for b in ids[1:] if a < b])
    decision = await next_pair(session, run, "alice")
    assert (decision.step, decision.phase, decision.pair) == (2, Phase.settled, None)
    assert decision.message == "The top 1 of step 2 are settled — ready to /approve."


async def test_a_settled_step_that_can_still_grow_is_settled_for_now(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=3)
    run = await make_run(session, settings=RunSettings(max_children=6, budget=20, top_k=1))
    parent = await add_candidate(session, run, 1)
    ids = [await add_candidate(session, run, 2, parent) for _ in range(3)]
    assert await awaiting_approval(session, run) == []
    won = [(ids[0], other) for other in ids[1:] for _ in range(10)]
    await add_votes(session, run, 2, won + [(other, ids[0]) for other in ids[1:]])
    await add_votes(session, run, 2, [(ids[1], ids[2])])
    decision = await next_pair(session, run, "alice")
    assert (decision.step, decision.phase, decision.pair) == (2, Phase.settled, None)
    assert decision.message == "The top 1 of step 2 are settled for now."


async def test_an_approved_step_takes_no_more_pairs(session, tmp_path):
    run, _ = await step_awaiting(session, tmp_path, n=4, k=2)
    await approve_step(session, run, 2, 2, "alice")
    decision = await next_pair(session, run, "alice")
    assert decision.step != 2
    assert decision.pair is None  # step 1 has one candidate, step 3 none
    assert decision.phase is Phase.nothing


async def test_an_unknown_run(session):
    with pytest.raises(NotFound, match="#999"):
        await next_pair(session, 999, "alice")


async def test_votes_through_the_policy_settle_on_the_true_top(session, tmp_path):
    """End to end with a clear taste: the policy stops, and the top k it stops at are right."""
    run, ids = await step_awaiting(session, tmp_path, n=6, k=2)
    taste, rng = Taste(ids, p_adj=0.85, seed=4), random.Random(4)
    for v in range(200):
        decision = await next_pair(session, run, f"p{v}", rng=rng)
        if decision.pair is None:
            break
        await record_vote(session, run, *taste.judge(*decision.pair), f"p{v}")
    assert decision.phase is Phase.settled, f"not settled after {v} votes"
    await session.commit()  # end the read: the background refit needs the one connection
    await finish_refits()
    confidence = await top_k_confidence(session, run, 2, 2)
    assert set(confidence.top_ids) == set(ids[:2])
