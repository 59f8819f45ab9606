"""The scheduler against the simulated ComfyUI on loopback: real database, real files."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
from pathlib import Path

import pytest
from sqlalchemy import func, select

from comfy.simulator import SimulatedComfy
from db.engine import create_engine, create_session_factory
from db.models import ImageCandidate, Job, PipelineRun
from orchestration.approvals import awaiting_approval
from orchestration.jobs import ClaimedJob, StoredImage, claim_next_job, complete_job
from orchestration.runs import RunSettings
from orchestration.states import JobStatus
from scheduler.events import SchedulerEvent
from scheduler.process import Scheduler
from scheduler.thumbnails import is_current, thumbnail_path
from tests.comfy.conftest import load_trace
from tests.committed import approve_step, create_run, import_pipeline, resume_run

REPO = Path(__file__).resolve().parents[2]
FAST = {"retry_attempts": 2, "retry_wait": 0.01, "retry_max_wait": 0.02,
        "request_timeout": 5.0, "connect_timeout": 1.0, "poll_interval": 0.05,
        "idle_poll_interval": 1.0, "history_grace": 1.0}


@pytest.fixture
async def sim(tmp_path):
    async with SimulatedComfy(duration=0.02, root=tmp_path / "comfy", seed=1) as server:
        yield server


class Told:
    """The scheduler's events as they come, and a wait for one (no polling, no sleeping)."""

    def __init__(self) -> None:
        self.events: list[SchedulerEvent] = []
        self._changed = asyncio.Condition()

    async def record(self, event: SchedulerEvent) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    async def wait_for(self, kind: str, count: int = 1, seconds: float = 10) -> None:
        async with asyncio.timeout(seconds), self._changed:
            await self._changed.wait_for(
                lambda: sum(e.kind == kind for e in self.events) >= count)


def make_scheduler(factory, urls, data_dir, events=None, seed=1, **options) -> Scheduler:
    """`events`: a list the events are appended to, or a `Told`; `options` go to the
    Scheduler, `client_options` over the fast ones."""
    client_options = {**FAST, **options.pop("client_options", {})}

    async def record(event: SchedulerEvent) -> None:
        if isinstance(events, Told):
            await events.record(event)
        elif events is not None:
            events.append(event)
    return Scheduler(factory, urls, data_dir, rng=random.Random(seed), tick_seconds=60,
                     down_retry_seconds=0.05, client_options=client_options, on_event=record,
                     **options)


async def start_runs(factory, names, settings=None) -> list[int]:
    async with factory() as s:
        await import_pipeline(s, REPO / "pipelines" / "cpu-demo")
        return [
            (await create_run(s, "cpu-demo", n, {},
                              settings or RunSettings(max_children=2))).run_id
            for n in names
        ]


async def idle(scheduler: Scheduler, seconds: float = 20) -> None:
    async with asyncio.timeout(seconds):
        await scheduler.wait_idle()


async def run_until_idle(scheduler: Scheduler) -> None:
    await scheduler.start()
    try:
        await idle(scheduler)
    finally:
        await scheduler.stop()

async def post_one_job(factory, client, prompt_id: str) -> ClaimedJob:
    """What a scheduler does before it dies with a prompt on ComfyUI: claim the next job,
    store its payload and prompt id, post the prompt."""
    from orchestration.payload import prepare_submission

    async with factory() as s, s.begin():
        claimed = await claim_next_job(s, random.Random(1))
        assert isinstance(claimed, ClaimedJob)
        payload = await prepare_submission(s, claimed.job_id, prompt_id=prompt_id,
                                           worker=client.url)
    await client.submit(payload, prompt_id=prompt_id)
    return claimed



