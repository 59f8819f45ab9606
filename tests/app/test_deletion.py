"""Deleting a run as a use case: its rows in one commit, then its folder, then its prompts'
history on the ComfyUI that ran them (the simulated one, on loopback), and what the runs take
on disk."""

from __future__ import annotations

import random
import sqlite3

import pytest
from sqlalchemy import select

import app.deletion
from app.context import App, RunRef
from app.deletion import delete_run, disk_use, plan_run_deletion
from comfy.simulator import SimulatedComfy
from db.models import Job
from orchestration.errors import Conflict
from orchestration.runs import RunSettings
from tests.committed import complete_run
from tests.scheduler.test_process import make_scheduler, run_until_idle, start_runs


@pytest.fixture
async def sim(tmp_path):
    async with SimulatedComfy(duration=0.01, root=tmp_path / "comfy", seed=1) as server:
        yield server


@pytest.fixture
async def grown(session_factory, sim, tmp_path):
    """Runs A and B of cpu-demo, one base image and one child each, made by the scheduler."""
    runs = await start_runs(session_factory, ["A", "B"], RunSettings(max_children=1))
    await run_until_idle(make_scheduler(session_factory, [sim.url], tmp_path / "data"))
    return runs


async def prompts_of(session_factory, run_id: int) -> list[str]:
    async with session_factory() as s:
        return list(await s.scalars(select(Job.prompt_id).where(Job.run_id == run_id)))


def row_count(db_url: str, run_id: int) -> int:
    """Seen from another connection: what is committed."""
    with sqlite3.connect(db_url.removeprefix("sqlite+aiosqlite:///")) as con:
        return int(con.execute("SELECT count(*) FROM image_candidates WHERE run_id = ?",
                               (run_id,)).fetchone()[0])


async def test_a_deleted_run_leaves_no_row_file_or_history_and_the_other_run_intact(
    session_factory, sim, grown, tmp_path, db_url, monkeypatch
):
    a, b = grown
    data = tmp_path / "data"
    use = App(session_factory)
    kept_prompts = await prompts_of(session_factory, b)
    gone_prompts = await prompts_of(session_factory, a)
    assert len(gone_prompts) == 2 and all(sim.history_entry(p) for p in gone_prompts)
    comfy_outputs = sorted((sim.root / "output").rglob("*.png"))

    plan = await plan_run_deletion(use, RunRef(a), data)
    assert plan.contents is not None and plan.contents.images == 2
    assert [f.name for f in plan.folders] == ["run-0001-a"]
    assert plan.files == 4 and plan.bytes == sum(  # two images and their thumbnails
        p.stat().st_size for p in (data / "run-0001-a").rglob("*") if p.is_file())
    [worker] = plan.contents.workers
    assert worker.url == sim.url and len(worker.uploads) == 1  # the child's parent

    removed_after_commit = []
    remove = app.deletion.remove_folder

    def watched(data_dir, name):
        removed_after_commit.append(row_count(db_url, a) == 0)
        return remove(data_dir, name)

    monkeypatch.setattr(app.deletion, "remove_folder", watched)
    done = await delete_run(use, a, data)

    assert removed_after_commit == [True]
    assert done.problems == () and [(w.url, w.prompts, w.error) for w in done.workers] == [
        (sim.url, 2, None)]
    assert not (data / "run-0001-a").exists() and (data / "run-0002-b").is_dir()
    assert [sim.history_entry(p) for p in gone_prompts] == [None, None]
    assert all(sim.history_entry(p) for p in kept_prompts)
    assert sorted((sim.root / "output").rglob("*.png")) == comfy_outputs  # ComfyUI keeps them
    assert [r.run_id for r in (await disk_use(use, data)).runs] == [b]


async def test_a_stop_between_commit_and_files_leaves_a_folder_the_next_delete_removes(
    session_factory, grown, tmp_path, monkeypatch
):
    a, b = grown
    data = tmp_path / "data"
    use = App(session_factory)

    def killed(data_dir, name):
        raise KeyboardInterrupt  # the process stops right after the commit

    monkeypatch.setattr(app.deletion, "remove_folder", killed)
    with pytest.raises(KeyboardInterrupt):
        await delete_run(use, a, data)
    monkeypatch.undo()

    use_now = await disk_use(use, data)
    assert [r.run_id for r in use_now.runs] == [b]
    assert [f.name for f in use_now.leftovers] == ["run-0001-a"]
    plan = await plan_run_deletion(use, RunRef(a), data)
    assert plan.contents is None and plan.files == 4
    done = await delete_run(use, a, data)
    assert done.deletion.contents is None and not (data / "run-0001-a").exists()
    assert (await disk_use(use, data)).leftovers == ()


async def test_a_run_with_a_job_in_flight_keeps_everything(session_factory, tmp_path):
    from tests.orchestration.test_deletion import claim

    [run] = await start_runs(session_factory, ["A"])
    async with session_factory() as s:
        await claim(s, random.Random(1), run)
        await complete_run(s, run)
    folder = tmp_path / "data" / "run-0001-a"
    folder.mkdir(parents=True)
    use = App(session_factory)
    with pytest.raises(Conflict, match="has 1 job in flight"):
        await plan_run_deletion(use, RunRef(run), tmp_path / "data")
    with pytest.raises(Conflict, match="Wait for it to end"):
        await delete_run(use, run, tmp_path / "data")
    assert folder.is_dir() and [r.run_id for r in (await disk_use(use, tmp_path / "data")).runs]
