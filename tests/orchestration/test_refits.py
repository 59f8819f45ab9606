"""Storing a step's fitted ratings after its votes (docs/voting.md, "Ratings")."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

import app.refits
from app.refits import REFIT_DELAY, finish_refits, ratings_settled
from db.models import ImageCandidate, Vote
from orchestration.fit import PRIOR_ELO_SD, fit_ratings
from orchestration.refits import step_ratings
from tests.committed import record_vote, refit_step
from tests.factories import add_candidate, make_pipeline, make_run


async def step_of_four(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=2)
    run = await make_run(session)
    ids = [await add_candidate(session, run, 1, elo=e) for e in (1000, 1100, 900, 1000)]
    return run, ids


async def ratings(session, ids):
    """The stored ratings once the background refits have run, run at once rather than after
    REFIT_DELAY (test_a_burst_of_votes_costs_one_refit_after_the_delay keeps the delay)."""
    await session.commit()  # the refit needs the one connection this session may hold
    await finish_refits()
    session.expire_all()
    rows = await session.execute(
        select(ImageCandidate.id, ImageCandidate.elo, ImageCandidate.votes)
        .where(ImageCandidate.id.in_(ids)).order_by(ImageCandidate.id))
    return {cid: (elo, votes) for cid, elo, votes in rows}


async def stored_match_fit(session, run, step, ids):
    stored = await ratings(session, ids)
    fit = await step_ratings(session, run, step)
    for cid in ids:
        assert stored[cid][0] == pytest.approx(fit.elo(cid), abs=1e-9)
        assert stored[cid][1] == fit.votes(cid)
    return stored


async def test_vote_refits_the_whole_step(session, tmp_path):
    run, ids = await step_of_four(session, tmp_path)
    result = await record_vote(session, run, ids[2], ids[1], "alice")
    assert (result.step, result.winner_id, result.loser_id) == (1, ids[2], ids[1])
    # Only the vote is written; the refit a moment later stores ratings and counts.
    after_one = await ratings(session, ids)
    assert after_one[ids[2]][0] > 1000 > after_one[ids[1]][0]
    assert after_one[ids[2]][1] == after_one[ids[1]][1] == 1
    assert after_one[ids[0]] == (1000, 0)
    for a, b in [(0, 1), (3, 0), (2, 3), (1, 3)]:
        await record_vote(session, run, ids[a], ids[b], "bob")
    after = await stored_match_fit(session, run, 1, ids)
    assert sum(v for _, v in after.values()) == 2 * 5
    session.expire_all()
    sds = await session.scalars(select(ImageCandidate.elo_sd).where(ImageCandidate.id.in_(ids)))
    assert all(0 < sd < PRIOR_ELO_SD for sd in sds)


async def test_refit_step_is_a_repair(session, tmp_path):
    """Stored ratings that drifted from the votes (a crash before the refit) are put back."""
    run, ids = await step_of_four(session, tmp_path)
    await record_vote(session, run, ids[0], ids[1], "alice")
    expected = await ratings(session, ids)
    cand = await session.get_one(ImageCandidate, ids[0])
    cand.elo, cand.votes = 1234.0, 7
    await session.commit()
    fit = await refit_step(session, run, 1)
    assert fit.ids == (ids[0], ids[1])
    assert await ratings(session, ids) == expected


async def test_a_burst_of_votes_costs_one_refit_after_the_delay(session, tmp_path, monkeypatch):
    run, ids = await step_of_four(session, tmp_path)
    refits: list[float] = []
    real = app.refits._refit_aside

    async def counted(engine, run_id, step):  # type: ignore[no-untyped-def]
        refits.append(asyncio.get_running_loop().time())
        await real(engine, run_id, step)

    monkeypatch.setattr(app.refits, "_refit_aside", counted)
    loop = asyncio.get_running_loop()
    first = loop.time()
    for a, b in [(0, 1), (2, 3), (1, 2)]:
        await record_vote(session, run, ids[a], ids[b], "alice")
    await session.commit()
    await ratings_settled()
    assert len(refits) == 1
    assert refits[0] - first >= REFIT_DELAY * 0.99
    await stored_match_fit(session, run, 1, ids)  # the one refit took in all three votes


async def test_order_of_votes_does_not_matter(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=2)
    votes = [(0, 1), (1, 2), (2, 0), (0, 3), (3, 1), (0, 2), (4, 0), (2, 4), (1, 4)]
    outcomes = []
    for name, order in (("forward", votes), ("backward", votes[::-1])):
        run = await make_run(session, name=name)
        ids = [await add_candidate(session, run, 1) for _ in range(5)]
        for voter, (w, lo) in enumerate(order):
            await record_vote(session, run, ids[w], ids[lo], f"voter{voter}")
        stored = await ratings(session, ids)
        outcomes.append([stored[cid] for cid in ids])
    assert outcomes[0] == outcomes[1]  # exactly, not approximately


async def test_concurrent_voters_lose_no_update(session_factory, tmp_path):
    import random

    async with session_factory() as s:
        run, ids = await step_of_four(s, tmp_path)

    rng = random.Random(5)
    plan = [(f"voter{v}", *rng.sample(ids, 2)) for v in range(10) for _ in range(3)]
    plan = list(dict.fromkeys((v, *sorted((a, b))) for v, a, b in plan))

    async def vote(voter, a, b):
        async with session_factory() as s:
            await record_vote(s, run, a, b, voter)

    await asyncio.gather(*(vote(*p) for p in plan))
    async with session_factory() as s:
        after = await ratings(s, ids)
        votes = (await s.execute(select(Vote.winner_id, Vote.low_id, Vote.high_id)
                                 .order_by(Vote.id))).all()
    # Every vote is in the stored ratings: they are the fit of all the step's votes.
    assert len(votes) == len(plan)
    replay = fit_ratings((w, low + high - w, 1) for w, low, high in votes)
    assert {cid: e for cid, (e, _) in after.items()} == pytest.approx(
        {cid: replay.elo(cid) for cid in ids}, abs=1e-9
    )
