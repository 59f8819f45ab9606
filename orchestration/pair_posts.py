"""Pairs out in a run's channel: which to post, how a tap on one is answered (docs/discord.md,
"Vote buttons").

The pair policy (`orchestration.pairing`) says which pair is worth a tap; this module keeps the
channel sane around it. At most `OPEN_PAIRS_PER_RUN` pairs wait for an answer per run, never the
same pair twice at once, and a pair whose candidate was rejected or whose step was approved
meanwhile is closed with the reason instead of taking a vote that no longer means anything.
Each posted pair is a `PairPost` row written before its message is sent, so two posts racing
each other still respect the limit.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.base import utcnow
from db.models import ImageCandidate, PairPost, PipelineRun, PipelineRunStep
from orchestration.approvals import decided_by_approval
from orchestration.pairing import next_pair
from orchestration.runs import get_running_run
from orchestration.states import CandidateStatus
from orchestration.votes import VoteResult, record_vote, reject_candidate

OPEN_PAIRS_PER_RUN = 3
# A pair reserved but never sent (the bot stopped in between) stops counting after this long.
UNSENT_FORGOTTEN_AFTER = timedelta(minutes=5)

Action = Literal["a", "b", "s", "ra", "rb"]


@dataclass(frozen=True)
class PairSide:
    id: int
    image_path: str  # relative to the data folder
    elo: float
    votes: int


@dataclass(frozen=True)
class PairToPost:
    post_id: int
    run_id: int
    run_name: str
    step: int
    steps: int
    a: PairSide
    b: PairSide

    @property
    def header(self) -> str:
        return f"Run #{self.run_id} {self.run_name} · step {self.step} of {self.steps}"


@dataclass(frozen=True)
class ClosedPost:
    """An open pair that went out of date; its message should now say why."""

    channel_id: int
    message_id: int
    reason: str


@dataclass(frozen=True)
class PairPlan:
    posts: list[PairToPost] = field(default_factory=list)
    closed: list[ClosedPost] = field(default_factory=list)
    open_messages: list[tuple[int, int]] = field(default_factory=list)  # (channel, message)
    note: str | None = None  # why no (more) pair: settled, nothing to compare, limit reached
    waiting: int = 0  # pairs open or being posted before this plan, by anyone


@dataclass(frozen=True)
class PairAnswer:
    outcome: str  # the line the pair's message shows from now on
    counted: bool  # False: the pair was out of date, nothing was recorded
    vote: VoteResult | None = None  # the vote it recorded, if it was one


async def plan_pairs(
    session: AsyncSession,
    run_id: int,
    voter: str | None = None,
    *,
    want: int = OPEN_PAIRS_PER_RUN,
    rng: random.Random | None = None,
) -> PairPlan:
    """Reserve up to `want` new pairs for the run, keeping at most OPEN_PAIRS_PER_RUN open.

    Closes open pairs that went out of date first (their places free up). Refuses a run that
    does not exist or is completed (DomainError). The caller sends each post, then calls
    `mark_sent` (or `forget_post` when sending failed).
    """
    run = await get_running_run(session, run_id)
    closed = await _close_out_of_date(session, run_id)
    await session.execute(
        delete(PairPost).where(
            PairPost.run_id == run_id,
            PairPost.message_id.is_(None),
            PairPost.posted_at < utcnow() - UNSENT_FORGOTTEN_AFTER,
        )
    )
    open_rows = (
        await session.execute(
            select(
                PairPost.a_id, PairPost.b_id, PairPost.channel_id, PairPost.message_id
            ).where(PairPost.run_id == run_id, PairPost.answered_at.is_(None))
        )
    ).all()
    taken = [(a, b) for a, b, _, _ in open_rows]
    waiting = len(taken)
    messages = [(c, m) for _, _, c, m in open_rows if c is not None and m is not None]
    room = min(want, OPEN_PAIRS_PER_RUN - len(taken))
    note = None
    if room <= 0:
        note = (
            f"{len(taken)} pairs of run #{run_id} are already waiting for an answer; "
            "answer one of those first."
        )
    planned: list[PairPost] = []
    while len(planned) < room:
        decision = await next_pair(session, run_id, voter, exclude=taken, rng=rng)
        if decision.pair is None or decision.step is None:
            note = decision.message
            break
        a, b = decision.pair
        post = PairPost(run_id=run_id, step=decision.step, a_id=a, b_id=b)
        session.add(post)
        await session.flush()
        planned.append(post)
        taken.append((a, b))
    steps = await _step_count(session, run_id) if planned else 0
    posts = [await _describe(session, run, steps, post) for post in planned]
    return PairPlan(posts, closed, messages, note, waiting)


async def mark_sent(
    session: AsyncSession, post_id: int, channel_id: int, message_id: int
) -> None:
    await session.execute(
        update(PairPost)
        .where(PairPost.id == post_id)
        .values(channel_id=channel_id, message_id=message_id)
    )


async def forget_post(session: AsyncSession, post_id: int) -> None:
    """The message never went out: free its place."""
    await session.execute(delete(PairPost).where(PairPost.id == post_id))


async def forget_deleted_messages(session: AsyncSession, message_ids: Collection[int]) -> int:
    """Someone deleted pair messages in Discord: nobody can answer them now, so they stop
    holding places. Returns how many open pairs that freed (other messages are not ours)."""
    result = await session.execute(
        delete(PairPost).where(
            PairPost.message_id.in_(list(message_ids)), PairPost.answered_at.is_(None)
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def answer_pair(
    session: AsyncSession,
    run_id: int,
    action: Action,
    a: int,
    b: int,
    voter: str,
    *,
    message_id: int | None = None,
) -> PairAnswer:
    """One tap on a pair's buttons: a vote, a rejection or a skip — or, when the pair went out
    of date meanwhile, the reason and nothing recorded. Refusals (no such run, a completed run,
    a second vote on the pair by the same person) raise DomainError and leave the pair open.

    Meant for one transaction: the pair is closed in the commit that records the answer, so a
    failure anywhere (a refusal, a database held by another program) leaves nothing recorded."""
    await get_running_run(session, run_id)
    reason = await _out_of_date(session, run_id, a, b)
    if reason is not None:
        await _close(session, run_id, a, b, message_id, reason)
        return PairAnswer(reason, counted=False)
    outcomes: dict[Action, str] = {
        "a": f"A (#{a}) is better than B (#{b})",
        "b": f"B (#{b}) is better than A (#{a})",
        "ra": f"A (#{a}) rejected",
        "rb": f"B (#{b}) rejected",
        "s": f"Skipped #{a} vs #{b}",
    }
    outcome = outcomes[action]
    await _close(session, run_id, a, b, message_id, outcome)
    vote = None
    if action == "a":
        vote = await record_vote(session, run_id, a, b, voter)
    elif action == "b":
        vote = await record_vote(session, run_id, b, a, voter)
    elif action == "ra":
        await reject_candidate(session, run_id, a, voter)
    elif action == "rb":
        await reject_candidate(session, run_id, b, voter)
    return PairAnswer(outcome, counted=action != "s", vote=vote)


async def _out_of_date(session: AsyncSession, run_id: int, a: int, b: int) -> str | None:
    """Why a vote on this pair would mean nothing now, or None."""
    rows = (
        await session.execute(
            select(ImageCandidate.id, ImageCandidate.status, ImageCandidate.step).where(
                ImageCandidate.id.in_((a, b)), ImageCandidate.run_id == run_id
            )
        )
    ).all()
    for cid, status, _ in sorted(rows):
        if status is CandidateStatus.rejected:
            return f"This pair is out of date: #{cid} was rejected meanwhile. Nothing recorded."
    steps = {step for _, _, step in rows}
    if len(steps) == 1:
        (step,) = steps
        decision = (
            await session.execute(
                select(PipelineRunStep.approved, PipelineRunStep.top_k).where(
                    PipelineRunStep.run_id == run_id, PipelineRunStep.step == step
                )
            )
        ).first()
        if decision is not None and decided_by_approval(*decision):
            return (
                f"This pair is out of date: step {step} was approved meanwhile. "
                "Nothing recorded."
            )
    return None


async def _close(
    session: AsyncSession, run_id: int, a: int, b: int, message_id: int | None, outcome: str
) -> None:
    """Mark the pair's post answered: by its message when known, else any open post of it."""
    where = [PairPost.run_id == run_id, PairPost.answered_at.is_(None)]
    if message_id is not None:
        where.append(PairPost.message_id == message_id)
    else:
        where += [PairPost.a_id.in_((a, b)), PairPost.b_id.in_((a, b))]
    await _mark_answered(session, outcome, *where)


