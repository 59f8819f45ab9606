"""Channel notices (docs/operations.md, "Notices"): a step awaiting approval and a run without
work, each told once, the "no work" one again each time work came and went; marks survive a
restart."""

from __future__ import annotations

import asyncio
import random

from sqlalchemy import select

from db.engine import create_engine, create_session_factory
from db.models import ImageCandidate, PipelineRun, PipelineRunStep
from orchestration.jobs import ClaimedJob, StoredImage, claim_next_job, complete_job
from orchestration.notices import Notice, NoticeKind, runs_to_notify
from orchestration.runs import RunSettings
from orchestration.states import CandidateStatus
from tests.committed import (
    approve_step,
    complete_run,
    due_notices,
    hold_run,
    reject_candidate,
    resume_run,
    set_run_channel,
)
from tests.factories import add_candidate, make_pipeline, make_run


async def finish(session, job: ClaimedJob) -> None:
    await complete_job(session, job.job_id, [StoredImage(f"{job.job_id}.png", 0)])
    await session.commit()


async def drain(session, run, rng, *, check: bool = True) -> list[Notice]:
    """Run every job to its end, asking for notices after each one as the bot does."""
    told: list[Notice] = []
    while isinstance(job := await claim_next_job(session, rng), ClaimedJob):
        await finish(session, job)
        if check:
            told += await due_notices(session, run)
    return told


def kinds(notices: list[Notice]) -> list[tuple[NoticeKind, int | None]]:
    return [(n.kind, n.step) for n in notices]


async def gated_run(session, tmp_path, **settings) -> int:
    await make_pipeline(session, tmp_path, steps=3)
    return await make_run(session, settings=RunSettings(max_children=2, **settings))


async def test_step_awaiting_approval_is_told_once(session, tmp_path):
    run = await gated_run(session, tmp_path, top_k=3)
    told = await drain(session, run, random.Random(1))
    # Step 2 fills (2 parents × 2), then the run is dry until someone approves it: the
    # awaiting notice says so, no separate "no work" one.
    assert kinds(told) == [(NoticeKind.awaiting_approval, 2)]
    [awaiting] = told
    assert awaiting.message == (
        "⏳ Step 2 is ready for review: 4 candidates. Vote on the pairs "
        "(`/gallery step:2` shows them all), then `/approve step:2 k:3`."
    )
    for _ in range(3):
        assert await due_notices(session, run) == []
    row = await session.get_one(PipelineRunStep, (run, 2))
    assert row.awaiting_notified_at is not None


async def test_uses_the_runs_k(session, tmp_path):
    run = await gated_run(session, tmp_path, top_k=5)
    [awaiting] = await drain(session, run, random.Random(2))
    assert "`/approve step:2 k:5`" in awaiting.message


async def test_nothing_while_work_or_jobs_remain(session, tmp_path):
    """Work left, or the last jobs still on a GPU: not done yet, so nothing is told."""
    run = await gated_run(session, tmp_path)
    assert await due_notices(session, run) == []  # fresh run: plenty of work
    rng = random.Random(3)
    claimed = []
    while isinstance(job := await claim_next_job(session, rng), ClaimedJob):
        claimed.append(job)  # base images in flight, nothing more to select
    assert claimed and await due_notices(session, run) == []
    for job in claimed:
        await finish(session, job)
    told = await drain(session, run, rng)
    assert kinds(told) == [(NoticeKind.awaiting_approval, 2)]


async def test_no_work_is_told_when_the_final_step_is_full(session, tmp_path):
    run = await gated_run(session, tmp_path)
    rng = random.Random(4)
    await drain(session, run, rng)
    await approve_step(session, run, 2, 1, "curator")
    assert await due_notices(session, run) == []  # work again: the mark is cleared
    assert (await session.get_one(PipelineRun, run)).no_work_notified_at is None
    told = await drain(session, run, rng)
    assert kinds(told) == [(NoticeKind.no_work, None)]  # step 3 is final: no approval
    assert "nothing more can grow" in told[0].message
    assert "`/complete`" in told[0].message
    assert await due_notices(session, run) == []


async def leafy_run(session, tmp_path) -> int:
    """Gates off, one leaf wanted: dry once it has one; rejecting the leaf brings work back."""
    await make_pipeline(session, tmp_path, steps=2)
    return await make_run(
        session, settings=RunSettings(max_children=1, gates=False, target_leaves=1)
    )


async def reject_the_leaf(session, run) -> None:
    leaf = await session.scalar(select(ImageCandidate.id).where(
        ImageCandidate.run_id == run, ImageCandidate.step == 2,
        ImageCandidate.status == CandidateStatus.active))
    await reject_candidate(session, run, leaf, "curator")


