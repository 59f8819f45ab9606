"""Jobs: claiming the next one, and ending one with its images (or its error).

This module alone keeps `ImageCandidate.child_slots` (children that exist plus child jobs in
flight): +1 when a child job is claimed, and when the job ends -1 plus one per image it made,
always in the same transaction as the rows being counted.

The functions flush and raise; the caller owns the transaction and commits it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.base import utcnow
from db.models import (
    ImageCandidate,
    Job,
    PipelineRun,
    PipelineRunStep,
    PipelineStep,
    SchedulerState,
)
from orchestration.errors import NotFound
from orchestration.rejection import mark_rejected
from orchestration.selection import JobDecision, Mode, select_next_job
from orchestration.states import IN_FLIGHT, CandidateStatus, JobMode, JobStatus

# Seeds fit in 24 bits so a seed can also feed integer inputs with that range (EmptyImage's
# colour in the CPU demo pipeline); a run never repeats one.
SEED_LIMIT = 1 << 24

_Row = TypeVar("_Row", bound=tuple[Any, ...])

# Sent to ComfyUI and not ended: only ComfyUI can tell how such a job went. A pending job
# never reached it.
UNFINISHED: Final = frozenset({JobStatus.submitted, JobStatus.running})


@dataclass(frozen=True)
class ClaimedJob:
    job_id: int
    run_id: int
    step: int
    parent_id: int | None
    mode: JobMode
    seed: int
    reason: str


@dataclass(frozen=True)
class StoredImage:
    """One output image already written to disk, ready to become a candidate."""

    path: str  # relative to DATA_DIR
    output_index: int


async def _lock_cursor(session: AsyncSession) -> SchedulerState | None:
    """Serialises claims: on PostgreSQL by the row lock, on SQLite by BEGIN IMMEDIATE."""
    state: SchedulerState | None = await session.scalar(
        select(SchedulerState).where(SchedulerState.id == 1).with_for_update()
    )
    return state


async def claim_next_job(
    session: AsyncSession, rng: random.Random, skip_runs: AbstractSet[int] = frozenset()
) -> ClaimedJob | JobDecision:
    """Select and record the next job, from runs not in `skip_runs`; returns the no-work
    decision when there is none, leaving the session as it was. The caller commits: the job,
    its parent's slot, the base quota and the cursor are one write."""
    state = await _lock_cursor(session)
    decision = await select_next_job(session, rng, skip_runs)
    if decision.mode is Mode.no_work or decision.run_id is None or decision.step is None:
        return decision

    if decision.deficit:
        await _raise_base_quota(session, decision.run_id)
    job = Job(
        run_id=decision.run_id,
        step=decision.step,
        parent_id=decision.parent_id,
        mode=JobMode(decision.mode.value),
        reason=decision.reason,
        seed=await _fresh_seed(session, decision.run_id, rng),
        status=JobStatus.pending,
    )
    session.add(job)
    if decision.parent_id is not None:
        await _adjust_slots(session, decision.parent_id, +1)
    if state is None:
        state = SchedulerState(id=1)
        session.add(state)
    state.last_run_id = decision.run_id
    await session.flush()
    return ClaimedJob(job.id, job.run_id, job.step, job.parent_id, job.mode, job.seed, job.reason)


async def _fresh_seed(session: AsyncSession, run_id: int, rng: random.Random) -> int:
    while True:
        seed = rng.randrange(SEED_LIMIT)
        used = await session.scalar(
            select(Job.id).where(Job.run_id == run_id, Job.seed == seed).limit(1)
        )
        if used is None:
            return seed


async def _adjust_slots(session: AsyncSession, candidate_id: int, delta: int) -> None:
    if delta:
        await session.execute(
            update(ImageCandidate)
            .where(ImageCandidate.id == candidate_id)
            .values(child_slots=ImageCandidate.child_slots + delta)
        )


