"""Job payloads (docs/pipelines.md, "Placeholders")."""

from __future__ import annotations

import json
import random

import pytest
from sqlalchemy import func, select

from db.models import Job, PipelineRun
from orchestration.errors import MissingVariables
from orchestration.jobs import ClaimedJob, StoredImage, claim_next_job, complete_job
from orchestration.payload import prepare_submission, stored_prompt
from orchestration.runs import RunSettings
from orchestration.states import JobStatus
from tests.committed import create_run, import_pipeline


def typed_pipeline(folder):
    folder.mkdir()
    base = {
        "3": {"class_type": "KSampler",
              "inputs": {"seed": "{{seed}}", "steps": "{{steps}}", "cfg": 7.5,
                         "model": ["4", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
        "6": {"class_type": "CLIPTextEncode",
              "inputs": {"text": "{{prompt}}, {{style}} lighting", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode",
              "inputs": {"text": "{{negative_prompt}}", "clip": ["4", 1]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "{{output_prefix}}"}},
    }
    child = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "{{parent_image}}"}},
        "2": {"class_type": "SaveImage",
              "inputs": {"images": ["1", 0], "filename_prefix": "{{output_prefix}}"}},
    }
    (folder / "base.json").write_text(json.dumps(base))
    (folder / "child.json").write_text(json.dumps(child))
    (folder / "pipeline.yaml").write_text(
        "name: typed\nsteps:\n  - {name: Base, workflow: base.json}\n"
        "  - {name: Refine Pass, workflow: child.json}\n"
    )
    return folder


async def test_whole_placeholders_keep_type_embedded_interpolate(session, tmp_path):
    await import_pipeline(session, typed_pipeline(tmp_path / "typed"))
    created = await create_run(session, "typed", "Morning Gym Shoot",
                               {"prompt": "a gym", "style": "golden", "steps": 28},
                               RunSettings(max_children=1))
    job = await claim_next_job(session, random.Random(1))
    assert isinstance(job, ClaimedJob)
    payload = await prepare_submission(session, job.job_id, prompt_id="p-1", worker="http://w")
    assert payload["3"]["inputs"]["seed"] == job.seed
    assert isinstance(payload["3"]["inputs"]["seed"], int)
    assert payload["3"]["inputs"]["steps"] == 28
    assert payload["3"]["inputs"]["model"] == ["4", 0]
    assert payload["6"]["inputs"]["text"] == "a gym, golden lighting"
    assert payload["7"]["inputs"]["text"] == ""  # negative prompt defaults to empty
    prefix = payload["9"]["inputs"]["filename_prefix"]
    assert prefix == f"{created.folder}/01-base/job-{job.job_id:06d}"
    assert created.folder == f"run-{created.run_id:04d}-morning-gym-shoot"
    assert await stored_prompt(session, job.job_id) == payload


async def test_text_is_typed_for_the_worker_or_the_job_is_not_sent(session, tmp_path):
    from comfy.values import InputKind
    from orchestration.errors import InvalidInput

    await import_pipeline(session, typed_pipeline(tmp_path / "typed"))
    good = await create_run(session, "typed", "Text", {"prompt": "a", "style": "x",
                                                       "steps": "28"}, RunSettings(max_children=1))
    bad = await create_run(session, "typed", "Bad", {"prompt": "a", "style": "x",
                                                     "steps": "lots"}, RunSettings(max_children=1))
    claimed = [await claim_next_job(session, random.Random(1)) for _ in range(2)]
    jobs = {job.run_id: job.job_id for job in claimed if isinstance(job, ClaimedJob)}
    kinds = {"KSampler": {"steps": InputKind("INT", 1, 10000)}}

    def send(run_id: int):
        return prepare_submission(session, jobs[run_id], prompt_id=f"p-{run_id}",
                                  worker="http://w", kinds=kinds)

    assert (await send(good.run_id))["3"]["inputs"]["steps"] == 28
    with pytest.raises(InvalidInput) as refused:
        await send(bad.run_id)
    assert str(refused.value) == (f"Job #{jobs[bad.run_id]} (run #{bad.run_id}, step 1 “Base”): "
                                  "steps=lots, but KSampler (#3) steps takes a whole number")
    job = await session.get_one(Job, jobs[bad.run_id])
    assert job.prompt_id is None and job.placeholder_values is None  # nothing stored


async def test_a_job_stores_its_values_not_a_copy_of_the_workflow(session, tmp_path):
    folder = typed_pipeline(tmp_path / "typed")
    workflow = json.loads((folder / "base.json").read_text())
    workflow["99"] = {"class_type": "Note", "inputs": {"text": "x" * 200_000}}
    (folder / "base.json").write_text(json.dumps(workflow))
    await import_pipeline(session, folder)
    await create_run(session, "typed", "r", {"prompt": "p", "style": "s", "steps": 2},
                     RunSettings(max_children=1))
    job = await claim_next_job(session, random.Random(1))
    assert isinstance(job, ClaimedJob)
    payload = await prepare_submission(session, job.job_id, prompt_id="p-1", worker="http://w")
    stored = await session.get_one(Job, job.job_id)
    assert len(json.dumps(stored.placeholder_values)) < 1000
    assert stored.placeholder_values["seed"] == job.seed
    assert await stored_prompt(session, job.job_id) == payload


async def child_job(session, tmp_path, seed: int) -> ClaimedJob:
    """A claimed step-2 job of the typed pipeline, its parent made."""
    await import_pipeline(session, typed_pipeline(tmp_path / "typed"))
    await create_run(session, "typed", "r", {"prompt": "p", "style": "s", "steps": 1},
                     RunSettings(max_children=1))
    rng = random.Random(seed)
    base = await claim_next_job(session, rng)
    assert isinstance(base, ClaimedJob)
    await complete_job(session, base.job_id, [StoredImage("a.png", 0)])
    child = await claim_next_job(session, rng)
    assert isinstance(child, ClaimedJob) and child.step == 2
    await session.commit()
    return child


async def test_parent_image_is_the_uploaded_name(session, tmp_path):
    child = await child_job(session, tmp_path, 2)
    payload = await prepare_submission(session, child.job_id, prompt_id="p-1", worker="http://w",
                                       parent_image="curator/p17.png")
    assert payload["1"]["inputs"]["image"] == "curator/p17.png"
    assert payload["2"]["inputs"]["filename_prefix"].split("/")[1] == "02-refine-pass"
    with pytest.raises(MissingVariables, match=r"\{\{parent_image\}\}"):
        await prepare_submission(session, child.job_id, prompt_id="p-2", worker="http://w")


async def test_submission_stores_payload_and_prompt_id_together(session, tmp_path):
    child = await child_job(session, tmp_path, 3)

    with pytest.raises(MissingVariables, match=r"\{\{parent_image\}\}"):
        await prepare_submission(session, child.job_id, prompt_id="p-1", worker="http://w")
    await session.rollback()
    job = await session.get_one(Job, child.job_id)
    await session.refresh(job)
    assert (job.status, job.prompt_id, job.placeholder_values, job.attempts) == (
        JobStatus.pending, None, None, 0)

    payload = await prepare_submission(session, child.job_id, prompt_id="p-2",
                                       worker="http://w", parent_image="curator/p1.png")
    await session.refresh(job)
    assert (job.status, job.prompt_id, job.worker, job.attempts) == (
        JobStatus.submitted, "p-2", "http://w", 1)
    assert await stored_prompt(session, child.job_id) == payload
    assert job.placeholder_values["parent_image"] == "curator/p1.png"


async def test_missing_variable_refused_before_any_job(session, tmp_path):
    await import_pipeline(session, typed_pipeline(tmp_path / "typed"))
    with pytest.raises(MissingVariables, match="needs steps, style"):
        await create_run(session, "typed", "r", {"prompt": "p"}, RunSettings())
    assert await session.scalar(select(func.count()).select_from(PipelineRun)) == 0
    assert await session.scalar(select(func.count()).select_from(Job)) == 0
