"""The ComfyUI prompt for a job (docs/pipelines.md, "Placeholders")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from comfy.values import InputKind, typed_values
from comfy.workflow import MissingVariableError, render_workflow
from db.models import Job, PipelineRun, PipelineStep
from orchestration.errors import InvalidInput, MissingVariables, NotFound
from orchestration.jobs import record_submission, with_run_and_step


def output_prefix(run: PipelineRun, step: PipelineStep, job: Job) -> str:
    """Where ComfyUI saves a job's images: `<run folder>/<step slug>/job-<id>`."""
    return f"{run.folder}/{step.slug}/job-{job.id:06d}"


def job_values(
    run: PipelineRun, step: PipelineStep, job: Job, parent_image: str | None
) -> dict[str, Any]:
    values: dict[str, Any] = dict(run.variables)
    values["seed"] = job.seed
    values["output_prefix"] = output_prefix(run, step, job)
    if parent_image is not None:
        values["parent_image"] = parent_image
    return values


async def _job_run_step(
    session: AsyncSession, job_id: int
) -> tuple[Job, PipelineRun, PipelineStep]:
    stmt = with_run_and_step(select(Job, PipelineRun, PipelineStep), job_id)
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        raise NotFound(f"There is no job #{job_id}.")
    return row._tuple()


async def _render_and_store(
    session: AsyncSession, job_id: int, parent_image: str | None,
    kinds: Mapping[str, Mapping[str, InputKind]],
) -> tuple[Job, dict[str, Any]]:
    job, run, step = await _job_run_step(session, job_id)
    where = f"Job #{job.id} (run #{run.id}, step {job.step} “{step.name}”)"
    values, wrong = typed_values(step.workflow, job_values(run, step, job, parent_image), kinds,
                                 where)
    if wrong:
        raise InvalidInput("\n".join(wrong))
    try:
        payload = render_workflow(step.workflow, values)
    except MissingVariableError as err:
        raise MissingVariables(f"{where}: {err}.") from err
    job.placeholder_values = values
    return job, payload


async def stored_prompt(session: AsyncSession, job_id: int) -> dict[str, Any] | None:
    """The prompt a job was submitted with, rebuilt from its step's template and the values
    stored on the job (None before it was built)."""
    job, _, step = await _job_run_step(session, job_id)
    if job.placeholder_values is None:
        return None
    return render_workflow(step.workflow, job.placeholder_values)


async def prepare_submission(
    session: AsyncSession, job_id: int, *, prompt_id: str, worker: str,
    parent_image: str | None = None, kinds: Mapping[str, Mapping[str, InputKind]] | None = None,
) -> dict[str, Any]:
    """Render the job's workflow and store its values, the prompt id and the worker in one
    write, which the caller commits before the prompt is posted: a crash then leaves an id to
    look up. Returns the prompt to post. Nothing is changed when the workflow cannot be
    rendered.

    `parent_image` is the name ComfyUI gave the parent's file when it was uploaded to the
    worker that will run the job (`POST /upload/image`). `kinds` is what that worker's number
    and switch inputs take (`WorkerCapabilities.kinds`): the run's text values are converted
    to them, and stored converted, so the stored values rebuild the prompt that was sent.
    """
    job, payload = await _render_and_store(session, job_id, parent_image, kinds or {})
    record_submission(job, prompt_id, worker)
    await session.flush()
    return payload
