"""Recording votes and rejecting candidates (docs/voting.md, "Ratings")."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from db.models import ImageCandidate, Vote
from orchestration.errors import Conflict, DuplicateVote, InvalidInput, NotFound
from orchestration.states import CandidateStatus
from tests.committed import complete_run, record_vote, reject_candidate
from tests.factories import add_candidate, make_run
from tests.orchestration.test_refits import ratings, step_of_four


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
