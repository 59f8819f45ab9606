"""Deleting a run takes every row of it and nothing of another run; a run with a job in flight,
and a pipeline a run uses, are refused with nothing changed."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import func, select, text

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
from orchestration.deletion import (
    delete_pipeline,
    delete_run,
    ensure_deletable,
    run_contents,
    stored_runs,
)
from orchestration.errors import Conflict, NotFound
from orchestration.jobs import ClaimedJob, StoredImage, claim_next_job, complete_job, end_job
from orchestration.payload import prepare_submission
from orchestration.runs import RunSettings
from orchestration.states import JobStatus
from tests.committed import (
    committed,
    complete_run,
    hold_run,
    plan_pairs,
    record_vote,
)
from tests.factories import make_pipeline, make_run

TWO = RunSettings(max_children=2)
GPU = "http://gpu1:8188"

delete = committed(delete_run)


async def claim(session, rng: random.Random, run_id: int) -> ClaimedJob:
    """The next job, for `run_id` (other runs are passed by)."""
    others = set(await session.scalars(select(PipelineRun.id).where(PipelineRun.id != run_id)))
    got = await claim_next_job(session, rng, skip_runs=others)
    assert isinstance(got, ClaimedJob), got
    await session.commit()
    return got


async def finish(session, job: ClaimedJob, worker: str = GPU) -> list[int]:
    """Submit the claimed job to `worker` and end it with one image, as the scheduler would."""
    parent = None
    if job.parent_id is not None:
        parent = f"comfy-curator/cc-{job.parent_id:032d}.png"  # as named by the parent's bytes
    await prepare_submission(session, job.job_id, prompt_id=f"p-{job.job_id}", worker=worker,
                             parent_image=parent)
    ids = await complete_job(session, job.job_id, [StoredImage(f"x/job-{job.job_id}.png", 0)])
    await session.commit()
    return ids


async def grow(session, run_id: int, jobs: int, worker: str = GPU) -> list[int]:
    rng = random.Random(run_id)
    made: list[int] = []
    for _ in range(jobs):
        made += await finish(session, await claim(session, rng, run_id), worker)
    return made


async def rows_of(session, run_id: int) -> dict[str, int]:
    async def count(model, where) -> int:
        return int(await session.scalar(select(func.count()).select_from(model).where(where)))

    return {
        "runs": await count(PipelineRun, PipelineRun.id == run_id),
        "steps": await count(PipelineRunStep, PipelineRunStep.run_id == run_id),
        "candidates": await count(ImageCandidate, ImageCandidate.run_id == run_id),
        "jobs": await count(Job, Job.run_id == run_id),
        "votes": await count(Vote, Vote.run_id == run_id),
        "pair_posts": await count(PairPost, PairPost.run_id == run_id),
    }


async def two_grown_runs(session, tmp_path) -> tuple[int, int]:
    """Runs A and B, each with base images, children (jobs with parents), a vote and a
    posted pair."""
    await make_pipeline(session, tmp_path, steps=3)
    runs = []
    for name in ("A", "B"):
        run = await make_run(session, name=name, settings=TWO)
        base = await grow(session, run, 2)
        await grow(session, run, 2)
        await record_vote(session, run, base[0], base[1], "111")
        await plan_pairs(session, run, "222", want=1)
        runs.append(run)
    return runs[0], runs[1]


async def test_deleting_a_run_takes_every_row_of_it_and_nothing_of_another(session, tmp_path):
    a, b = await two_grown_runs(session, tmp_path)
    before_b = await rows_of(session, b)
    assert all(before_b.values()), before_b  # every kind of row is there to be deleted
    await complete_run(session, a)

    gone = await delete(session, a)

    assert (gone.run_id, gone.name, gone.images, gone.jobs, gone.votes) == (a, "A", 4, 4, 1)
    assert gone.pair_posts == 1 and gone.steps == 3
    assert await rows_of(session, a) == dict.fromkeys(before_b, 0)
    assert await rows_of(session, b) == before_b
    assert (await session.execute(text("PRAGMA foreign_key_check"))).all() == []
    assert [r.run_id for r in await stored_runs(session)] == [b]


async def test_the_ids_of_a_deleted_run_are_never_given_again(session, tmp_path):
    """Its vote buttons may still be in Discord, its folder on disk: a new run must not take
    its run, candidate or job ids."""
    _, b = await two_grown_runs(session, tmp_path)
    last = {model: await session.scalar(select(func.max(model.id)))
            for model in (PipelineRun, ImageCandidate, Job, PairPost)}
    await delete(session, b)  # the newest: SQLite would hand its ids out again
    c = await make_run(session, name="C", settings=TWO)
    await grow(session, c, 2)
    assert (await plan_pairs(session, c, "333", want=1)).posts
    assert c > last[PipelineRun]
    for model in (ImageCandidate, Job, PairPost):
        assert await session.scalar(select(func.max(model.id))) > last[model], model


async def test_contents_name_each_workers_prompts_and_the_uploads_of_this_run_alone(
    session, tmp_path
):
    await make_pipeline(session, tmp_path, steps=3)
    a = await make_run(session, name="A", settings=TWO)
    base = await grow(session, a, 2)
    await grow(session, a, 1, worker="http://gpu2:8188")
    b = await make_run(session, name="B", settings=TWO)
    job = await claim(session, random.Random(5), b)
    assert job.parent_id is None
    # run B's job happens to have been given the same parent file (identical bytes)
    shared = f"comfy-curator/cc-{base[0]:032d}.png"
    await prepare_submission(session, job.job_id, prompt_id="p-b", worker=GPU,
                             parent_image=shared)
    await end_job(session, job.job_id, "lost")
    await session.commit()

    contents = await run_contents(session, a)

    by_url = {w.url: w for w in contents.workers}
    assert by_url[GPU].prompt_ids == ("p-1", "p-2")
    [child] = by_url["http://gpu2:8188"].prompt_ids
    assert contents.folder == "run-0001-a" and contents.images == 3
    uploads = by_url[GPU].uploads + by_url["http://gpu2:8188"].uploads
    assert shared not in uploads  # run B still uses it
    assert contents.rows == ("3 candidates, 3 jobs, 0 votes, 0 posted pairs, "
                             "3 steps of the run")
    assert child == "p-3"


async def test_a_run_with_a_job_in_flight_is_refused_and_nothing_changes(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=3)
    run = await make_run(session, name="Gym", settings=TWO)
    await grow(session, run, 1)
    job = await claim(session, random.Random(2), run)
    before = await rows_of(session, run)

    with pytest.raises(Conflict) as running:
        await delete(session, run)
    assert str(running.value) == (
        f"Run #{run} “Gym” has 1 job in flight (#{job.job_id} claimed, not yet sent): its "
        "images would arrive for a run that is gone. Complete the run first (`/complete`) so "
        "that no new job starts, then delete it once its jobs have ended. Nothing was deleted.")

    await prepare_submission(session, job.job_id, prompt_id="p-x", worker=GPU)
    await session.commit()
    await complete_run(session, run)
    with pytest.raises(Conflict) as completed:
        await ensure_deletable(session, run)
    assert f"(#{job.job_id} submitted on {GPU})" in str(completed.value)
    assert "Wait for it to end (it is not stopped by this)" in str(completed.value)
    assert await rows_of(session, run) == before

    await end_job(session, job.job_id, "interrupted", JobStatus.cancelled)
    await session.commit()
    await delete(session, run)
    assert not any((await rows_of(session, run)).values())


async def test_a_held_run_with_nothing_in_flight_is_deleted(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=3)
    run = await make_run(session, settings=TWO)
    await grow(session, run, 2)
    await hold_run(session, run, "3 jobs in a row failed")
    await delete(session, run)
    assert not any((await rows_of(session, run)).values())


async def test_deleting_a_run_that_is_not_there(session, tmp_path):
    with pytest.raises(NotFound, match=r"^There is no run #7\.$"):
        await delete(session, 7)


async def test_a_pipeline_a_run_uses_is_refused_naming_the_runs(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=3)
    first = await make_run(session, name="Morning gym")
    second = await make_run(session, name="Sofa")
    drop = committed(delete_pipeline)

    with pytest.raises(Conflict) as refused:
        await drop(session, "test-pipeline")
    assert str(refused.value) == (
        f"Pipeline “test-pipeline” is used by 2 runs: #{first} “Morning gym”, #{second} "
        "“Sofa”. Delete those runs first; nothing was deleted.")
    assert await session.scalar(select(func.count()).select_from(PipelineStep)) == 3

    await delete(session, first)
    await delete(session, second)
    done = await drop(session, "test-pipeline")
    assert (done.name, done.steps) == ("test-pipeline", 3)
    assert await session.scalar(select(func.count()).select_from(Pipeline)) == 0
    assert await session.scalar(select(func.count()).select_from(PipelineStep)) == 0
    with pytest.raises(NotFound) as gone:
        await drop(session, "test-pipeline")
    assert str(gone.value) == ("There is no pipeline “test-pipeline”: nothing was deleted "
                               "(pipeline list shows the ones imported).")
