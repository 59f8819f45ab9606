"""Which pairs go out to a run's channel, and how a tap on one is answered."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from db.base import utcnow
from db.models import PairPost, Vote
from orchestration.errors import Conflict, DuplicateVote, NotFound
from orchestration.pair_posts import OPEN_PAIRS_PER_RUN, UNSENT_FORGOTTEN_AFTER
from tests.committed import answer_pair, complete_run, forget_post, mark_sent, plan_pairs
from tests.factories import add_candidate, make_pipeline, make_run


async def run_with(session, tmp_path, candidates: int) -> tuple[int, list[int]]:
    await make_pipeline(session, tmp_path)
    run = await make_run(session)
    return run, [await add_candidate(session, run, 1) for _ in range(candidates)]


async def test_three_candidates_give_their_three_pairs_then_nothing(session, tmp_path):
    run, _ids = await run_with(session, tmp_path, 3)
    plan = await plan_pairs(session, run)
    pairs = {frozenset((p.a.id, p.b.id)) for p in plan.posts}
    assert len(plan.posts) == OPEN_PAIRS_PER_RUN == len(pairs) == 3  # every pair of three, once
    assert all(p.step == 1 and p.header.startswith(f"Run #{run} ") for p in plan.posts)
    again = await plan_pairs(session, run)
    assert again.posts == [] and "already waiting" in (again.note or "")


async def test_a_reserved_pair_that_was_never_sent_stops_counting(session, tmp_path):
    run, _ = await run_with(session, tmp_path, 6)
    first = await plan_pairs(session, run)
    for post in first.posts[:2]:
        await mark_sent(session, post.post_id, 1, 100 + post.post_id)
    await forget_post(session, first.posts[2].post_id)  # sending failed
    assert len((await plan_pairs(session, run)).posts) == 1
    # The bot stopped between reserving and sending: after a while the place frees up.
    await session.execute(
        update(PairPost)
        .where(PairPost.message_id.is_(None))
        .values(posted_at=utcnow() - UNSENT_FORGOTTEN_AFTER - timedelta(seconds=1))
    )
    await session.commit()
    assert len((await plan_pairs(session, run)).posts) == 1


async def test_answers_close_the_post_and_refusals_leave_it_open(session, tmp_path):
    run, _ = await run_with(session, tmp_path, 4)
    plan = await plan_pairs(session, run, want=1)
    (post,) = plan.posts
    await mark_sent(session, post.post_id, 1, 555)
    a, b = post.a.id, post.b.id
    answer = await answer_pair(session, run, "b", a, b, "alice", message_id=555)
    assert answer.counted and answer.outcome == f"B (#{b}) is better than A (#{a})"
    with pytest.raises(DuplicateVote):
        await answer_pair(session, run, "a", a, b, "alice")
    stored = await session.get_one(PairPost, post.post_id)
    await session.refresh(stored)
    assert stored.answered_at is not None and stored.outcome == answer.outcome
    assert len((await session.scalars(select(Vote))).all()) == 1


async def test_unknown_and_completed_runs_are_refused(session, tmp_path):
    run, _ = await run_with(session, tmp_path, 2)
    with pytest.raises(NotFound):
        await plan_pairs(session, 999)
    await complete_run(session, run)
    with pytest.raises(Conflict):
        await plan_pairs(session, run)