async def test_two_runs_through_three_gated_steps(session_factory, sim, tmp_path):
    runs = await start_runs(session_factory, ["A", "B"])
    data = tmp_path / "data"
    scheduler = make_scheduler(session_factory, [sim.url], data)
    await scheduler.start()
    try:
        await idle(scheduler)
        async with session_factory() as s:
            for run in runs:
                assert await awaiting_approval(s, run) == [2]
                await approve_step(s, run, 2, 1, "curator")
        scheduler.wake()
        await idle(scheduler)
    finally:
        await scheduler.stop()

    async with session_factory() as s:
        for run in runs:
            rows = (await s.execute(
                select(ImageCandidate.id, ImageCandidate.step, ImageCandidate.parent_id,
                       ImageCandidate.image_path, ImageCandidate.advancing)
                .where(ImageCandidate.run_id == run))).all()
            by_id = {r.id: r for r in rows}
            per_step = {k: sum(1 for r in rows if r.step == k) for k in (1, 2, 3)}
            assert per_step == {1: 2, 2: 4, 3: 2}  # N = 2; only the approved best grew
            for r in rows:
                assert (data / r.image_path).is_file()
                if r.step > 1:
                    assert by_id[r.parent_id].step == r.step - 1  # parents of the same run
            [best] = [r.id for r in rows if r.step == 2 and r.advancing]
            assert {r.parent_id for r in rows if r.step == 3} == {best}
        jobs = (await s.execute(select(Job.status, func.count()).group_by(Job.status))).all()
    assert dict(jobs) == {JobStatus.succeeded: 16}
    assert len(sim.timings) == 16 and all(t.status == "success" for t in sim.timings)


async def test_new_candidates_have_current_thumbnails_once_idle(session_factory, sim, tmp_path):
    await start_runs(session_factory, ["A"])
    data = tmp_path / "data"
    await run_until_idle(make_scheduler(session_factory, [sim.url], data))
    async with session_factory() as s:
        paths = [data / p for p in await s.scalars(select(ImageCandidate.image_path))]
    assert len(paths) == 6  # N = 2: two base images, four children
    assert all(is_current(thumbnail_path(p), p) for p in paths)


async def test_a_stop_waits_for_the_thumbnails_of_the_last_job(session_factory, sim, tmp_path):
    await start_runs(session_factory, ["A"])
    data = tmp_path / "data"
    succeeded: list[SchedulerEvent] = []
    first = asyncio.Event()

    async def on_event(event: SchedulerEvent) -> None:
        if event.kind == "job_succeeded":
            succeeded.append(event)
            first.set()

    scheduler = Scheduler(session_factory, [sim.url], data, rng=random.Random(1),
                          tick_seconds=60, client_options=FAST, on_event=on_event)
    await scheduler.start()
    try:
        async with asyncio.timeout(20):
            await first.wait()
    finally:
        await scheduler.stop()
    paths = [data / p for event in succeeded for p in event.image_paths]
    assert paths and all(is_current(thumbnail_path(p), p) for p in paths)


async def test_killed_mid_job_then_restarted_ingests_once(tmp_path, db_url):
    data = tmp_path / "data"
    async with SimulatedComfy(duration=0.4, root=tmp_path / "comfy") as sim:
        engine = create_engine(db_url)
        factory = create_session_factory(engine)
        await start_runs(factory, ["A"], RunSettings(max_children=1))
        first = make_scheduler(factory, [sim.url], data)
        await first.start()
        async with asyncio.timeout(10):
            await sim.wait_running()
        # Abrupt stop: tasks cancelled, engine dropped, the prompt keeps running on ComfyUI.
        await first.stop()
        await engine.dispose()

        engine = create_engine(db_url)
        factory = create_session_factory(engine)
        async with factory() as s:
            [job] = (await s.execute(select(Job.id, Job.status, Job.prompt_id))).all()
        assert job.status in (JobStatus.submitted, JobStatus.running) and job.prompt_id
        second = make_scheduler(factory, [sim.url], data)
        await second.start()
        try:
            await idle(second)
        finally:
            await second.stop()
        async with factory() as s:
            made = (await s.execute(select(ImageCandidate.job_id, ImageCandidate.step))).all()
            statuses = list(await s.scalars(select(Job.status)))
        await engine.dispose()
    assert sorted(made) == [(job.id, 1), (job.id + 1, 2)]  # the first job's image, once
    assert statuses == [JobStatus.succeeded, JobStatus.succeeded]
    assert [t.prompt_id for t in sim.timings].count(job.prompt_id) == 1  # never run twice


