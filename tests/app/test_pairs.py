"""A tap on a pair as a use case: its answer and the close of its pair in one transaction,
then the ratings and the scheduler told."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select

import app.refits
from app.context import App
from app.pairs import answer, pair_sent
from db.models import ImageCandidate, PairPost, Vote
from orchestration.errors import DuplicateVote
from tests.committed import plan_pairs, record_vote
from tests.factories import add_candidate, make_pipeline, make_run


async def posted_pair(session_factory, tmp_path) -> tuple[int, int, int, int]:
    async with session_factory() as s:
        await make_pipeline(s, tmp_path)
        run = await make_run(s)
        for _ in range(3):
            await add_candidate(s, run, 1)
        (post,) = (await plan_pairs(s, run, want=1)).posts
    await pair_sent(App(session_factory), post.post_id, 1, 555)
    return run, post.a.id, post.b.id, post.post_id


def commits_of(engine) -> list[int]:
    counted: list[int] = []
    event.listen(engine.sync_engine, "commit", lambda _conn: counted.append(1))
    return counted


async def test_a_vote_and_the_close_of_its_pair_are_one_commit(engine, session_factory,
                                                               tmp_path):
    run, a, b, post_id = await posted_pair(session_factory, tmp_path)
    woken: list[bool] = []
    commits = commits_of(engine)
    done = await answer(App(session_factory, wake=lambda: woken.append(True)), run, "a", a, b,
                        "alice", lambda _: False, message_id=555)
    await app.refits.ratings_settled()
    assert done.answer.counted and done.answer.vote is not None
    assert len(commits) == 2  # the tap's transaction, then the background refit's
    assert woken == []  # a vote makes no job: the raffle reads the ratings when it draws
    async with session_factory() as s:
        closed = await s.get_one(PairPost, post_id)
        assert closed.answered_at is not None and closed.outcome == done.answer.outcome
        assert len((await s.scalars(select(Vote))).all()) == 1
        winner = await s.get_one(ImageCandidate, a)
        assert winner.votes == 1 and winner.elo > 1000  # refitted once it was committed


@pytest.mark.parametrize(("action", "wakes"), [("ra", True), ("rb", True), ("s", False)])
async def test_a_rejection_wakes_the_scheduler_a_skip_does_not(session_factory, tmp_path,
                                                               action, wakes):
    """Rejecting a final candidate can leave the run short of its target: work again."""
    run, a, b, _ = await posted_pair(session_factory, tmp_path)
    woken: list[bool] = []
    done = await answer(App(session_factory, wake=lambda: woken.append(True)), run, action, a,
                        b, "alice", lambda _: False, message_id=555)
    assert done.answer.counted is (action != "s")
    assert woken == ([True] if wakes else [])


async def test_a_refused_vote_leaves_its_pair_open(session_factory, tmp_path):
    run, a, b, post_id = await posted_pair(session_factory, tmp_path)
    async with session_factory() as s:  # the same person voted on the pair already
        await record_vote(s, run, a, b, "alice")
    woken: list[bool] = []
    with pytest.raises(DuplicateVote):
        await answer(App(session_factory, wake=lambda: woken.append(True)), run, "b", a, b,
                     "alice", lambda _: False, message_id=555)
    await app.refits.ratings_settled()
    async with session_factory() as s:
        assert (await s.get_one(PairPost, post_id)).answered_at is None
    assert woken == []  # nothing changed, nothing to wake for
