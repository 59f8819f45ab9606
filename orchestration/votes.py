"""Recording a vote and rejecting a candidate (docs/voting.md, "Ratings")."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from db.base import utcnow
from db.models import ImageCandidate, PipelineRun, Vote
from orchestration.errors import Conflict, DuplicateVote, InvalidInput, NotFound
from orchestration.rejection import mark_rejected
from orchestration.runs import get_running_run
from orchestration.states import CandidateStatus, RunStatus


@dataclass(frozen=True)
class VoteResult:
    vote_id: int
    run_id: int
    step: int
    winner_id: int
    loser_id: int


@dataclass(frozen=True)
class _Side:
    id: int
    run_id: int
    step: int
    status: CandidateStatus
    run_status: RunStatus
    run_name: str


# Votes are the hottest write path: prebuilt Core statements, no ORM unit of work.
_PAIR = (
    select(
        ImageCandidate.id,
        ImageCandidate.run_id,
        ImageCandidate.step,
        ImageCandidate.status,
        PipelineRun.status,
        PipelineRun.name,
    )
    .join(PipelineRun, PipelineRun.id == ImageCandidate.run_id)
    .where(ImageCandidate.id.in_(bindparam("ids", expanding=True)))
    .order_by(ImageCandidate.id)
    .with_for_update(of=ImageCandidate)
)
_WINNER, _LOSER = aliased(ImageCandidate), aliased(ImageCandidate)
# The vote, inserted only when the pair may take it (one run, one step, both active, the run
# not completed); no row back means it may not, and `_load_pair` then says why. One round trip
# on the path every tap takes.
_INSERT_VOTE = (
    insert(Vote)
    .from_select(
        ["run_id", "step", "low_id", "high_id", "winner_id", "voter", "created_at"],
        select(
            _WINNER.run_id,
            _WINNER.step,
            bindparam("low_id"),
            bindparam("high_id"),
            _WINNER.id,
            bindparam("voter"),
            bindparam("created_at"),
        )
        .join(_LOSER, _LOSER.id == bindparam("loser_id"))
        .join(PipelineRun, PipelineRun.id == _WINNER.run_id)
        .where(
            _WINNER.id == bindparam("winner_id"),
            _WINNER.run_id == bindparam("run_id"),
            _LOSER.run_id == _WINNER.run_id,
            _LOSER.step == _WINNER.step,
            _WINNER.status == CandidateStatus.active,
            _LOSER.status == CandidateStatus.active,
            PipelineRun.status != RunStatus.completed,
        )
        .with_for_update(of=[_WINNER, _LOSER]),
    )
    .returning(Vote.id, Vote.step)
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
) -> VoteResult:
    """One person's choice of `winner_id` over `loser_id`.

    The schema's unique (voter, pair) constraint is what refuses a second vote on a pair, so
    two taps racing each other are refused too. Only the vote is written, so a tap costs what an
    insert costs: once it is committed, its step's ratings are refitted in the background
    (`app.refits`); decisions (pairs, /approve) fit afresh.
    """
    if winner_id == loser_id:
        raise InvalidInput(f"A vote needs two different candidates, got #{winner_id} twice.")
    conn = await session.connection()
    low, high = sorted((winner_id, loser_id))
    try:
        row = (await conn.execute(_INSERT_VOTE, {
            "run_id": run_id, "winner_id": winner_id, "loser_id": loser_id,
            "low_id": low, "high_id": high, "voter": voter, "created_at": utcnow(),
        })).first()
    except IntegrityError as err:
        raise DuplicateVote(
            f"You already voted on #{low} vs #{high}; your first vote stands."
        ) from err
    if row is None:
        await _load_pair(conn, run_id, winner_id, loser_id)  # raises the reason
        raise Conflict(f"#{winner_id} vs #{loser_id} cannot take a vote now.")
    vote_id, step = row
    return VoteResult(int(vote_id), run_id, int(step), winner_id, loser_id)


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
    mark_rejected(cand, by)
    await session.flush()
    return RejectResult(cand.id, cand.run_id, cand.step)
