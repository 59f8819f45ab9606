"""Votes, Elo and rejection (DESIGN §1.4)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from db.models import CandidateStatus, ImageCandidate, Vote
from orchestration.errors import Conflict, DuplicateVote, InvalidInput, NotFound
from orchestration.ratings import elo_update, expected_score, record_vote, reject_candidate
from orchestration.runs import complete_run
from tests.factories import add_candidate, make_pipeline, make_run


def test_expected_score_known_values():
    assert expected_score(1000, 1000) == pytest.approx(0.5)
    # 400 points apart: 10:1 odds.
    assert expected_score(1400, 1000) == pytest.approx(10 / 11)
    assert expected_score(1000, 1400) == pytest.approx(1 / 11)
    assert expected_score(1200, 1000) == pytest.approx(0.7597469266)


def test_elo_update_known_pair():
    winner, loser = elo_update(1000, 1000, 32)
    assert (winner, loser) == (pytest.approx(1016), pytest.approx(984))
    winner, loser = elo_update(1000, 1200, 32)  # the underdog wins: a bigger move
    assert winner == pytest.approx(1000 + 32 * 0.7597469266)
    assert loser == pytest.approx(1200 - 32 * 0.7597469266)


async def step_of_four(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=2)
    run = await make_run(session)
    ids = [await add_candidate(session, run, 1, elo=e) for e in (1000, 1100, 900, 1000)]
    return run, ids


async def ratings(session, ids):
    session.expire_all()
    rows = await session.execute(
        select(ImageCandidate.id, ImageCandidate.elo, ImageCandidate.votes)
        .where(ImageCandidate.id.in_(ids)).order_by(ImageCandidate.id))
    return {cid: (elo, votes) for cid, elo, votes in rows}


async def test_vote_moves_both_and_keeps_the_sum(session, tmp_path):
    run, ids = await step_of_four(session, tmp_path)
    total = sum(e for e, _ in (await ratings(session, ids)).values())
    result = await record_vote(session, run, ids[2], ids[1], "alice")
    assert result.winner_elo == pytest.approx(900 + 32 * (1 - expected_score(900, 1100)))
    assert result.loser_elo == pytest.approx(1100 - 32 * (1 - expected_score(900, 1100)))
    for a, b in [(0, 1), (3, 0), (2, 3), (1, 3)]:
        await record_vote(session, run, ids[a], ids[b], "bob")
    after = await ratings(session, ids)
    assert sum(e for e, _ in after.values()) == pytest.approx(total, abs=1e-9)
    assert sum(v for _, v in after.values()) == 2 * 5


async def test_same_person_same_pair_twice_changes_nothing(session, tmp_path):
    run, ids = await step_of_four(session, tmp_path)
    await record_vote(session, run, ids[0], ids[1], "alice")
    before = await ratings(session, ids)
    with pytest.raises(DuplicateVote, match="already voted"):
        await record_vote(session, run, ids[1], ids[0], "alice")  # either order is the pair
    assert await ratings(session, ids) == before
    assert await session.scalar(select(func.count()).select_from(Vote)) == 1
    # Another person may vote on the same pair.
    await record_vote(session, run, ids[1], ids[0], "bob")


async def test_vote_refusals(session, tmp_path):
    run, ids = await step_of_four(session, tmp_path)
    other_run = await make_run(session, name="other")
    stranger = await add_candidate(session, other_run, 1)
    p = ids[0]
    later = await add_candidate(session, run, 2, p)
    await reject_candidate(session, run, ids[3], "alice")
    before = await ratings(session, [*ids, stranger, later])

    with pytest.raises(Conflict, match="rejected"):
        await record_vote(session, run, ids[0], ids[3], "alice")
    with pytest.raises(InvalidInput, match=f"belongs to run #{other_run}"):
        await record_vote(session, run, ids[0], stranger, "alice")
    with pytest.raises(InvalidInput, match="different steps"):
        await record_vote(session, run, ids[0], later, "alice")
    with pytest.raises(InvalidInput, match="two different candidates"):
        await record_vote(session, run, ids[0], ids[0], "alice")
    with pytest.raises(NotFound, match="no candidate #4242"):
        await record_vote(session, run, ids[0], 4242, "alice")
    await session.rollback()
    assert await ratings(session, [*ids, stranger, later]) == before
    assert await session.scalar(select(func.count()).select_from(Vote)) == 0


async def test_no_votes_on_a_completed_run(session, tmp_path):
    run, ids = await step_of_four(session, tmp_path)
    await complete_run(session, run)
    with pytest.raises(Conflict, match="completed"):
        await record_vote(session, run, ids[0], ids[1], "alice")


async def test_reject(session, tmp_path):
    run, ids = await step_of_four(session, tmp_path)
    result = await reject_candidate(session, run, ids[1], "alice")
    assert result.step == 1
    cand = await session.get_one(ImageCandidate, ids[1])
    assert cand.status is CandidateStatus.rejected and cand.advancing is False
    with pytest.raises(Conflict, match="already rejected"):
        await reject_candidate(session, run, ids[1], "alice")


async def test_concurrent_voters_lose_no_update(session_factory, tmp_path):
    import asyncio
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
    # Replaying the votes in commit order gives exactly the stored ratings.
    replay = {cid: e for cid, e in zip(ids, (1000.0, 1100.0, 900.0, 1000.0), strict=True)}
    for winner, low, high in votes:
        loser = high if winner == low else low
        replay[winner], replay[loser] = elo_update(replay[winner], replay[loser])
    assert len(votes) == len(plan)
    assert {cid: e for cid, (e, _) in after.items()} == pytest.approx(replay)
