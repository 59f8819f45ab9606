"""Recovery from SIGKILL, with the scheduler and the simulated ComfyUI each in an OS process of
its own: the scheduler is killed at seeded random moments and restarted on the same database
and data folder, ComfyUI is killed mid-job a few times (losing its queue and history), and at
the end nothing is lost, doubled or left half done."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from db.engine import create_engine, create_session_factory
from db.models import ImageCandidate, Job, PipelineRun
from orchestration.runs import RunSettings
from orchestration.states import IN_FLIGHT, JobStatus
from tests.committed import create_run, import_pipeline

REPO = Path(__file__).resolve().parents[2]
SCHEDULER_KILLS = 14
COMFY_KILLS_AFTER = {3, 8, 11}  # after these scheduler starts, ComfyUI is killed mid-job too
PROMPT_SECONDS = 0.6


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], within: float = 20) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the simulated ComfyUI died while starting"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)  # polling a condition with a deadline
    raise AssertionError(f"the simulated ComfyUI did not listen on {port} within {within} s")


class Processes:
    """The two processes of the experiment; every one is killed when the test ends."""

    def __init__(self, tmp: Path, db_url: str) -> None:
        self.tmp = tmp
        self.db_url = db_url
        self.port = free_port()
        self.record = tmp / "finished.jsonl"
        self.comfy: subprocess.Popen[bytes] | None = None
        self.comfy_instance = 0
        self.started: list[subprocess.Popen[bytes]] = []

    def _spawn(self, module: str, *args: str, log: str) -> subprocess.Popen[bytes]:
        with (self.tmp / log).open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO,
                                    stdout=out, stderr=subprocess.STDOUT)
        self.started.append(proc)
        return proc

    def start_comfy(self) -> None:
        self.comfy_instance += 1
        self.comfy = self._spawn(
            "tests.procs.simulator_proc", str(self.port), str(self.tmp / "comfy"),
            str(self.record), str(self.comfy_instance), str(PROMPT_SECONDS), log="comfy.log")
        wait_for_port(self.port, self.comfy)

    def kill_comfy(self) -> None:
        assert self.comfy is not None
        self.comfy.send_signal(signal.SIGKILL)
        self.comfy.wait()

    def scheduler(self, seed: int, *extra: str) -> subprocess.Popen[bytes]:
        return self._spawn("tests.procs.scheduler_proc", self.db_url, str(self.tmp / "data"),
                           f"http://127.0.0.1:{self.port}", str(seed), *extra,
                           log="scheduler.log")

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()


async def set_up(db_url: str) -> tuple[int, int]:
    engine = create_engine(db_url)
    async with create_session_factory(engine)() as s:
        await import_pipeline(s, REPO / "pipelines" / "cpu-demo")
        tight = await create_run(s, "cpu-demo", "tight", {},
                                 RunSettings(max_children=3, budget=8))
        wide = await create_run(s, "cpu-demo", "wide", {}, RunSettings(max_children=2))
    await engine.dispose()
    return tight.run_id, wide.run_id


async def read_outcome(db_url: str) -> dict[str, object]:
    engine = create_engine(db_url)
    async with create_session_factory(engine)() as s:
        jobs = (await s.execute(select(Job.id, Job.run_id, Job.status, Job.prompt_id))).all()
        candidates = (await s.execute(select(
            ImageCandidate.id, ImageCandidate.run_id, ImageCandidate.job_id,
            ImageCandidate.output_index, ImageCandidate.image_path,
            ImageCandidate.child_slots))).all()
        child = aliased(ImageCandidate)
        truth = dict((await s.execute(
            select(ImageCandidate.id,
                   select(func.count()).where(child.parent_id == ImageCandidate.id)
                   .scalar_subquery()
                   + select(func.count()).where(Job.parent_id == ImageCandidate.id,
                                                Job.status.in_(IN_FLIGHT)).scalar_subquery())
        )).all())
        budgets = dict((await s.execute(select(PipelineRun.id, PipelineRun.budget))).all())
    await engine.dispose()
    return {"jobs": jobs, "candidates": candidates, "truth": truth, "budgets": budgets}


def test_killed_scheduler_and_comfyui_lose_and_double_nothing(db_url, tmp_path):
    rng = random.Random(20261201)
    tight, wide = asyncio.run(set_up(db_url))
    procs = Processes(tmp_path, db_url)
    try:
        procs.start_comfy()
        for start in range(SCHEDULER_KILLS):
            scheduler = procs.scheduler(start)
            time.sleep(rng.uniform(0.5, 1.2))  # the experiment: a random moment to kill at
            if start in COMFY_KILLS_AFTER:
                procs.kill_comfy()
                procs.start_comfy()
                time.sleep(rng.uniform(0.1, 0.4))  # and a random moment after its restart
            scheduler.send_signal(signal.SIGKILL)
            assert scheduler.wait() == -signal.SIGKILL, "the scheduler ended before its kill"
        final = procs.scheduler(SCHEDULER_KILLS, "--until-idle")
        assert final.wait(timeout=90) == 0, (tmp_path / "scheduler.log").read_text()[-3000:]
    finally:
        procs.close()

    outcome = asyncio.run(read_outcome(db_url))
    jobs = outcome["jobs"]
    candidates = outcome["candidates"]
    records = [json.loads(line) for line in procs.record.read_text().splitlines()]

    # Nothing in flight, and every run ends where its settings say: gates stop at step 2
    # (N base images, N children each), the tight run at its budget.
    assert not [j for j in jobs if j.status in IN_FLIGHT]
    per_run = Counter(c.run_id for c in candidates)
    assert per_run == {tight: 8, wide: 2 + 2 * 2}
    assert all(count <= outcome["budgets"][run] for run, count in per_run.items())

    # No prompt ran twice on one ComfyUI, and each that ended was taken in exactly once; the
    # last ComfyUI stayed up, so every prompt it finished was taken in.
    assert not [k for k, n in Counter((r["instance"], r["prompt_id"]) for r in records).items()
                if n > 1]
    by_prompt = {j.prompt_id: j for j in jobs if j.prompt_id}
    finished = {r["prompt_id"]: r for r in records if r["status"] == "success"}
    made = Counter(c.job_id for c in candidates)
    for job in jobs:
        if job.status is JobStatus.succeeded:
            assert job.prompt_id in finished, f"job {job.id} took in a prompt that never ran"
            assert made[job.id] == finished[job.prompt_id]["images"]
    for pid, record in finished.items():
        job = by_prompt[pid]
        if record["instance"] == procs.comfy_instance:
            assert job.status is JobStatus.succeeded, (job, record)
        else:  # its ComfyUI was killed: taken in, or lost with ComfyUI's history and made again
            assert job.status in (JobStatus.succeeded, JobStatus.cancelled), (job, record)
    assert len({(c.job_id, c.output_index) for c in candidates}) == len(candidates)

    # Every file whole, every count true, no temporary file left.
    data = tmp_path / "data"
    for candidate in candidates:
        with Image.open(data / candidate.image_path) as image:
            image.verify()
    assert {c.id: c.child_slots for c in candidates} == outcome["truth"]
    assert not list(data.rglob(".part-*"))

    # The experiment did what it set out to: kills landed mid-job and were recovered from.
    log = (tmp_path / "scheduler.log").read_text()
    assert sum(j.status is JobStatus.succeeded for j in jobs) == 14
    assert "recovered:" in log or "cancelled" in log
    assert procs.comfy_instance == 1 + len(COMFY_KILLS_AFTER)
