"""Child slots and the base quota (docs/architecture.md, "Decisions worth knowing"): every
candidate counts its children plus its child jobs in flight, changed only next to the rows it
counts, so that selection finds parents with room through one index. The functions flush and
leave the transaction to their caller."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import func, select, update

from db.models import ImageCandidate, Job, PipelineRun
from orchestration.jobs import (
    ClaimedJob,
    StoredImage,
    claim_next_job,
    complete_job,
    end_job,
    recount_child_slots,
)
from orchestration.runs import RunSettings
from orchestration.states import IN_FLIGHT, JobStatus, SelectionOrder
from tests.factories import add_candidate, make_pipeline, make_run

# Children before new base images: the claim after a parent exists is a child job.
CHILDREN_FIRST = RunSettings(max_children=2, order=SelectionOrder.finish_first)


async def slots(session, candidate_id: int) -> int:
    return int(await session.scalar(
        select(ImageCandidate.child_slots).where(ImageCandidate.id == candidate_id)))


async def counted(session, candidate_id: int) -> int:
    """What the slot count stands for: children that exist plus child jobs in flight."""
    children = await session.scalar(
        select(func.count()).where(ImageCandidate.parent_id == candidate_id))
    flying = await session.scalar(
        select(func.count()).where(Job.parent_id == candidate_id, Job.status.in_(IN_FLIGHT)))
    return int(children or 0) + int(flying or 0)


async def claim(session, rng: random.Random) -> ClaimedJob:
    got = await claim_next_job(session, rng)
    assert isinstance(got, ClaimedJob), got
    await session.commit()
    return got


async def parent_with_a_child_job(session, tmp_path) -> tuple[int, ClaimedJob]:
    await make_pipeline(session, tmp_path, steps=2)
    run = await make_run(session, settings=CHILDREN_FIRST)
    parent = await add_candidate(session, run, 1)
    job = await claim(session, random.Random(1))
    assert job.parent_id == parent and job.step == 2
    return parent, job


async def test_claiming_a_child_job_takes_a_slot_on_its_parent(session, tmp_path):
    parent, _ = await parent_with_a_child_job(session, tmp_path)
    assert await slots(session, parent) == 1 == await counted(session, parent)


async def test_the_claim_is_the_callers_to_commit(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=2)
    run = await make_run(session, settings=CHILDREN_FIRST)
    parent = await add_candidate(session, run, 1)
    assert isinstance(await claim_next_job(session, random.Random(1)), ClaimedJob)
    await session.rollback()
    assert await session.scalar(select(func.count()).select_from(Job)) == 0
    assert await slots(session, parent) == 0


async def test_a_claim_without_work_keeps_the_callers_pending_work(session, session_factory,
                                                                  tmp_path):
    await make_pipeline(session, tmp_path, steps=2)
    run = await make_run(session)
    row = await session.get_one(PipelineRun, run)
    row.name = "renamed"
    decision = await claim_next_job(session, random.Random(1), frozenset({run}))
    assert not isinstance(decision, ClaimedJob)
    await session.commit()
    async with session_factory() as other:
        assert (await other.get_one(PipelineRun, run)).name == "renamed"


@pytest.mark.parametrize("status", [JobStatus.failed, JobStatus.cancelled])
async def test_ending_a_child_job_gives_its_slot_back(session, tmp_path, status):
    parent, job = await parent_with_a_child_job(session, tmp_path)
    await end_job(session, job.job_id, "boom", status)
    await session.commit()
    assert await slots(session, parent) == 0 == await counted(session, parent)
    await end_job(session, job.job_id, "again", status)  # ending twice changes nothing
    await session.commit()
    assert await slots(session, parent) == 0


@pytest.mark.parametrize("images", [1, 2])
async def test_a_succeeded_child_job_becomes_its_children(session, tmp_path, images):
    parent, job = await parent_with_a_child_job(session, tmp_path)
    made = [StoredImage(f"c/{job.job_id}-{i}.png", i) for i in range(images)]
    ids = await complete_job(session, job.job_id, made)
    await session.commit()
    assert len(ids) == images
    assert await slots(session, parent) == images == await counted(session, parent)
    assert await complete_job(session, job.job_id, made) == ids  # a repeat changes nothing
    await session.commit()
    assert await slots(session, parent) == images


async def test_a_parent_with_n_slots_taken_is_not_chosen_again(session, tmp_path):
    parent, first = await parent_with_a_child_job(session, tmp_path)
    rng = random.Random(2)
    second = await claim(session, rng)
    assert second.parent_id == parent and await slots(session, parent) == 2  # N = 2: full
    third = await claim(session, rng)
    assert third.parent_id is None  # only a new base image can grow now
    await end_job(session, first.job_id, "boom")
    await session.commit()
    assert (await claim(session, rng)).parent_id == parent  # the freed slot is taken again


async def test_the_base_quota_rises_by_n_in_deficit_mode(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=2)
    run = await make_run(session, settings=RunSettings(gates=False, max_children=2,
                                                       target_leaves=6))

    async def quota() -> int:
        return int(await session.scalar(
            select(PipelineRun.base_quota).where(PipelineRun.id == run)))

    assert await quota() == 2  # N at creation
    rng = random.Random(4)
    for _ in range(6):  # 2 base images, then their 4 children: the final step is below T
        job = await claim(session, rng)
        assert "deficit" not in job.reason
        await complete_job(session, job.job_id, [StoredImage(f"x/{job.job_id}.png", 0)])
        await session.commit()
    assert await quota() == 2
    deficit = await claim(session, rng)
    assert deficit.step == 1 and "deficit" in deficit.reason
    assert await quota() == 2 + 2  # max(quota, 2 made + 0 in flight) + N
    following = await claim(session, rng)
    assert following.step == 1 and "deficit" not in following.reason
    assert await quota() == 4  # the room made is used, not raised again


async def test_recount_repairs_drift_and_finds_none_after_a_clean_history(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=3)
    run = await make_run(session, settings=RunSettings(gates=False, max_children=2,
                                                       target_leaves=4))
    rng = random.Random(11)
    flying: list[ClaimedJob] = []
    for _ in range(40):  # claims, failures, cancels and successes of 1-3 images, seeded
        got = await claim_next_job(session, rng)
        if isinstance(got, ClaimedJob):
            flying.append(got)
        if flying and (not isinstance(got, ClaimedJob) or rng.random() < 0.5):
            job = flying.pop(rng.randrange(len(flying)))
            ending = rng.random()
            if ending < 0.2:
                await end_job(session, job.job_id, "boom")
            elif ending < 0.3:
                await end_job(session, job.job_id, "lost", JobStatus.cancelled)
            else:
                await complete_job(session, job.job_id, [
                    StoredImage(f"x/{job.job_id}-{i}.png", i) for i in range(rng.randint(1, 3))])
        await session.commit()
    ids = list(await session.scalars(select(ImageCandidate.id).where(
        ImageCandidate.run_id == run).order_by(ImageCandidate.id)))
    assert len(ids) > 5 and flying
    assert [await slots(session, i) for i in ids] == [await counted(session, i) for i in ids]
    assert await recount_child_slots(session) == 0

    truth = [await counted(session, i) for i in ids]
    await session.execute(update(ImageCandidate).where(ImageCandidate.id.in_(ids[:2]))
                          .values(child_slots=ImageCandidate.child_slots + 5))
    await session.commit()
    assert await recount_child_slots(session) == 2
    await session.commit()
    assert [await slots(session, i) for i in ids] == truth
