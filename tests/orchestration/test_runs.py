"""Runs: creation, settings, completion and holds."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from db.models import PipelineRun, PipelineRunStep
from orchestration.errors import Conflict, InvalidInput, NotFound
from orchestration.runs import RunSettings
from orchestration.states import RunStatus
from tests.committed import complete_run, create_run, hold_run, resume_run
from tests.factories import make_pipeline, make_run


async def test_create_run_approves_step_one_only(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=3)
    created = await create_run(session, "test-pipeline", "  Morning gym  ", {"prompt": "gym"},
                               RunSettings(max_children=4), created_by="alice")
    assert created.name == "Morning gym" and created.steps == 3
    steps = (await session.execute(
        select(PipelineRunStep.step, PipelineRunStep.approved, PipelineRunStep.approved_by)
        .where(PipelineRunStep.run_id == created.run_id).order_by(PipelineRunStep.step))).all()
    assert steps == [(1, True, "alice"), (2, False, None), (3, False, None)]
    run = await session.get_one(PipelineRun, created.run_id)
    assert run.status is RunStatus.running and run.base_quota == 4 and run.max_children == 4


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        (RunSettings(max_children=0), "N .* at least 1"),
        (RunSettings(target_leaves=0), "T .* at least 1"),
        (RunSettings(budget=0), "budget must be at least 1"),
        (RunSettings(top_k=0), "k must be at least 1"),
    ],
)
async def test_bad_settings_refused(session, tmp_path, settings, words):
    await make_pipeline(session, tmp_path)
    with pytest.raises(InvalidInput, match=words):
        await create_run(session, "test-pipeline", "r", {"prompt": "p"}, settings)
    assert await session.scalar(select(func.count()).select_from(PipelineRun)) == 0


async def test_unknown_pipeline_and_empty_name(session, tmp_path):
    await make_pipeline(session, tmp_path)
    with pytest.raises(NotFound, match="no pipeline “nope”"):
        await create_run(session, "nope", "r", {"prompt": "p"}, RunSettings())
    with pytest.raises(InvalidInput, match="needs a name"):
        await create_run(session, "test-pipeline", "  ", {"prompt": "p"}, RunSettings())


async def test_complete_hold_resume(session, tmp_path):
    await make_pipeline(session, tmp_path)
    run = await make_run(session)
    with pytest.raises(Conflict, match="not on hold"):
        await resume_run(session, run)
    held = await hold_run(session, run, "checkpoint missing")
    assert held.held_reason == "checkpoint missing" and held.held_at is not None
    resumed = await resume_run(session, run)
    assert resumed.held_reason is None
    done = await complete_run(session, run)
    assert done.status is RunStatus.completed and done.completed_at is not None
    with pytest.raises(Conflict, match="completed"):
        await complete_run(session, run)
    with pytest.raises(Conflict, match="completed"):
        await hold_run(session, run, "x")
    with pytest.raises(NotFound, match="no run #77"):
        await complete_run(session, 77)


async def test_a_workers_hold_is_lifted_only_by_its_kind(session, tmp_path):
    from db.models import HoldKind
    from orchestration.runs import lift_holds

    await make_pipeline(session, tmp_path)
    run = await make_run(session)
    held = await hold_run(session, run, "3 jobs in a row failed")
    assert held.held_kind is HoldKind.failures
    assert not await lift_holds(session, HoldKind.workers, [run])  # a person lifts this one
    assert (await resume_run(session, run)).held_kind is None
    await hold_run(session, run, "no connected ComfyUI can run it", HoldKind.workers)
    assert await lift_holds(session, HoldKind.workers, [run]) == [run]
    lifted = await session.get_one(PipelineRun, run)
    assert (lifted.held_reason, lifted.held_kind, lifted.held_at) == (None, None, None)
    assert not await lift_holds(session, HoldKind.workers, [run])


async def test_create_run_asks_the_check_before_writing(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=2)
    seen = []

    def lacking(steps, values):
        seen.append(([s.position for s in steps], dict(values)))
        return [f"step {n} needs checkpoint 'x'; ComfyUI at http://gpu:8188 has: none"
                for n in range(1, 80)]

    with pytest.raises(InvalidInput) as refused:
        await create_run(session, "test-pipeline", "r", {"prompt": "p"}, RunSettings(),
                         check=lacking)
    assert seen == [([1, 2], {"prompt": "p"})]
    text = str(refused.value)
    assert text.startswith("No ComfyUI can run “test-pipeline” with these values, so no run "
                           "was started:\n• step 1 needs checkpoint 'x'")
    assert len(text) < 2000 and text.endswith("more")
    assert await session.scalar(select(func.count()).select_from(PipelineRun)) == 0
    created = await create_run(session, "test-pipeline", "r", {"prompt": "p"}, RunSettings(),
                               check=lambda steps, values: [])
    assert created.run_id == 1
