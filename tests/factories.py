"""Test data built through the product's own functions wherever one exists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ImageCandidate, PipelineRunStep
from orchestration.jobs import arrival_advancing
from orchestration.runs import RunSettings
from orchestration.states import CandidateStatus
from tests.committed import create_run, import_pipeline


def base_workflow(prompt: str = "{{prompt}}") -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["9", 1]}},
        "9": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "model.safetensors"}},
        "3": {"class_type": "KSampler", "inputs": {"seed": "{{seed}}", "steps": 20}},
        "4": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": "{{output_prefix}}"},
        },
    }


def child_workflow() -> dict[str, Any]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "{{parent_image}}"}},
        "2": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["1", 0], "blur_radius": 2, "sigma": 1.0},
        },
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": "{{output_prefix}}/blur"},
        },
    }


def write_pipeline(
    folder: Path,
    steps: int = 3,
    name: str = "test-pipeline",
    step_names: list[str] | None = None,
) -> Path:
    """A pipeline folder: `steps` steps named "step 1", ... or `step_names`."""
    folder.mkdir(parents=True, exist_ok=True)
    names = step_names or [f"step {i}" for i in range(1, steps + 1)]
    entries = []
    for i, step_name in enumerate(names, start=1):
        wf = base_workflow() if i == 1 else child_workflow()
        (folder / f"step{i}.json").write_text(json.dumps(wf))
        entries.append(f"  - name: {step_name}\n    workflow: step{i}.json\n")
    (folder / "pipeline.yaml").write_text(f"name: {name}\nsteps:\n" + "".join(entries))
    return folder


async def make_pipeline(
    session: AsyncSession, tmp_path: Path, steps: int = 3, name: str = "test-pipeline"
) -> int:
    result = await import_pipeline(session, write_pipeline(tmp_path / name, steps, name))
    return result.pipeline_id


async def make_run(
    session: AsyncSession,
    pipeline: str | int = "test-pipeline",
    name: str = "run",
    settings: RunSettings | None = None,
    variables: dict[str, Any] | None = None,
) -> int:
    created = await create_run(
        session,
        pipeline,
        name,
        variables if variables is not None else {"prompt": "a cat"},
        settings or RunSettings(),
    )
    return created.run_id


async def add_candidate(
    session: AsyncSession,
    run_id: int,
    step: int,
    parent_id: int | None = None,
    *,
    elo: float = 1000.0,
    votes: int = 0,
    status: CandidateStatus = CandidateStatus.active,
    advancing: bool | str | None = "arrival",
) -> int:
    """Insert a candidate as if a job had made it: its parent's slot count goes up by one, as
    the job's end would have left it."""
    run_step = await session.get_one(PipelineRunStep, (run_id, step))
    cand = ImageCandidate(
        run_id=run_id,
        step=step,
        parent_id=parent_id,
        seed=0,
        image_path=f"fake/{run_id}/{step}.png",
        elo=elo,
        votes=votes,
        status=status,
        advancing=arrival_advancing(run_step) if advancing == "arrival" else advancing,
    )
    session.add(cand)
    if parent_id is not None:
        await session.execute(update(ImageCandidate).where(ImageCandidate.id == parent_id)
                              .values(child_slots=ImageCandidate.child_slots + 1))
    await session.commit()
    return cand.id