async def test_crash_between_storing_prompt_id_and_posting(session_factory, sim, tmp_path):
    """A job marked submitted whose prompt never reached ComfyUI is released and made again."""
    from orchestration.payload import prepare_submission

    await start_runs(session_factory, ["A"], RunSettings(max_children=1))
    async with session_factory() as s, s.begin():
        claimed = await claim_next_job(s, random.Random(1))
        assert isinstance(claimed, ClaimedJob)
        await prepare_submission(s, claimed.job_id, prompt_id="never-posted", worker=sim.url)
    await run_until_idle(make_scheduler(session_factory, [sim.url], tmp_path / "data"))
    async with session_factory() as s:
        lost = await s.get_one(Job, claimed.job_id)
        assert lost.status is JobStatus.cancelled and "no longer knew" in (lost.error or "")
        steps = sorted(await s.scalars(select(ImageCandidate.step)))
    assert steps == [1, 2]  # the base image was made by a fresh job, and the run went on


async def test_crash_after_download_before_candidates(session_factory, sim, tmp_path):
    """Files written, rows not: the restart takes the result from /history, exactly once."""
    from comfy.client import ComfyClient

    await start_runs(session_factory, ["A"], RunSettings(max_children=1))
    async with ComfyClient(sim.url, **FAST) as client:
        claimed = await post_one_job(session_factory, client, "p-1")
        result = await client.follow("p-1")
        (tmp_path / "data" / "partial.png").parent.mkdir(parents=True)
        (tmp_path / "data" / "partial.png").write_bytes(await client.download(result.images[0]))
    # ...and here the process died.
    await run_until_idle(make_scheduler(session_factory, [sim.url], tmp_path / "data"))
    async with session_factory() as s:
        from_job = list(await s.scalars(
            select(ImageCandidate.id).where(ImageCandidate.job_id == claimed.job_id)))
        total = await s.scalar(select(func.count()).select_from(ImageCandidate))
    assert len(from_job) == 1 and total == 2
    assert [t.prompt_id for t in sim.timings].count("p-1") == 1


async def test_complete_job_twice_creates_candidates_once(session_factory, tmp_path):
    await start_runs(session_factory, ["A"], RunSettings(max_children=1))
    async with session_factory() as s:
        async with s.begin():
            claimed = await claim_next_job(s, random.Random(1))
            assert isinstance(claimed, ClaimedJob)
            first = await complete_job(s, claimed.job_id, [StoredImage("a.png", 0)])
        async with s.begin():
            again = await complete_job(s, claimed.job_id, [StoredImage("a.png", 0)])
        assert first == again
        assert await s.scalar(select(func.count()).select_from(ImageCandidate)) == 1


async def test_socket_drop_mid_job_completes_through_history(session_factory, tmp_path):
    async with SimulatedComfy(duration=0.3, root=tmp_path / "comfy") as sim:
        await start_runs(session_factory, ["A"], RunSettings(max_children=1))
        sim.drop_websockets_mid_prompt(refuse_reconnect=True)
        await run_until_idle(make_scheduler(session_factory, [sim.url], tmp_path / "data"))
    async with session_factory() as s:
        statuses = list(await s.scalars(select(Job.status)))
    assert statuses == [JobStatus.succeeded] * 2


async def test_comfy_down_at_start_and_mid_run(session_factory, tmp_path, caplog):
    told = Told()
    events = told.events
    caplog.set_level(logging.INFO)
    async with SimulatedComfy(duration=0.05, root=tmp_path / "comfy") as sim:
        await start_runs(session_factory, ["A"], RunSettings(max_children=2))
        await sim.go_down()
        scheduler = make_scheduler(session_factory, [sim.url], tmp_path / "data", told)
        await scheduler.start()
        try:
            await told.wait_for("worker_down")
            assert scheduler.up[sim.url] is False
            assert any(f"ComfyUI at {sim.url} is not reachable" in r.getMessage()
                       for r in caplog.records)
            await sim.come_up()
            async with asyncio.timeout(10):
                await sim.wait_running()
            await sim.go_down()  # mid-run: the prompt keeps running, the network is gone
            await told.wait_for("worker_down", 2)
            await sim.come_up()
            await idle(scheduler)
        finally:
            await scheduler.stop()
    kinds = [e.kind for e in events]
    assert kinds.count("worker_down") == 2 and kinds.count("worker_up") == 2
    async with session_factory() as s:
        steps = sorted(await s.scalars(select(ImageCandidate.step)))
        lost = await s.scalar(select(func.count()).where(Job.status == JobStatus.failed))
    assert steps == [1, 1, 2, 2, 2, 2]
    assert lost == 0


