"""Deleting a run with everything that belongs to it, and a pipeline that no run uses.

Rows go by explicit deletes, the rows that point before the rows they point at, so the order
holds wherever foreign keys are checked (SQLite with foreign keys on, PostgreSQL) without
leaning on ON DELETE clauses. The run's files are not touched here: the caller removes them
after the commit, so no row ever names a file that is already gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    ImageCandidate,
    Job,
    PairPost,
    Pipeline,
    PipelineRun,
    PipelineRunStep,
    PipelineStep,
    Vote,
)
from orchestration.errors import Conflict, NotFound
from orchestration.runs import find_pipeline, get_run
from orchestration.states import IN_FLIGHT, JobStatus, RunStatus
from orchestration.text import plural, quoted

# The name a parent image had on ComfyUI, as the job stored it (orchestration.payload).
_PARENT_IMAGE = Job.placeholder_values["parent_image"].as_string()
# A refusal names at most this many jobs in flight.
_NAMED_JOBS = 3


@dataclass(frozen=True)
class WorkerFiles:
    """What one ComfyUI holds of a run: its prompts' history entries, and the parent images
    uploaded to it for this run alone (names in its input folder, `comfy-curator/cc-….png`)."""

    url: str
    prompt_ids: tuple[str, ...]
    uploads: tuple[str, ...]


@dataclass(frozen=True)
class RunContents:
    """A run and what deleting it removes from the database; its files are under `folder`
    (relative to DATA_DIR)."""

    run_id: int
    name: str
    pipeline: str
    status: RunStatus
    held: bool
    folder: str
    channel_id: int | None
    steps: int
    images: int
    jobs: int
    votes: int
    pair_posts: int
    workers: tuple[WorkerFiles, ...]

    @property
    def rows(self) -> str:
        """The database rows, as a person reads them."""
        return ", ".join((
            plural(self.images, "candidate"), plural(self.jobs, "job"),
            plural(self.votes, "vote"), plural(self.pair_posts, "posted pair"),
            plural(self.steps, "step") + " of the run",
        ))


async def _count(session: AsyncSession, model: type[object], where: ColumnElement[bool]) -> int:
    return int(await session.scalar(select(func.count()).select_from(model).where(where)) or 0)


async def _workers(session: AsyncSession, run_id: int) -> tuple[WorkerFiles, ...]:
    rows = (await session.execute(
        select(Job.worker, Job.prompt_id, _PARENT_IMAGE)
        .where(Job.run_id == run_id, Job.worker.is_not(None)).order_by(Job.id)
    )).all()
    names = {name for _, _, name in rows if name}
    shared = set(await session.scalars(
        select(_PARENT_IMAGE).where(Job.run_id != run_id, _PARENT_IMAGE.in_(names)).distinct()
    )) if names else set()
    prompts: dict[str, list[str]] = {}
    uploads: dict[str, list[str]] = {}
    for worker, prompt_id, name in rows:
        prompts.setdefault(worker, [])
        uploads.setdefault(worker, [])
        if prompt_id:
            prompts[worker].append(prompt_id)
        if name and name not in shared and name not in uploads[worker]:
            uploads[worker].append(name)
    return tuple(WorkerFiles(url, tuple(prompts[url]), tuple(uploads[url])) for url in prompts)


async def run_contents(session: AsyncSession, run_id: int) -> RunContents:
    """What deleting the run would remove, read without changing anything."""
    run = await get_run(session, run_id)
    pipeline = await session.scalar(select(Pipeline.name).where(Pipeline.id == run.pipeline_id))
    return RunContents(
        run_id=run.id,
        name=run.name,
        pipeline=pipeline or "?",
        status=run.status,
        held=run.held_reason is not None,
        folder=run.folder,
        channel_id=run.channel_id,
        steps=await _count(session, PipelineRunStep, PipelineRunStep.run_id == run_id),
        images=await _count(session, ImageCandidate, ImageCandidate.run_id == run_id),
        jobs=await _count(session, Job, Job.run_id == run_id),
        votes=await _count(session, Vote, Vote.run_id == run_id),
        pair_posts=await _count(session, PairPost, PairPost.run_id == run_id),
        workers=await _workers(session, run_id),
    )


async def ensure_deletable(session: AsyncSession, run_id: int) -> None:
    """Refuse while a job of the run is claimed or on ComfyUI: its images would arrive for a
    run that is gone. A run with no job in flight may go, whatever its status."""
    run = await get_run(session, run_id)
    flying = (await session.execute(
        select(Job.id, Job.status, Job.worker)
        .where(Job.run_id == run_id, Job.status.in_(IN_FLIGHT)).order_by(Job.id)
    )).all()
    if not flying:
        return
    named = [
        f"#{job_id} " + ("claimed, not yet sent" if status is JobStatus.pending
                         else f"{status.value} on {worker}")
        for job_id, status, worker in flying[:_NAMED_JOBS]
    ]
    more = len(flying) - len(named)
    jobs = "; ".join(named) + (f"; and {more} more" if more else "")
    if run.status is RunStatus.running and run.held_reason is None:
        then = ("Complete the run first (`/complete`) so that no new job starts, then delete it "
                "once its jobs have ended.")
    else:
        then = "Wait for it to end (it is not stopped by this), then delete the run."
    raise Conflict(
        f"Run #{run.id} {quoted(run.name)} has {plural(len(flying), 'job')} in flight ({jobs}): "
        f"its images would arrive for a run that is gone. {then} Nothing was deleted."
    )


async def delete_run(session: AsyncSession, run_id: int) -> RunContents:
    """Delete the run and every row of it; returns what went, for the files and ComfyUI."""
    # On PostgreSQL the row lock makes a job being claimed for the run wait, or be seen.
    await session.execute(select(PipelineRun.id).where(PipelineRun.id == run_id).with_for_update())
    await ensure_deletable(session, run_id)
    contents = await run_contents(session, run_id)
    # Jobs and candidates point at each other (a job at its parent, a candidate at its job):
    # the jobs let go of their parents first.
    await session.execute(update(Job).where(Job.run_id == run_id).values(parent_id=None))
    for stmt in (
        delete(Vote).where(Vote.run_id == run_id),
        delete(PairPost).where(PairPost.run_id == run_id),
        delete(ImageCandidate).where(ImageCandidate.run_id == run_id),
        delete(Job).where(Job.run_id == run_id),
        delete(PipelineRunStep).where(PipelineRunStep.run_id == run_id),
        delete(PipelineRun).where(PipelineRun.id == run_id),
    ):
        await session.execute(stmt)
    session.expunge_all()  # objects of rows now gone must not be flushed again
    return contents


@dataclass(frozen=True)
class PipelineDeleted:
    pipeline_id: int
    name: str
    steps: int


def _runs_named(runs: Sequence[tuple[int, str]], limit: int = 5) -> str:
    named = ", ".join(f"#{run_id} {quoted(name, 40)}" for run_id, name in runs[:limit])
    return named + (f" and {len(runs) - limit} more" if len(runs) > limit else "")


async def delete_pipeline(session: AsyncSession, name_or_id: str | int) -> PipelineDeleted:
    """Delete a pipeline and its steps; refused while any run uses it, naming the runs."""
    try:
        pipeline = await find_pipeline(session, name_or_id)
    except NotFound:
        raise NotFound(f"There is no pipeline {quoted(str(name_or_id))}: nothing was deleted "
                       "(pipeline list shows the ones imported).") from None
    runs = (await session.execute(
        select(PipelineRun.id, PipelineRun.name)
        .where(PipelineRun.pipeline_id == pipeline.id).order_by(PipelineRun.id)
    )).tuples().all()
    if runs:
        raise Conflict(
            f"Pipeline {quoted(pipeline.name)} is used by {plural(len(runs), 'run')}: "
            f"{_runs_named(runs)}. Delete those runs first; nothing was deleted."
        )
    done = PipelineDeleted(pipeline.id, pipeline.name, len(pipeline.steps))
    await session.execute(delete(PipelineStep).where(PipelineStep.pipeline_id == pipeline.id))
    await session.execute(delete(Pipeline).where(Pipeline.id == pipeline.id))
    session.expunge_all()
    return done


@dataclass(frozen=True)
class StoredRun:
    """A run with the folder its files are in and how many images it has."""

    run_id: int
    name: str
    status: RunStatus
    folder: str
    images: int


async def stored_runs(session: AsyncSession) -> list[StoredRun]:
    counts = (
        select(ImageCandidate.run_id, func.count().label("n"))
        .group_by(ImageCandidate.run_id).subquery()
    )
    rows = await session.execute(
        select(PipelineRun.id, PipelineRun.name, PipelineRun.status, PipelineRun.folder,
               func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.run_id == PipelineRun.id).order_by(PipelineRun.id)
    )
    return [StoredRun(i, name, status, folder, int(n)) for i, name, status, folder, n in rows]
