"""Votes, Elo ratings and rejection (DESIGN §1.4).

Ratings live on the Elo scale (start 1000). A vote moves both candidates by the same amount in
opposite directions, so the sum of a step's ratings never changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import UnaryExpression, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from db.base import utcnow
from db.models import CandidateStatus, ImageCandidate, PipelineRun, RunStatus, Vote
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


@dataclass(frozen=True)
class _Side:
    id: int
    run_id: int
    step: int
    elo: float
    status: CandidateStatus
    run_status: RunStatus
    run_name: str


# Votes are the hottest write path: prebuilt Core statements keep one vote at five round trips
# without the ORM's unit of work.
_PAIR = (
    select(
        ImageCandidate.id,
        ImageCandidate.run_id,
        ImageCandidate.step,
        ImageCandidate.elo,
        ImageCandidate.status,
        PipelineRun.status,
        PipelineRun.name,
    )
    .join(PipelineRun, PipelineRun.id == ImageCandidate.run_id)
    .where(ImageCandidate.id.in_(bindparam("ids", expanding=True)))
    .order_by(ImageCandidate.id)
    .with_for_update(of=ImageCandidate)
)
_INSERT_VOTE = insert(Vote)
_RATE = (
    update(ImageCandidate)
    .where(ImageCandidate.id == bindparam("cid"))
    .values(elo=bindparam("new_elo"), votes=ImageCandidate.votes + 1)
)


async def _load_pair(
    conn: AsyncConnection, run_id: int, first_id: int, second_id: int
) -> tuple[_Side, _Side]:
    """Both candidates, locked, with their run checked in the same round trip."""
    if first_id == second_id:
        raise InvalidInput(f"A vote needs two different candidates, got #{first_id} twice.")
    rows = await conn.execute(_PAIR, {"ids": [first_id, second_id]})
    found = {row[0]: _Side(*row) for row in rows}
    for cid in (first_id, second_id):
        if cid not in found:
            raise NotFound(f"There is no candidate #{cid}.")
        side = found[cid]
        if side.run_id != run_id:
            raise InvalidInput(
                f"Candidate #{cid} belongs to run #{side.run_id}, not run #{run_id}."
            )
        if side.run_status is RunStatus.completed:
            raise Conflict(
                f"Run #{run_id} “{side.run_name}” is completed; nothing can change in it."
            )
    first, second = found[first_id], found[second_id]
    if first.step != second.step:
        raise InvalidInput(
            f"Candidates #{first.id} (step {first.step}) and #{second.id} (step {second.step}) "
            "are at different steps; only candidates of one step are compared."
        )
    for side in (first, second):
        if side.status is CandidateStatus.rejected:
            raise Conflict(f"Candidate #{side.id} was rejected; it takes no more votes.")
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
    """One person's choice of `winner_id` over `loser_id`.

    The schema's unique (voter, pair) constraint is what refuses a second vote on a pair, so
    two taps racing each other are refused too.
    """
    conn = await session.connection()
    try:
        winner, loser = await _load_pair(conn, run_id, winner_id, loser_id)
        low, high = sorted((winner_id, loser_id))
        new_winner, new_loser = elo_update(winner.elo, loser.elo, k_factor)
        try:
            inserted = await conn.execute(
                _INSERT_VOTE,
                {
                    "run_id": run_id,
                    "step": winner.step,
                    "low_id": low,
                    "high_id": high,
                    "winner_id": winner_id,
                    "voter": voter,
                    "created_at": utcnow(),
                },
            )
        except IntegrityError as err:
            raise DuplicateVote(
                f"You already voted on #{low} vs #{high}; your first vote stands."
            ) from err
        key = inserted.inserted_primary_key
        assert key is not None, "an INSERT of one row reports its key"
        vote_id = int(key[0])
        await conn.execute(
            _RATE,
            [{"cid": winner_id, "new_elo": new_winner}, {"cid": loser_id, "new_elo": new_loser}],
        )
    except Exception:
        await session.rollback()
        raise
    await session.commit()
    return VoteResult(
        vote_id,
        run_id,
        winner.step,
        winner_id,
        loser_id,
        new_winner,
        new_loser,
        new_winner - winner.elo,
    )


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
