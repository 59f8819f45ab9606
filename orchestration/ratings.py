"""Votes, Elo ratings and rejection (DESIGN §1.4).

Ratings live on the Elo scale (start 1000). A vote moves both candidates by the same amount in
opposite directions, so the sum of a step's ratings never changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import UnaryExpression, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import CandidateStatus, ImageCandidate, Vote
from orchestration.errors import Conflict, DuplicateVote, InvalidInput, NotFound
from orchestration.runs import get_running_run

DEFAULT_K_FACTOR = 32.0

# How candidates of a step are ranked everywhere: rating, then more votes, then older first.
RANKING: tuple[UnaryExpression[Any], ...] = (
    ImageCandidate.elo.desc(),
    ImageCandidate.votes.desc(),
    ImageCandidate.id.asc(),
)


def expected_score(rating_a: float, rating_b: float) -> float:
    """Probability that A beats B under Elo: 1 / (1 + 10^((Rb − Ra)/400))."""
    return 1.0 / (1.0 + math.pow(10.0, (rating_b - rating_a) / 400.0))


def elo_update(
    winner: float, loser: float, k_factor: float = DEFAULT_K_FACTOR
) -> tuple[float, float]:
    delta = k_factor * (1.0 - expected_score(winner, loser))
    return winner + delta, loser - delta


@dataclass(frozen=True)
class VoteResult:
    vote_id: int
    run_id: int
    step: int
    winner_id: int
    loser_id: int
    winner_elo: float
    loser_elo: float
    delta: float


async def _load_pair(
    session: AsyncSession, run_id: int, first_id: int, second_id: int
) -> tuple[ImageCandidate, ImageCandidate]:
    if first_id == second_id:
        raise InvalidInput(f"A vote needs two different candidates, got #{first_id} twice.")
    rows = await session.scalars(
        select(ImageCandidate)
        .where(ImageCandidate.id.in_((first_id, second_id)))
        .order_by(ImageCandidate.id)
        .with_for_update()
    )
    found = {c.id: c for c in rows}
    for cid in (first_id, second_id):
        cand = found.get(cid)
        if cand is None:
            raise NotFound(f"There is no candidate #{cid}.")
        if cand.run_id != run_id:
            raise InvalidInput(
                f"Candidate #{cid} belongs to run #{cand.run_id}, not run #{run_id}."
            )
    first, second = found[first_id], found[second_id]
    if first.step != second.step:
        raise InvalidInput(
            f"Candidates #{first.id} (step {first.step}) and #{second.id} (step {second.step}) "
            "are at different steps; only candidates of one step are compared."
        )
    for cand in (first, second):
        if cand.status is CandidateStatus.rejected:
            raise Conflict(f"Candidate #{cand.id} was rejected; it takes no more votes.")
    return first, second


async def record_vote(
    session: AsyncSession,
    run_id: int,
    winner_id: int,
    loser_id: int,
    voter: str,
    *,
    k_factor: float = DEFAULT_K_FACTOR,
) -> VoteResult:
    """One person's choice of `winner_id` over `loser_id`; a repeat of the pair is refused."""
    await get_running_run(session, run_id)
    winner, loser = await _load_pair(session, run_id, winner_id, loser_id)
    low, high = sorted((winner_id, loser_id))
    already = await session.scalar(
        select(Vote.id).where(Vote.voter == voter, Vote.low_id == low, Vote.high_id == high)
    )
    if already is not None:
        await session.rollback()
        raise DuplicateVote(f"You already voted on #{low} vs #{high}; your first vote stands.")

    new_winner, new_loser = elo_update(winner.elo, loser.elo, k_factor)
    vote = Vote(
        run_id=run_id, step=winner.step, low_id=low, high_id=high, winner_id=winner_id, voter=voter
    )
    session.add(vote)
    for cand, rating in ((winner, new_winner), (loser, new_loser)):
        await session.execute(
            update(ImageCandidate)
            .where(ImageCandidate.id == cand.id)
            .values(elo=rating, votes=ImageCandidate.votes + 1)
        )
    try:
        await session.flush()
    except IntegrityError as err:  # the same person, the same pair, at the same instant
        await session.rollback()
        raise DuplicateVote(
            f"You already voted on #{low} vs #{high}; your first vote stands."
        ) from err
    result = VoteResult(
        vote.id,
        run_id,
        winner.step,
        winner_id,
        loser_id,
        new_winner,
        new_loser,
        new_winner - winner.elo,
    )
    await session.commit()
    return result


@dataclass(frozen=True)
class RejectResult:
    candidate_id: int
    run_id: int
    step: int


async def reject_candidate(
    session: AsyncSession, run_id: int, candidate_id: int, by: str
) -> RejectResult:
    """A rejected candidate never becomes a parent again and leaves the top-K."""
    await get_running_run(session, run_id)
    cand = await session.get(ImageCandidate, candidate_id, with_for_update=True)
    if cand is None:
        raise NotFound(f"There is no candidate #{candidate_id}.")
    if cand.run_id != run_id:
        raise InvalidInput(
            f"Candidate #{cand.id} belongs to run #{cand.run_id}, not run #{run_id}."
        )
    if cand.status is CandidateStatus.rejected:
        raise Conflict(f"Candidate #{cand.id} is already rejected.")
    cand.status = CandidateStatus.rejected
    cand.advancing = False
    cand.rejected_by = by
    await session.commit()
    return RejectResult(cand.id, cand.run_id, cand.step)
