"""Every failure at every step of a job ends that job, and the worker goes on with the next.

Real SQLite, the simulated ComfyUI on loopback, real files under tmp_path. Faults of the box
(a full disk, a read-only data folder) are injected at the OS boundary: tests may run as root,
where a read-only folder does not stop writes.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import random
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

import scheduler.process as scheduler_module
from comfy.client import ComfyClient
from comfy.simulator import SimulatedComfy
from db.engine import SessionFactory, create_engine, create_session_factory
from db.models import ComfyWorker, ImageCandidate, Job, PipelineRun
from orchestration.jobs import ClaimedJob, StoredImage, claim_next_job, complete_job
from orchestration.runs import RunSettings
from orchestration.states import CandidateStatus, HoldKind, JobStatus
from scheduler.events import SchedulerEvent
from scheduler.process import Scheduler
from scheduler.storage import write_atomically
from tests.scheduler.test_process import FAST, Told, idle, make_scheduler, sim, start_runs

__all__ = ["sim"]  # the fixture, shared with test_process


def faulty_scheduler(
    factory: SessionFactory, urls: list[str], data_dir: Path,
    events: list[SchedulerEvent] | Told | None = None, *, seed: int = 1, **options: Any,
) -> Scheduler:
    return make_scheduler(factory, urls, data_dir, events, seed, **options)


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 15) -> None:
    """Poll a database state that no event announces (not a sleep used as synchronisation:
    it waits for the state, however long that takes within the deadline)."""
    async with asyncio.timeout(seconds):
        while not await check():  # noqa: ASYNC110 - the state is in the database
            await asyncio.sleep(0.02)


async def jobs(factory: SessionFactory) -> list[tuple[int, JobStatus, str | None]]:
    async with factory() as s:
        rows = await s.execute(select(Job.id, Job.status, Job.error).order_by(Job.id))
        return [(r.id, r.status, r.error) for r in rows]


async def held(factory: SessionFactory, run: int) -> tuple[str | None, HoldKind | None]:
    async with factory() as s:
        found = await s.get_one(PipelineRun, run, populate_existing=True)
        return found.held_reason, found.held_kind


async def run_to_idle(scheduler: Scheduler, seconds: float = 20) -> None:
    await scheduler.start()
    try:
        await idle(scheduler, seconds)
    finally:
        await scheduler.stop()


def assert_nothing_in_flight(rows: list[tuple[int, JobStatus, str | None]]) -> None:
    assert not [r for r in rows if r[1] in (JobStatus.pending, JobStatus.submitted,
                                              JobStatus.running)], rows


# -- the job's outputs ---------------------------------------------------------------------------


async def test_output_removed_on_comfy_fails_the_job(session_factory, sim, tmp_path):
    """/view answering 404: the job fails with a reason, three in a row hold the run."""
    events: list[SchedulerEvent] = []
    [run] = await start_runs(session_factory, ["A"], RunSettings(max_children=1))
    sim.fault("/view", method="GET", status=404, body="", times=None)
    await run_to_idle(faulty_scheduler(session_factory, [sim.url], tmp_path / "data", events))
    rows = await jobs(session_factory)
    assert [r[1] for r in rows] == [JobStatus.failed] * 3
    assert all("is not on ComfyUI" in (r[2] or "") for r in rows), rows
    reason, kind = await held(session_factory, run)
    assert reason and "3 jobs in a row failed" in reason and kind is HoldKind.failures
    assert [e.kind for e in events].count("job_failed") == 3


async def test_download_slower_than_the_timeout_fails_the_job(session_factory, sim, tmp_path):
    [run] = await start_runs(session_factory, ["A"], RunSettings(max_children=1))
    sim.fault("/view", method="GET", status=None, delay=1.0, times=None)
    scheduler = faulty_scheduler(session_factory, [sim.url], tmp_path / "data",
                                 client_options={"download_timeout": 0.3, "retry_attempts": 1})
    await run_to_idle(scheduler, 30)
    rows = await jobs(session_factory)
    assert [r[1] for r in rows] == [JobStatus.failed] * 3
    assert all("could not download" in (r[2] or "") for r in rows), rows
    assert (await held(session_factory, run))[1] is HoldKind.failures


@pytest.mark.parametrize("rename", [
    pytest.param(lambda name: name + "\x00", id="nul-byte"),
    pytest.param(lambda name: name.removesuffix(".png") + "." + "x" * 300, id="long-suffix"),
])
async def test_odd_output_names_are_stored_under_a_safe_name(
    session_factory, sim, tmp_path, rename
):
    await start_runs(session_factory, ["A"], RunSettings(max_children=1))
    sim.rename_outputs(rename)
    data = tmp_path / "data"
    await run_to_idle(faulty_scheduler(session_factory, [sim.url], data))
    rows = await jobs(session_factory)
    assert [r[1] for r in rows] == [JobStatus.succeeded] * 2
    async with session_factory() as s:
        paths = list(await s.scalars(select(ImageCandidate.image_path)))
    assert len(paths) == 2
    for path in paths:
        assert path.endswith(".png") and (data / path).is_file()


# -- the job's inputs ----------------------------------------------------------------------------


async def test_upload_refused_fails_the_job(session_factory, sim, tmp_path):
    [run] = await start_runs(session_factory, ["A"], RunSettings(max_children=1))
    sim.fault("/upload/image", status=400, body="Invalid image", times=None)
    await run_to_idle(faulty_scheduler(session_factory, [sim.url], tmp_path / "data"))
    rows = await jobs(session_factory)
    assert [r[1] for r in rows] == [JobStatus.succeeded] + [JobStatus.failed] * 3
    assert all("HTTP 400" in (r[2] or "") and "Invalid image" in (r[2] or "")
               for r in rows[1:]), rows
    assert (await held(session_factory, run))[1] is HoldKind.failures


@pytest.mark.parametrize("content", [None, b"not an image at all"], ids=["missing", "corrupt"])
async def test_unreadable_parent_is_rejected_as_a_parent(session_factory, sim, tmp_path, content):
    [run] = await start_runs(session_factory, ["A"], RunSettings(max_children=1))
    data = tmp_path / "data"
    async with session_factory() as s, s.begin():
        claimed = await claim_next_job(s, random.Random(1))
        assert isinstance(claimed, ClaimedJob)
        [parent] = await complete_job(s, claimed.job_id, [StoredImage("broken/parent.png", 0)])
    if content is not None:
        (data / "broken").mkdir(parents=True)
        (data / "broken" / "parent.png").write_bytes(content)
    await run_to_idle(faulty_scheduler(session_factory, [sim.url], data))
    async with session_factory() as s:
        rejected = await s.get_one(ImageCandidate, parent)
        failed = list(await s.scalars(select(Job.error).where(Job.status == JobStatus.failed)))
        children = list(await s.scalars(
            select(ImageCandidate.id).where(ImageCandidate.parent_id == parent)))
    assert rejected.status is CandidateStatus.rejected
    assert rejected.rejected_by and "image file" in rejected.rejected_by
    assert len(failed) == 1 and "parent" in failed[0]
    assert children == []
    assert (await held(session_factory, run))[0] is None  # chosen once, not three times
    assert_nothing_in_flight(await jobs(session_factory))


async def test_workflow_too_deep_to_send_fails_the_job(session_factory, sim, tmp_path):
    [run] = await start_runs(session_factory, ["A"], RunSettings(max_children=1))
    depth = 5000  # beyond any recursion limit, whatever the stack
    deep = (
        '{"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, '
        '"batch_size": 1, "color": "{{seed}}", "extra": ' + "[" * depth + "]" * depth + "}}, "
        '"9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], '
        '"filename_prefix": "{{output_prefix}}"}}}'
    )
    async with session_factory() as s:
        await s.execute(text("UPDATE pipeline_steps SET workflow = :w WHERE position = 1"),
                        {"w": deep})
        await s.commit()
    await run_to_idle(faulty_scheduler(session_factory, [sim.url], tmp_path / "data"))
    rows = await jobs(session_factory)
    assert [r[1] for r in rows] == [JobStatus.failed] * 3
    assert all("nested too deeply" in (r[2] or "") for r in rows), rows
    assert (await held(session_factory, run))[1] is HoldKind.failures


# -- the box -------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
async def test_data_folder_that_cannot_take_files_holds_until_it_can(
    session_factory, sim, tmp_path, monkeypatch, code
):
    told = Told()
    events = told.events
    [run] = await start_runs(session_factory, ["A"], RunSettings(max_children=1))
    broken = True

    def write(data_dir: Path, relpath: str, data: bytes) -> Path:
        if broken:
            raise OSError(code, "simulated", str(data_dir / relpath))
        return write_atomically(data_dir, relpath, data)

    monkeypatch.setattr(scheduler_module, "write_atomically", write)
    scheduler = faulty_scheduler(session_factory, [sim.url], tmp_path / "data", told,
                                 storage_probe_seconds=0.05)
    await scheduler.start()
    try:
        await told.wait_for("run_held", seconds=15)
        assert (await held(session_factory, run))[1] is HoldKind.storage
        await idle(scheduler)
        reason, _ = await held(session_factory, run)
        assert reason and "data folder" in reason
        [first] = await jobs(session_factory)
        assert first[1] is JobStatus.cancelled
        [hold] = [e for e in events if e.kind == "run_held"]
        assert hold.run_id == run and hold.hold_kind is HoldKind.storage
        broken = False
        await told.wait_for("run_resumed", seconds=15)
        assert (await held(session_factory, run))[0] is None
        await idle(scheduler)
    finally:
        await scheduler.stop()
    assert [e.kind for e in events].count("run_resumed") == 1
    rows = await jobs(session_factory)
    assert [r[1] for r in rows] == [JobStatus.cancelled, JobStatus.succeeded, JobStatus.succeeded]


# -- bugs ----------------------------------------------------------------------------------------


async def test_a_bug_with_a_job_in_hand_ends_the_job(session_factory, sim, tmp_path, monkeypatch):
    """Pending: cancelled at once. Submitted: failed once it made the loop restart twice."""
    await start_runs(session_factory, ["A"], RunSettings(max_children=1))
    real_submit = scheduler_module.prepare_submission
    real_complete = scheduler_module.complete_job
    calls = {"submit": 0, "complete": 0}

    async def buggy_submit(*args: Any, **kwargs: Any) -> Any:
        calls["submit"] += 1
        if calls["submit"] == 1:
            raise RuntimeError("a bug before submitting")
        return await real_submit(*args, **kwargs)

    async def buggy_complete(session: Any, job_id: int, images: Any) -> Any:
        calls["complete"] += 1
        if calls["complete"] <= 2:
            raise RuntimeError("a bug while storing")
        return await real_complete(session, job_id, images)

    monkeypatch.setattr(scheduler_module, "prepare_submission", buggy_submit)
    monkeypatch.setattr(scheduler_module, "complete_job", buggy_complete)
    await run_to_idle(faulty_scheduler(session_factory, [sim.url], tmp_path / "data"))
    rows = await jobs(session_factory)
    assert rows[0][1] is JobStatus.cancelled and "internal error" in (rows[0][2] or "")
    assert rows[1][1] is JobStatus.failed and "internal error" in (rows[1][2] or "")
    assert [r[1] for r in rows[2:]] == [JobStatus.succeeded, JobStatus.succeeded]


# -- an unhealthy server -------------------------------------------------------------------------


async def test_history_failing_forever_is_unhealthy_not_flapping(session_factory, sim, tmp_path):
    events: list[SchedulerEvent] = []
    await start_runs(session_factory, ["A"], RunSettings(max_children=1))
    sim.fault("/history/*", status=500, body="database is locked", times=None)
    scheduler = faulty_scheduler(session_factory, [sim.url], tmp_path / "data", events,
                                 unhealthy_job_limit=1.0, unhealthy_max_backoff=0.2)
    await scheduler.start()
    try:
        started = time.monotonic()

        async def first_ended() -> bool:
            rows = await jobs(session_factory)
            return bool(rows) and rows[0][1] is JobStatus.cancelled
        await until(first_ended, 10)
        assert time.monotonic() - started < 5
        [first] = (await jobs(session_factory))[:1]
        assert "HTTP 500" in (first[2] or ""), first
        kinds = [e.kind for e in events]
        assert kinds.count("worker_unhealthy") == 1
        assert "worker_down" not in kinds and "worker_up" not in kinds
        assert scheduler.up[sim.url] is True and scheduler.unhealthy[sim.url]
        sim.clear_faults()
        await idle(scheduler)
    finally:
        await scheduler.stop()
    kinds = [e.kind for e in events]
    assert kinds.count("worker_unhealthy") == 1 and kinds.count("worker_up") == 1
    assert "worker_down" not in kinds
    assert scheduler.unhealthy[sim.url] is None
    rows = await jobs(session_factory)
    assert [r[1] for r in rows[-2:]] == [JobStatus.succeeded, JobStatus.succeeded]
    assert_nothing_in_flight(rows)


async def test_object_info_failing_is_an_unhealthy_worker_not_an_unchecked_one(
    session_factory, sim, tmp_path
):
    told = Told()
    events = told.events
    await start_runs(session_factory, ["A"], RunSettings(max_children=1))
    sim.fault("/object_info", status=500, body="a custom node broke", times=None)
    scheduler = faulty_scheduler(session_factory, [sim.url], tmp_path / "data", told,
                                 unhealthy_max_backoff=0.2)
    await scheduler.start()
    try:
        await told.wait_for("worker_unhealthy")
        assert "a custom node broke" in (scheduler.unhealthy[sim.url] or "")
        assert sim.timings == []  # nothing was sent unchecked
        sim.clear_faults()
        await idle(scheduler)
    finally:
        await scheduler.stop()
    assert [e.kind for e in events].count("worker_unhealthy") == 1
    rows = await jobs(session_factory)
    assert rows and {r[1] for r in rows} == {JobStatus.succeeded}


# -- two installations on one ComfyUI -------------------------------------------------------------


async def test_two_installations_on_one_comfy_use_their_own_parents(
    tmp_path, sim, db_url, migrated_template
):
    from orchestration.payload import stored_prompt

    second_db = tmp_path / "second.db"
    shutil.copyfile(migrated_template, second_db)
    engines = [create_engine(db_url), create_engine(f"sqlite+aiosqlite:///{second_db}")]
    factories = [create_session_factory(e) for e in engines]
    try:
        for factory in factories:
            await start_runs(factory, ["A"], RunSettings(max_children=2))
        schedulers = [faulty_scheduler(f, [sim.url], tmp_path / f"data-{i}", seed=10 + i)
                      for i, f in enumerate(factories)]
        for scheduler in schedulers:
            await scheduler.start()
        try:
            for scheduler in schedulers:
                await idle(scheduler, 30)
        finally:
            for scheduler in schedulers:
                await scheduler.stop()
        checked = 0
        for i, factory in enumerate(factories):
            async with factory() as s:
                children = (await s.execute(
                    select(Job.id, ImageCandidate.image_path)
                    .join(ImageCandidate, ImageCandidate.id == Job.parent_id)
                    .where(Job.status == JobStatus.succeeded))).all()
                for job_id, parent_path in children:
                    prompt = await stored_prompt(s, job_id)
                    assert prompt is not None
                    uploaded = sim.root / "input" / prompt["1"]["inputs"]["image"]
                    parent = (tmp_path / f"data-{i}" / parent_path).read_bytes()
                    assert uploaded.read_bytes() == parent, (i, job_id)
                    checked += 1
        assert checked == 8  # 4 children in each installation
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_parent_already_on_comfy_is_not_uploaded_again(session_factory, sim, tmp_path):
    await start_runs(session_factory, ["A"], RunSettings(max_children=1))
    data = tmp_path / "data"
    async with session_factory() as s, s.begin():
        claimed = await claim_next_job(s, random.Random(1))
        assert isinstance(claimed, ClaimedJob)
        write_atomically(data, "p/parent.png", _png())
        await complete_job(s, claimed.job_id, [StoredImage("p/parent.png", 0)])
    name = f"cc-{hashlib.sha256(_png()).hexdigest()[:32]}.png"
    (sim.root / "input" / "comfy-curator").mkdir(parents=True)
    (sim.root / "input" / "comfy-curator" / name).write_bytes(_png())
    sim.fault("/upload/image", status=400, body="no uploads here", times=None)
    await run_to_idle(faulty_scheduler(session_factory, [sim.url], data))
    rows = await jobs(session_factory)
    assert [r[1] for r in rows] == [JobStatus.succeeded] * 2, rows


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_input_exists_agrees_with_comfy(sim):
    (sim.root / "input" / "sub").mkdir(parents=True)
    (sim.root / "input" / "sub" / "here.png").write_bytes(_png())
    async with ComfyClient(sim.url, **FAST) as client:
        assert await client.input_exists("here.png", "sub") is True
        assert await client.input_exists("gone.png", "sub") is False
        assert await client.input_exists("here.png", "") is False


# -- a restart with a prompt in flight ------------------------------------------------------------


async def test_restart_hears_the_end_of_a_prompt_in_flight(tmp_path, db_url):
    data = tmp_path / "data"
    slow_poll = {"idle_poll_interval": 30.0, "poll_interval": 30.0}
    async with SimulatedComfy(duration=1.5, root=tmp_path / "comfy") as sim:
        engine = create_engine(db_url)
        factory = create_session_factory(engine)
        await start_runs(factory, ["A"], RunSettings(max_children=1))
        first = faulty_scheduler(factory, [sim.url], data, client_options=slow_poll)
        await first.start()
        async with asyncio.timeout(10):
            prompt_id = await sim.wait_running()
        await first.stop()
        await engine.dispose()

        engine = create_engine(db_url)
        factory = create_session_factory(engine)
        try:
            async with factory() as s:
                [worker] = list(await s.scalars(select(ComfyWorker)))
            assert worker.url == sim.url
            told = Told()
            second = faulty_scheduler(factory, [sim.url], data, told, client_options=slow_poll)
            await second.start()
            try:
                async def marked_running() -> bool:
                    async with factory() as s:
                        return await s.scalar(select(Job.status).where(
                            Job.prompt_id == prompt_id)) is JobStatus.running
                await until(marked_running, 5)
                assert sim.running == prompt_id  # marked while the prompt still runs

                # Well before a 30 s history poll could fire:
                await told.wait_for("job_succeeded", seconds=10)
                async with factory() as s:
                    assert await s.scalar(select(func.count()).select_from(ImageCandidate))
            finally:
                await second.stop()
            async with factory() as s:
                assert len(list(await s.scalars(select(ComfyWorker)))) == 1
        finally:
            await engine.dispose()
