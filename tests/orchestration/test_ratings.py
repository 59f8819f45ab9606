"""Votes, Bradley–Terry ratings and rejection (DESIGN §1.4)."""

from __future__ import annotations

import choix
import numpy as np
import pytest
from sqlalchemy import func, select

from db.models import CandidateStatus, ImageCandidate, Vote
from orchestration.errors import Conflict, DuplicateVote, InvalidInput, NotFound
from orchestration.ratings import (
    ELO_PER_UNIT,
    PRIOR_ELO_SD,
    PRIOR_GAMES,
    expected_score,
    fit_ratings,
    ratings_settled,
    record_vote,
    refit_step,
    reject_candidate,
    step_ratings,
)
from orchestration.runs import complete_run
from tests.factories import add_candidate, make_pipeline, make_run


def test_expected_score_known_values():
    assert expected_score(1000, 1000) == pytest.approx(0.5)
    # 400 points apart: 10:1 odds.
    assert expected_score(1400, 1000) == pytest.approx(10 / 11)
    assert expected_score(1000, 1400) == pytest.approx(1 / 11)
    assert expected_score(1200, 1000) == pytest.approx(0.7597469266)


def test_fit_is_the_posterior_mode_choix_finds():
    """Cross-check with choix's other fitter: four times the votes and four times the prior
    (whole virtual games against the reference, item 3) have the same mode."""
    results = [(10, 20, 2), (20, 10, 1), (20, 30, 3), (10, 30, 1)]
    fit = fit_ratings(results)
    index = {10: 0, 20: 1, 30: 2}
    data = [(index[w], index[lo]) for w, lo, t in results for _ in range(4 * t)]
    games = round(4 * PRIOR_GAMES / 2)
    data += [(i, 3) for i in range(3) for _ in range(games)]
    data += [(3, i) for i in range(3) for _ in range(games)]
    params = choix.opt_pairwise(4, data, alpha=1e-12, tol=1e-12)
    assert fit.ids == (10, 20, 30)
    assert fit.theta == pytest.approx(params[:3] - params[3], abs=1e-3)
    assert [fit.votes(c) for c in (10, 20, 30, 99)] == [4, 6, 4, 0]


def test_one_vote_and_no_votes():
    fit = fit_ratings([(1, 2, 1)])
    assert fit.elo(1) > 1000 > fit.elo(2)
    assert fit.elo(1) - 1000 == pytest.approx(1000 - fit.elo(2))
    assert fit.elo_sd(1) == pytest.approx(fit.elo_sd(2)) and fit.elo_sd(1) < PRIOR_ELO_SD
    # A candidate the votes never met sits at the prior, independent of the others.
    assert fit.elo(3) == 1000 and fit.elo_sd(3) == pytest.approx(PRIOR_ELO_SD)
    cov = fit.covariance([1, 3, 2])
    assert cov[0, 1] == cov[1, 2] == 0 and cov[0, 2] > 0  # 1 and 2 share the vote
    assert fit_ratings([]).ids == ()


def test_uncertainty_shrinks_with_votes():
    few = fit_ratings([(1, 2, 1), (2, 1, 1)])
    many = fit_ratings([(1, 2, 20), (2, 1, 20)])
    assert few.elo(1) == pytest.approx(1000) == many.elo(1)
    assert many.elo_sd(1) < few.elo_sd(1) < PRIOR_ELO_SD
    # The difference is known better than the two ratings alone suggest: they covary.
    cov = many.covariance([1, 2])
    assert cov[0, 1] > 0
    assert ELO_PER_UNIT * np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]) < 2 * many.elo_sd(1)


def test_model_default_is_the_prior_spread():
    column = ImageCandidate.__table__.c.elo_sd
    assert column.default.arg == pytest.approx(PRIOR_ELO_SD, abs=0.01)


async def step_of_four(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=2)
    run = await make_run(session)
    ids = [await add_candidate(session, run, 1, elo=e) for e in (1000, 1100, 900, 1000)]
    return run, ids


async def ratings(session, ids):
    await session.commit()  # the refit needs the one connection this session may hold
    await ratings_settled()
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
    await ratings_settled()
    expected = await ratings(session, ids)
    cand = await session.get_one(ImageCandidate, ids[0])
    cand.elo, cand.votes = 1234.0, 7
    await session.commit()
    fit = await refit_step(session, run, 1)
    assert fit.ids == (ids[0], ids[1])
    assert await ratings(session, ids) == expected


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
    # Every vote is in the stored ratings: they are the fit of all the step's votes.
    assert len(votes) == len(plan)
    replay = fit_ratings((w, low + high - w, 1) for w, low, high in votes)
    assert {cid: e for cid, (e, _) in after.items()} == pytest.approx(
        {cid: replay.elo(cid) for cid in ids}, abs=1e-9
    )