async def _mark_answered(session: AsyncSession, outcome: str, *where: ColumnElement[bool]) -> None:
    await session.execute(
        update(PairPost).where(*where).values(answered_at=utcnow(), outcome=outcome[:200])
    )


async def _close_out_of_date(session: AsyncSession, run_id: int) -> list[ClosedPost]:
    rows = (
        await session.execute(
            select(
                PairPost.id, PairPost.a_id, PairPost.b_id, PairPost.channel_id, PairPost.message_id
            ).where(PairPost.run_id == run_id, PairPost.answered_at.is_(None))
        )
    ).all()
    closed = []
    for post_id, a, b, channel_id, message_id in rows:
        reason = await _out_of_date(session, run_id, a, b)
        if reason is None:
            continue
        await _mark_answered(session, reason, PairPost.id == post_id)
        if channel_id is not None and message_id is not None:
            closed.append(ClosedPost(channel_id, message_id, reason))
    return closed


async def _step_count(session: AsyncSession, run_id: int) -> int:
    return await session.scalar(
        select(func.count()).where(PipelineRunStep.run_id == run_id)
    ) or 0


async def _describe(
    session: AsyncSession, run: PipelineRun, steps: int, post: PairPost
) -> PairToPost:
    rows = {
        row.id: PairSide(row.id, row.image_path, row.elo, row.votes)
        for row in await session.execute(
            select(
                ImageCandidate.id,
                ImageCandidate.image_path,
                ImageCandidate.elo,
                ImageCandidate.votes,
            ).where(ImageCandidate.id.in_((post.a_id, post.b_id)))
        )
    }
    return PairToPost(
        post.id, run.id, run.name, post.step, steps or post.step, rows[post.a_id], rows[post.b_id]
    )