MISSING_MODEL = load_trace("08_missing_model.json")["post_response"]


async def test_three_rejections_hold_the_run_and_resume_lifts_it(session_factory, sim, tmp_path):
    events: list[SchedulerEvent] = []
    [run] = await start_runs(session_factory, ["A"], RunSettings(max_children=5))
    for _ in range(3):
        sim.reject_next_submit(MISSING_MODEL)
    scheduler = make_scheduler(session_factory, [sim.url], tmp_path / "data", events)
    await scheduler.start()
    try:
        await idle(scheduler)
        async with session_factory() as s:
            held = await s.get_one(PipelineRun, run)
            errors = list(await s.scalars(select(Job.error).where(Job.status == JobStatus.failed)))
        assert len(errors) == 3
        assert all("is not installed on this ComfyUI" in e for e in errors), errors
        assert held.held_reason and "3 jobs in a row failed at step 1" in held.held_reason
        assert [e.kind for e in events].count("run_held") == 1
        async with session_factory() as s:
            await resume_run(s, run)
        scheduler.wake()
        await idle(scheduler)
    finally:
        await scheduler.stop()
    async with session_factory() as s:
        steps = dict((await s.execute(select(ImageCandidate.step, func.count())
                                      .group_by(ImageCandidate.step))).tuples().all())
    assert steps == {1: 5, 2: 25}  # resumed: the base images, their children, then the gate


async def test_runtime_error_fails_with_readable_message(session_factory, sim, tmp_path):
    await start_runs(session_factory, ["A"], RunSettings(max_children=1))
    sim.fail_next_prompt("CUDA out of memory")
    await run_until_idle(make_scheduler(session_factory, [sim.url], tmp_path / "data"))
    async with session_factory() as s:
        [error] = list(await s.scalars(select(Job.error).where(Job.status == JobStatus.failed)))
        made = await s.scalar(select(func.count()).select_from(ImageCandidate))
    assert "RuntimeError: CUDA out of memory" in error
    assert made == 2  # the failed place was made again


async def test_two_workers_one_job_each(session_factory, tmp_path):
    async with (SimulatedComfy(duration=0.15, root=tmp_path / "a") as a,
                SimulatedComfy(duration=0.15, root=tmp_path / "b") as b):
        await start_runs(session_factory, ["A", "B"], RunSettings(max_children=2))
        await run_until_idle(make_scheduler(session_factory, [a.url, b.url], tmp_path / "data"))
        for server in (a, b):
            spans = sorted((t.started, t.ended) for t in server.timings)
            assert spans, "both workers got work"
            for (_, end), (start, _) in itertools.pairwise(spans):
                assert end <= start  # never two at once on one worker
        ids_a = {t.prompt_id for t in a.timings}
        ids_b = {t.prompt_id for t in b.timings}
        assert not ids_a & ids_b
        overlap = any(sa < eb and sb < ea for sa, ea in ((t.started, t.ended) for t in a.timings)
                      for sb, eb in ((t.started, t.ended) for t in b.timings))
        assert overlap  # two jobs in flight at once
    async with session_factory() as s:
        workers = dict((await s.execute(
            select(Job.worker, func.count()).group_by(Job.worker))).tuples().all())
    assert set(workers) == {a.url, b.url} and sum(workers.values()) == 12


async def test_comfy_restart_losing_the_prompt_releases_the_job(session_factory, tmp_path):
    """A prompt lost in a ComfyUI restart is made again and does not count toward a hold."""
    async with SimulatedComfy(duration=0.3, root=tmp_path / "comfy") as sim:
        [run] = await start_runs(session_factory, ["A"], RunSettings(max_children=1))
        scheduler = make_scheduler(session_factory, [sim.url], tmp_path / "data")
        await scheduler.start()
        try:
            for _ in range(3):  # three restarts in a row, each losing the running prompt
                async with asyncio.timeout(10):
                    await sim.wait_running()
                await sim.go_down(crash=True)
                await sim.come_up()
            await idle(scheduler)
        finally:
            await scheduler.stop()
    async with session_factory() as s:
        statuses = list(await s.scalars(select(Job.status).order_by(Job.id)))
        held = (await s.get_one(PipelineRun, run)).held_reason
    assert JobStatus.failed not in statuses
    assert statuses.count(JobStatus.cancelled) >= 3
    assert statuses[-2:] == [JobStatus.succeeded, JobStatus.succeeded]
    assert held is None