async def _raise_base_quota(session: AsyncSession, run_id: int) -> None:
    """Deficit mode: allow N more step-1 candidates than the run has made or has in flight."""
    run = await session.get_one(PipelineRun, run_id)
    made = await session.scalar(
        select(func.count()).where(ImageCandidate.run_id == run_id, ImageCandidate.step == 1)
    )
    flying = await session.scalar(
        select(func.count()).where(Job.run_id == run_id, Job.step == 1, Job.status.in_(IN_FLIGHT))
    )
    run.base_quota = max(run.base_quota, int(made or 0) + int(flying or 0)) + run.max_children


async def get_job(session: AsyncSession, job_id: int) -> Job:
    job = await session.get(Job, job_id)
    if job is None:
        raise NotFound(f"There is no job #{job_id}.")
    return job


def arrival_advancing(run_step: PipelineRunStep) -> bool | None:
    """Whether a new candidate may become a parent (docs/architecture.md, "Approvals").

    Step 1 is approved with no filter, so its candidates advance; a candidate reaching a later
    step after that step's approval missed the top-K and does not; before approval: undecided.
    """
    if not run_step.approved:
        return None
    return run_step.step == 1


async def complete_job(
    session: AsyncSession, job_id: int, images: Sequence[StoredImage]
) -> list[int]:
    """Record a finished job's images as candidates, exactly once (a repeat returns the ids)."""
    job = await get_job(session, job_id)
    if job.status is JobStatus.succeeded:
        existing = await session.scalars(
            select(ImageCandidate.id)
            .where(ImageCandidate.job_id == job.id)
            .order_by(ImageCandidate.output_index)
        )
        return list(existing)
    run_step = await session.get_one(PipelineRunStep, (job.run_id, job.step))
    advancing = arrival_advancing(run_step)
    candidates = [
        ImageCandidate(
            run_id=job.run_id,
            step=job.step,
            parent_id=job.parent_id,
            job_id=job.id,
            output_index=image.output_index,
            seed=job.seed,
            image_path=image.path,
            advancing=advancing,
        )
        for image in images
    ]
    session.add_all(candidates)
    if job.parent_id is not None and job.status in IN_FLIGHT:
        await _adjust_slots(session, job.parent_id, len(candidates) - 1)
    job.status = JobStatus.succeeded
    job.finished_at = utcnow()
    job.error = None
    await session.flush()
    return [c.id for c in candidates]


async def end_job(
    session: AsyncSession, job_id: int, error: str, status: JobStatus = JobStatus.failed
) -> Job:
    """Fail or cancel a job; its place under the parent is freed. Ending twice changes nothing."""
    if status not in (JobStatus.failed, JobStatus.cancelled):
        raise ValueError(f"end_job takes failed or cancelled, not {status}")
    job = await get_job(session, job_id)
    if job.status in IN_FLIGHT:
        if job.parent_id is not None:
            await _adjust_slots(session, job.parent_id, -1)
        job.status = status
        job.error = error
        job.finished_at = utcnow()
        await session.flush()  # selection reads through Core: it must see the freed place
    return job


async def reject_unreadable_parent(session: AsyncSession, candidate_id: int, reason: str) -> None:
    """A candidate whose file is gone or is not an image can never be a parent: rejected, with
    the reason kept in `rejected_by` (the gallery shows it rejected), so selection stops
    choosing it and a resumed run does not fail on it again."""
    cand = await session.get(ImageCandidate, candidate_id)
    if cand is not None and cand.status is not CandidateStatus.rejected:
        mark_rejected(cand, reason)
        await session.flush()