async def test_no_work_is_told_again_after_work_came_back(session, tmp_path):
    run = await leafy_run(session, tmp_path)
    rng = random.Random(4)
    assert kinds(await drain(session, run, rng)) == [(NoticeKind.no_work, None)]
    await reject_the_leaf(session, run)
    assert await due_notices(session, run) == []  # work again: the mark is cleared
    assert (await session.get_one(PipelineRun, run)).no_work_notified_at is None
    assert kinds(await drain(session, run, rng)) == [(NoticeKind.no_work, None)]
    assert await due_notices(session, run) == []


async def test_rearmed_even_if_no_check_saw_the_work(session, tmp_path):
    """/resume or a race can bring work back with no check in between: a job made after the
    notice is proof enough."""
    run = await leafy_run(session, tmp_path)
    rng = random.Random(5)
    await drain(session, run, rng)
    await reject_the_leaf(session, run)
    await drain(session, run, rng, check=False)
    told = await due_notices(session, run)
    assert kinds(told) == [(NoticeKind.no_work, None)]
    assert await due_notices(session, run) == []


async def test_marks_survive_a_restart(db_url, tmp_path):
    first = create_engine(db_url)
    async with create_session_factory(first)() as s:
        run = await gated_run(s, tmp_path)
        assert len(await drain(s, run, random.Random(6))) == 1
    await first.dispose()

    again = create_engine(db_url)  # a new process: only the database remembers
    async with create_session_factory(again)() as s:
        assert await due_notices(s, run) == []
    await again.dispose()


async def test_concurrent_checks_tell_once(session_factory, tmp_path):
    """Two events for the same run at once (two workers finishing together)."""
    async with session_factory() as s:
        run = await gated_run(s, tmp_path)
        await drain(s, run, random.Random(7), check=False)

    async def check() -> list[Notice]:
        async with session_factory() as s:
            return await due_notices(s, run)

    results = await asyncio.gather(*(check() for _ in range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, 1]


async def test_a_long_lived_session_reads_the_marks_afresh(session_factory, tmp_path):
    """Sessions keep their objects after a commit; a mark set elsewhere must still count."""
    async with session_factory() as s:
        run = await gated_run(s, tmp_path)
        await drain(s, run, random.Random(12), check=False)
    async with session_factory() as stale, session_factory() as other:
        # Kept referenced, so the identity map keeps them as they were read.
        run_row = await stale.get_one(PipelineRun, run)
        step_row = await stale.get_one(PipelineRunStep, (run, 2))
        await stale.commit()
        assert len(await due_notices(other, run)) == 1
        assert await due_notices(stale, run) == []
        assert run_row.no_work_notified_at is None and step_row.step == 2


async def test_a_held_run_is_not_told_it_has_no_work(session, tmp_path):
    """Its hold was posted with what to do; "no work" would hide the real reason."""
    run = await leafy_run(session, tmp_path)
    rng = random.Random(8)
    await drain(session, run, rng, check=False)
    await hold_run(session, run, "3 jobs in a row failed")
    assert await due_notices(session, run) == []
    await resume_run(session, run)
    assert kinds(await due_notices(session, run)) == [(NoticeKind.no_work, None)]


async def test_completed_or_unknown_run_gets_nothing(session, tmp_path):
    run = await gated_run(session, tmp_path)
    await drain(session, run, random.Random(9), check=False)
    await complete_run(session, run)
    assert await due_notices(session, run) == []
    assert await due_notices(session, 999) == []


async def test_gates_off_only_tells_no_work(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=2)
    run = await make_run(
        session, settings=RunSettings(max_children=1, gates=False, target_leaves=1)
    )
    told = await drain(session, run, random.Random(10))
    assert kinds(told) == [(NoticeKind.no_work, None)]


async def test_approval_ends_the_waiting_for_good(session, tmp_path):
    """An approved step is never awaiting again, so its notice is never repeated."""
    run = await gated_run(session, tmp_path)
    p = await add_candidate(session, run, 1)
    await add_candidate(session, run, 2, p)
    await approve_step(session, run, 2, 1, "curator")
    told = await drain(session, run, random.Random(11))
    assert all(n.kind is NoticeKind.no_work for n in told)


async def test_runs_to_notify_are_running_runs_with_a_channel(session, tmp_path):
    await make_pipeline(session, tmp_path)
    with_channel = await make_run(session, name="a")
    await make_run(session, name="no channel")
    done = await make_run(session, name="done")
    await set_run_channel(session, with_channel, 1)
    await set_run_channel(session, done, 2)
    await complete_run(session, done)
    assert await runs_to_notify(session) == [with_channel]
