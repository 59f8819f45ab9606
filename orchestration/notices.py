"""Channel notices a run owes its people (docs/operations.md, "Notices"): a step became awaiting
approval, the run has no work left.

Each notice goes out once. The check and the mark are one transaction that starts by locking
the run's row (SQLite: the write lock of `BEGIN IMMEDIATE`), so two events racing — two jobs
ending together, a job ending during an `/approve` — cannot both find the same notice due,
and a job ending between the check and the mark cannot hide one: its own event checks again
after ours commits. The marks are columns, so a restart remembers what was already said.

A notice is marked before it is posted: at most once. A post that fails is logged and not
retried, which beats the same message twice in a channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.base import utcnow
from db.models import ImageCandidate, Job, PipelineRun, PipelineRunStep
from orchestration.approvals import awaiting_approval
from orchestration.overview import jobs_in_flight, run_finished, run_has_work
from orchestration.selection import plan_and_counts
from orchestration.states import CandidateStatus, RunStatus


class NoticeKind(StrEnum):
    awaiting_approval = "awaiting_approval"
    no_work = "no_work"


@dataclass(frozen=True)
class Notice:
    """One message for the run's channel; `step` is set for an awaiting-approval notice."""

    run_id: int
    kind: NoticeKind
    message: str
    step: int | None = None


async def due_notices(session: AsyncSession, run_id: int) -> list[Notice]:
    """The notices the run owes now, marked as given in the caller's transaction, so
    a notice is taken exactly when its mark is committed.

    Awaiting approval: once per step (approval ends the waiting for good). No work left: once
    each time the run runs dry — the mark is cleared when the run is found with work again,
    and a job made after the mark shows work came and went even if no check saw it. A run dry
    only because a step awaits approval gets no "no work" notice: the awaiting one already says
    what to do. Neither does a held run (its hold was posted and says what to do), nor a
    completed one.
    """
    # Locked and read afresh: a session keeps its objects after a commit, marks included.
    run = await session.get(PipelineRun, run_id, with_for_update=True, populate_existing=True)
    if run is None or run.status is RunStatus.completed:
        return []
    notices: list[Notice] = []
    now = utcnow()

    found = await plan_and_counts(session, run_id)
    waiting = await awaiting_approval(session, run_id, found=found)
    if waiting:
        fresh = (
            await session.scalars(
                select(PipelineRunStep)
                .where(
                    PipelineRunStep.run_id == run_id,
                    PipelineRunStep.step.in_(waiting),
                    PipelineRunStep.awaiting_notified_at.is_(None),
                )
                .order_by(PipelineRunStep.step)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).all()
        active = await _active_counts(session, run_id, [s.step for s in fresh])
        for run_step in fresh:
            run_step.awaiting_notified_at = now
            notices.append(
                Notice(
                    run_id,
                    NoticeKind.awaiting_approval,
                    awaiting_message(run_step.step, active.get(run_step.step, 0), run.top_k),
                    run_step.step,
                )
            )

    if run.held_reason is None:
        if await run_has_work(session, run_id, found=found):
            run.no_work_notified_at = None  # re-armed: the next time it runs dry is news again
        elif run_finished(
            has_work=False,
            in_flight=await jobs_in_flight(session, run_id, found=found),
            held=False,
            awaiting=bool(waiting),
        ) and await _no_work_due(session, run):
            run.no_work_notified_at = now
            notices.append(Notice(run_id, NoticeKind.no_work, no_work_message(run)))
    await session.flush()
    return notices


async def runs_to_notify(session: AsyncSession) -> list[int]:
    """Running runs with a channel: the ones to check at start-up, for notices a stop may have
    kept from going out (no job event may ever come for an idle run)."""
    rows = await session.scalars(
        select(PipelineRun.id)
        .where(PipelineRun.status == RunStatus.running, PipelineRun.channel_id.is_not(None))
        .order_by(PipelineRun.id)
    )
    return list(rows)


def awaiting_message(step: int, candidates: int, k: int) -> str:
    plural = "" if candidates == 1 else "s"
    return (
        f"⏳ Step {step} is ready for review: {candidates} candidate{plural}. "
        f"Vote on the pairs (`/gallery step:{step}` shows them all), "
        f"then `/approve step:{step} k:{k}`."
    )


def no_work_message(run: PipelineRun) -> str:
    return (
        f"🏁 Run #{run.id} “{run.name}” has no work left: nothing more can grow under its "
        "settings (N, gates, budget). Look at the results with `/gallery`, then `/complete` "
        "the run."
    )


async def _active_counts(session: AsyncSession, run_id: int, steps: list[int]) -> dict[int, int]:
    if not steps:
        return {}
    c = ImageCandidate
    rows = await session.execute(
        select(c.step, func.count())
        .where(c.run_id == run_id, c.step.in_(steps), c.status == CandidateStatus.active)
        .group_by(c.step)
    )
    return {step: int(count) for step, count in rows.tuples()}


async def _no_work_due(session: AsyncSession, run: PipelineRun) -> bool:
    """Not told yet, or told before a job was made (work came and went unseen, e.g. after
    `/resume` or a rejection that reopened a deficit)."""
    told = run.no_work_notified_at
    if told is None:
        return True
    later = await session.scalar(
        select(exists().where(Job.run_id == run.id, Job.created_at > told))
    )
    return bool(later)