async def recount_child_slots(session: AsyncSession) -> int:
    """Recompute every `child_slots` from the rows it counts; returns how many were off.

    Run at start-up as a repair: the counter is only ever changed next to the rows it counts,
    so after a clean history this finds nothing.
    """
    child = aliased(ImageCandidate)
    truth = (
        select(func.count()).where(child.parent_id == ImageCandidate.id).scalar_subquery()
        + select(func.count())
        .where(Job.parent_id == ImageCandidate.id, Job.status.in_(IN_FLIGHT))
        .scalar_subquery()
    )
    result = await session.execute(
        update(ImageCandidate)
        .where(ImageCandidate.child_slots != truth)
        .values(child_slots=truth)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class JobContext:
    """What a worker needs to run or follow one job, read in one short session."""

    job_id: int
    run_id: int
    step: int
    status: JobStatus
    run_folder: str
    step_slug: str
    parent_id: int | None
    parent_path: str | None
    prompt_id: str | None
    worker: str | None


def with_run_and_step(stmt: Select[_Row], job_id: int) -> Select[_Row]:
    """`stmt` over one job joined to its run and its pipeline step, in one query: the
    scheduler's reads between two prompts, where every round trip shows."""
    return (
        stmt.select_from(Job)
        .join(PipelineRun, PipelineRun.id == Job.run_id)
        .join(PipelineRunStep, (PipelineRunStep.run_id == Job.run_id)
              & (PipelineRunStep.step == Job.step))
        .join(PipelineStep, PipelineStep.id == PipelineRunStep.step_id)
        .where(Job.id == job_id)
    )


async def job_context(session: AsyncSession, job_id: int) -> JobContext:
    row = (await session.execute(with_run_and_step(
        select(Job.id, Job.run_id, Job.step, Job.status, PipelineRun.folder, PipelineStep.slug,
               Job.parent_id, ImageCandidate.image_path, Job.prompt_id, Job.worker),
        job_id,
    ).outerjoin(ImageCandidate, ImageCandidate.id == Job.parent_id))).one_or_none()
    if row is None:
        raise NotFound(f"There is no job #{job_id}.")
    return JobContext(*row)


def record_submission(job: Job, prompt_id: str, worker: str) -> None:
    """The prompt id is stored before the prompt is posted: a crash then leaves an id to look
    up. The caller commits, before posting."""
    job.prompt_id = prompt_id
    job.worker = worker
    job.status = JobStatus.submitted
    job.attempts += 1
    job.submitted_at = utcnow()


async def mark_running(session: AsyncSession, job_id: int) -> None:
    job = await get_job(session, job_id)
    if job.status is JobStatus.submitted:
        job.status = JobStatus.running
        job.started_at = utcnow()
        await session.flush()


@dataclass(frozen=True)
class UnfinishedJob:
    job_id: int
    worker: str | None


async def unfinished_jobs(session: AsyncSession) -> list[UnfinishedJob]:
    """Jobs left on ComfyUI and not ended (a crash, a stop, an outage), oldest first, each with
    the worker it was sent to."""
    rows = await session.execute(
        select(Job.id, Job.worker).where(Job.status.in_(UNFINISHED)).order_by(Job.id)
    )
    return [UnfinishedJob(job_id, worker) for job_id, worker in rows]


async def cancel_unsubmitted(session: AsyncSession) -> int:
    """Pending jobs never reached ComfyUI; cancelling frees their place for a fresh selection."""
    ids = list(await session.scalars(select(Job.id).where(Job.status == JobStatus.pending)))
    for job_id in ids:
        await end_job(session, job_id, "not submitted before the scheduler stopped",
                      JobStatus.cancelled)
    return len(ids)


async def failure_streak(session: AsyncSession, run_id: int, step: int, length: int) -> list[str]:
    """The errors of the last `length` ended jobs of a run's step, if every one of them failed."""
    rows = (
        await session.execute(
            select(Job.status, Job.error)
            .where(Job.run_id == run_id, Job.step == step,
                   Job.status.in_((JobStatus.succeeded, JobStatus.failed)))
            .order_by(Job.finished_at.desc(), Job.id.desc())
            .limit(length)
        )
    ).all()
    if len(rows) < length or any(status is not JobStatus.failed for status, _ in rows):
        return []
    return [error or "unknown error" for _, error in rows]