async def test_a_run_no_connected_worker_can_serve_is_held_lifted_and_skipped(
    session_factory, tmp_path
):
    """B lacks the checkpoint: with B alone the run is held; once A (which has it) connects
    the hold is lifted and A makes that run's jobs while B makes only the other run's."""
    from db.models import HoldKind

    told = Told()
    events = told.events
    checkpoint = "sd_xl_base_1.0.safetensors"
    async with (SimulatedComfy(duration=0.02, root=tmp_path / "a",
                               models={"checkpoints": [checkpoint]}) as a,
                SimulatedComfy(duration=0.02, root=tmp_path / "b") as b):
        async with session_factory() as s:
            await import_pipeline(s, REPO / "pipelines" / "sdxl-refine-upscale")
            sdxl = (await create_run(s, "sdxl-refine-upscale", "sea",
                                     {"prompt": "a lighthouse", "checkpoint": checkpoint},
                                     RunSettings(max_children=2))).run_id
        [demo] = await start_runs(session_factory, ["demo"], RunSettings(max_children=2))
        await a.go_down()
        scheduler = make_scheduler(session_factory, [b.url, a.url], tmp_path / "data", told)

        async def sdxl_run() -> PipelineRun:
            async with session_factory() as s:
                return await s.get_one(PipelineRun, sdxl)

        await scheduler.start()
        try:
            await told.wait_for("run_held", seconds=15)
            assert (await sdxl_run()).held_kind is HoldKind.workers
            reason = (await sdxl_run()).held_reason
            assert reason == (
                "no connected ComfyUI can run it; it goes on by itself once one can:\n"
                + "\n".join(f"• step {n} needs checkpoint '{checkpoint}'; ComfyUI at {b.url} "
                            "has: none" for n in ("1 (base)", "2 (refine)", "3 (upscale)")))
            [event] = [e for e in events if e.kind == "run_held"]
            assert (event.run_id, event.message, event.hold_kind) == (
                sdxl, reason, HoldKind.workers)
            await a.come_up()
            await told.wait_for("run_resumed", seconds=15)
            assert (await sdxl_run()).held_reason is None
            await idle(scheduler)
            [back] = [e for e in events if e.kind == "run_resumed"]
            assert (back.run_id, back.worker, back.hold_kind) == (sdxl, a.url, HoldKind.workers)
        finally:
            await scheduler.stop()
    async with session_factory() as s:
        jobs = (await s.execute(select(Job.run_id, Job.worker, Job.status))).all()
    assert {(w, st) for r, w, st in jobs if r == sdxl} == {(a.url, JobStatus.succeeded)}
    assert len([j for j in jobs if j.run_id == sdxl]) == 6  # 2 base images, 2 children each
    assert {st for r, _, st in jobs if r == demo} == {JobStatus.succeeded}
    assert b.url in {w for r, w, _ in jobs if r == demo}


async def test_one_worker_that_can_serve_a_run_is_enough_to_start_it(session_factory, tmp_path):
    from comfy.capabilities import fetch_capabilities
    from comfy.client import ComfyClient
    from orchestration.errors import InvalidInput

    checkpoint = "sd_xl_base_1.0.safetensors"
    async with (SimulatedComfy(duration=0.01, root=tmp_path / "a",
                               models={"checkpoints": [checkpoint]}) as a,
                SimulatedComfy(duration=0.01, root=tmp_path / "b") as b):
        scheduler = make_scheduler(session_factory, [b.url, a.url], tmp_path / "data")
        for sim in (b, a):
            async with ComfyClient(sim.url) as client:
                scheduler.capabilities[sim.url] = await fetch_capabilities(client)
    async with session_factory() as s:
        await import_pipeline(s, REPO / "pipelines" / "sdxl-refine-upscale")
        values = {"prompt": "a lighthouse", "checkpoint": checkpoint}
        await create_run(s, "sdxl-refine-upscale", "ok", values, RunSettings(),
                         check=scheduler.problems_for_run)
        with pytest.raises(InvalidInput) as refused:
            await create_run(s, "sdxl-refine-upscale", "no", values | {"checkpoint": "other"},
                             RunSettings(), check=scheduler.problems_for_run)
    lines = str(refused.value).splitlines()[1:]
    assert len(lines) == 6  # three steps, each on both workers
    assert {line.split("ComfyUI at ")[1].split(" ")[0] for line in lines} == {a.url, b.url}


