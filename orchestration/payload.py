"""The ComfyUI prompt for a job (DESIGN §1.5)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from comfy.workflow import MissingVariableError, render_workflow
from db.models import Job, PipelineRun, PipelineRunStep, PipelineStep
from orchestration.errors import MissingVariables
from orchestration.jobs import get_job


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


async def build_job_payload(
    session: AsyncSession, job_id: int, *, parent_image: str | None = None
) -> dict[str, Any]:
    """Render the step's workflow for this job and store it on the job.

    `parent_image` is the name ComfyUI gave the parent's file when it was uploaded to the
    worker that will run the job (`POST /upload/image`).
    """
    job = await get_job(session, job_id)
    run = await session.get_one(PipelineRun, job.run_id)
    run_step = await session.get_one(PipelineRunStep, (job.run_id, job.step))
    step = await session.get_one(PipelineStep, run_step.step_id)
    try:
        payload = render_workflow(step.workflow, job_values(run, step, job, parent_image))
    except MissingVariableError as err:
        raise MissingVariables(
            f"Job #{job.id} (run #{run.id}, step {job.step} “{step.name}”): {err}."
        ) from err
    job.payload = payload
    await session.commit()
    return payload
