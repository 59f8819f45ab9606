"""`comfy-curator runs delete|disk` and `pipeline delete`: real database file, real files."""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.cli import main
from db.engine import create_engine, create_session_factory
from db.models import ImageCandidate, PipelineRun
from orchestration.jobs import ClaimedJob, StoredImage, claim_next_job, complete_job
from orchestration.payload import prepare_submission
from orchestration.runs import RunSettings
from tests.factories import make_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("DISCORD_TOKEN", "DISCORD_GUILD_ID", "CURATOR_ROLE_ID", "DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    assert main(["pipeline", "import", str(REPO / "pipelines" / "cpu-demo")]) == 0
    return tmp_path


def in_db(env: Path, work: Callable[..., Awaitable[Any]]) -> Any:
    async def go() -> Any:
        engine = create_engine(f"sqlite+aiosqlite:///{env}/cli.db")
        try:
            async with create_session_factory(engine)() as s:
                return await work(s)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def a_run_with_images(env: Path, name: str, images: int, *, leave_pending: bool = False) -> int:
    """A run whose jobs each left one image under data/<run folder>, as the scheduler would;
    with `leave_pending`, one more job is claimed and left in flight."""

    async def work(s) -> int:
        run = await make_run(s, "cpu-demo", name, RunSettings(max_children=images),
                             {"prompt": "a fox"})
        folder = (await s.get(PipelineRun, run)).folder
        rng = random.Random(run)
        for made in range(images + leave_pending):
            job = await claim_next_job(s, rng)
            assert isinstance(job, ClaimedJob)
            if made == images:  # the one left in flight
                await s.commit()
                break
            await prepare_submission(s, job.job_id, prompt_id=f"{name}-{job.job_id}",
                                     worker="http://127.0.0.1:9")
            path = f"{folder}/01-base/job-{job.job_id:06d}-0.png"
            (env / "data" / path).parent.mkdir(parents=True, exist_ok=True)
            (env / "data" / path).write_bytes(b"\x89PNG" + bytes(100 * job.job_id))
            await complete_job(s, job.job_id, [StoredImage(path, 0)])
            await s.commit()
        return run

    return int(in_db(env, work))


def rows(env: Path) -> tuple[int, int]:
    async def work(s) -> tuple[int, int]:
        return (int(await s.scalar(select(func.count()).select_from(PipelineRun))),
                int(await s.scalar(select(func.count()).select_from(ImageCandidate))))

    return tuple(in_db(env, work))  # type: ignore[return-value]


def answer(monkeypatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def test_runs_delete_shows_what_goes_and_asks_first(env, monkeypatch, capsys):
    run = a_run_with_images(env, "Fox", 2)
    other = a_run_with_images(env, "Owl", 1)
    folder = env / "data" / "run-0001-fox"
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    capsys.readouterr()

    answer(monkeypatch, "n\n")
    assert main(["runs", "delete", str(run)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"Delete run #{run} “Fox” (cpu-demo, running) for good?")
    assert "• from the database: 2 candidates, 2 jobs, 0 votes, 0 posted pairs, 3 steps" in out
    assert f"• from disk: 2 files ({size} bytes) in data/run-0001-fox" in out
    assert "• from ComfyUI at http://127.0.0.1:9: the history of 2 prompts" in out
    assert ("• stays: ComfyUI at http://127.0.0.1:9 keeps its own copies of the images in "
            "output/run-0001-fox/: its API cannot delete files. On that machine, in ComfyUI's "
            "folder: rm -r output/run-0001-fox") in out
    assert err == "comfy-curator: nothing was deleted (answer y to delete, or give --yes)\n"
    assert rows(env) == (2, 3) and folder.is_dir()

    answer(monkeypatch, "y\n")
    assert main(["runs", "delete", str(run)]) == 0
    out = capsys.readouterr().out
    assert (f"Deleted run #{run} “Fox”: 2 candidates, 2 jobs, 0 votes, 0 posted pairs, 3 steps "
            f"of the run; 2 files ({size} bytes) in data/run-0001-fox") in out
    assert "ComfyUI at http://127.0.0.1:9 kept the history of 2 prompts (ComfyUI at " in out
    assert rows(env) == (1, 1) and not folder.exists()
    assert (env / "data" / "run-0002-owl").is_dir()
    assert main(["runs", "delete", str(other), "--yes"]) == 0  # no question
    assert rows(env) == (0, 0)


def test_a_refused_delete_is_one_line_and_changes_nothing(env, monkeypatch, capsys):
    run = a_run_with_images(env, "Fox", 1, leave_pending=True)
    capsys.readouterr()
    for command in (["runs", "delete", str(run), "--yes"], ["pipeline", "delete", "cpu-demo"],
                    ["runs", "delete", "99"], ["pipeline", "delete", "nope"]):
        assert main(command) == 2, command
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("comfy-curator: ") and err.count("\n") == 1, err
    assert rows(env) == (1, 1) and (env / "data" / "run-0001-fox").is_dir()


def test_pipeline_delete_once_no_run_uses_it(env, capsys):
    run = a_run_with_images(env, "Fox", 1)
    assert main(["pipeline", "delete", "cpu-demo"]) == 2
    assert f"used by 1 run: #{run} “Fox”" in capsys.readouterr().err
    assert main(["runs", "delete", str(run), "--yes"]) == 0
    assert main(["pipeline", "delete", "cpu-demo"]) == 0
    assert capsys.readouterr().out.endswith("deleted pipeline “cpu-demo” (#1) and its 3 steps\n")
    assert main(["pipeline", "list"]) == 0
    assert "no pipelines yet" in capsys.readouterr().out


def test_runs_disk_counts_the_bytes_on_disk_and_leftover_folders(env, capsys):
    fox = a_run_with_images(env, "Fox", 2)
    owl = a_run_with_images(env, "Owl", 1)
    thumb = env / "data" / "run-0001-fox" / "01-base" / ".thumbs" / "t.jpg"
    thumb.parent.mkdir()
    thumb.write_bytes(b"j" * 1234)
    left = env / "data" / "run-0009-gone" / "01-base"
    left.mkdir(parents=True)
    (left / "job-000001-0.png").write_bytes(b"p" * 2000)

    def size(folder: str) -> int:
        return sum(p.stat().st_size for p in (env / "data" / folder).rglob("*") if p.is_file())

    capsys.readouterr()
    assert main(["runs", "disk"]) == 0
    lines = capsys.readouterr().out.splitlines()
    fox_bytes, owl_bytes = size("run-0001-fox"), size("run-0002-owl")
    assert lines[0].startswith(f"#{fox} Fox (running): 2 images, 3 files, ")
    assert lines[0].endswith(f" ({fox_bytes:,} bytes) in data/run-0001-fox")
    assert lines[1] == (f"#{owl} Owl (running): 1 image, 1 file, {owl_bytes} bytes in "
                        "data/run-0002-owl")
    assert lines[2] == ("data/run-0009-gone: no run owns it (left by a deletion that stopped "
                        "before its files were removed): 1 file, 2.0 kB (2,000 bytes); "
                        "comfy-curator runs delete 9 removes it")
    total = fox_bytes + owl_bytes + 2000
    assert lines[3].startswith("total: ") and lines[3].endswith(
        f"({total:,} bytes) under data")

    assert main(["runs", "delete", "9", "--yes"]) == 0
    assert "Deleted what was left of run #9: 1 file (2.0 kB)" in capsys.readouterr().out
    assert not (env / "data" / "run-0009-gone").exists()