async def test_start_removes_temp_files_a_killed_write_left(session_factory, sim, tmp_path):
    data = tmp_path / "data"
    left = data / "run-0001-a" / "01-base" / ".part-abc123"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"half a png")
    kept = left.with_name("job-000001-0.png")
    kept.write_bytes(b"whole")
    await run_until_idle(make_scheduler(session_factory, [sim.url], data))
    assert not left.exists() and kept.read_bytes() == b"whole"


async def test_reconcile_sees_a_prompt_that_ends_between_history_and_queue(
    session_factory, tmp_path
):
    """History asked while it runs, queue asked after it ended: ingested, not cancelled."""
    from comfy.client import ComfyClient

    async with SimulatedComfy(duration=0.3, root=tmp_path / "comfy") as sim:
        await start_runs(session_factory, ["A"], RunSettings(max_children=1))
        async with ComfyClient(sim.url, **FAST) as client:
            claimed = await post_one_job(session_factory, client, "p-1")
        async with asyncio.timeout(10):
            await sim.wait_running()
        sim.fault("/queue", method="GET", status=None, delay=0.6)
        await run_until_idle(make_scheduler(session_factory, [sim.url], tmp_path / "data"))
    async with session_factory() as s:
        job = await s.get_one(Job, claimed.job_id)
    assert job.status is JobStatus.succeeded, job.error


MASK_PIPELINE = {
    "01-mask.json": {
        "1": {"class_type": "SolidMask",
              "inputs": {"value": "{{level}}", "width": 16, "height": 16}},
        "2": {"class_type": "GrowMask", "inputs": {
            "mask": ["1", 0], "expand": "{{grow}}", "tapered_corners": "{{tapered}}"}},
        "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
        "4": {"class_type": "SaveImage",
              "inputs": {"images": ["3", 0], "filename_prefix": "{{output_prefix}}"}},
    },
    "pipeline.yaml": "name: masks\nvariables: [level, grow, tapered]\n"
                     "steps:\n  - name: mask\n    workflow: 01-mask.json\n",
}


async def test_run_variables_reach_comfyui_as_the_types_its_inputs_take(
    session_factory, sim, tmp_path
):
    """ComfyUI would take "2" for an INT itself, but "false" for a BOOLEAN is true to it.
    A value that cannot be its input's type is refused at /run start, once a worker is read."""
    import aiohttp

    from orchestration.errors import InvalidInput

    folder = tmp_path / "masks"
    folder.mkdir()
    for name, content in MASK_PIPELINE.items():
        (folder / name).write_text(content if isinstance(content, str) else json.dumps(content))
    async with session_factory() as s:
        await import_pipeline(s, folder)
        run = await create_run(s, "masks", "typed", {"level": "0.5", "grow": "2",
                                                     "tapered": "false"},
                               RunSettings(max_children=1, target_leaves=1, budget=1))
    scheduler = make_scheduler(session_factory, [sim.url], tmp_path / "data")
    await run_until_idle(scheduler)
    async with session_factory() as s:
        [job] = list(await s.scalars(select(Job).where(Job.run_id == run.run_id)))
        status, error, prompt_id = job.status, job.error, job.prompt_id
        with pytest.raises(InvalidInput) as refused:
            await create_run(s, "masks", "untyped", {"level": "half", "grow": "2",
                                                     "tapered": "false"},
                             RunSettings(), check=scheduler.problems_for_run)
        assert await s.scalar(select(func.count()).select_from(PipelineRun)) == 1
    assert str(refused.value).splitlines()[1:] == [
        "• step 1 (mask): level=half, but SolidMask (#1) value takes a number"]
    assert status is JobStatus.succeeded, error
    async with (aiohttp.ClientSession() as http,
                http.get(f"{sim.url}/history/{prompt_id}") as answer):
        sent = (await answer.json())[prompt_id]["prompt"][2]
    assert sent["1"]["inputs"]["value"] == 0.5
    assert sent["2"]["inputs"] == {"mask": ["1", 0], "expand": 2, "tapered_corners": False}
