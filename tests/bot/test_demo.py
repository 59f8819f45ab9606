"""The demo end to end: simulated ComfyUI on loopback, real scheduler, real files."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console
from sqlalchemy import select

import bot.demo
from bot.cli import main
from bot.demo import DemoError, DemoOptions, make_console, run_demo
from comfy.simulator import SimulatedComfy
from db.engine import create_engine, create_session_factory
from db.models import PipelineRun
from orchestration.runs import RunSettings
from orchestration.states import RunStatus
from scheduler.events import JobProgress
from scheduler.process import Scheduler
from tests.committed import create_run, import_pipeline

REPO = Path(__file__).resolve().parents[2]


def options(tmp_path: Path, db_url: str, **extra) -> DemoOptions:
    return DemoOptions(folder=tmp_path / "demo", database_url=db_url, duration=0.02,
                       run_settings=RunSettings(max_children=2, top_k=2), **extra)


async def test_three_runs_reach_their_final_step(tmp_path, db_url):
    out = io.StringIO()
    report = await run_demo(options(tmp_path, db_url), out=out)
    text = out.getvalue()

    assert len(report.runs) == 3 and len({r.name for r in report.runs}) == 3
    for run in report.runs:
        assert run.counts == {1: 2, 2: 4, 3: 4}  # N = 2; the approved top 2 grew
        assert run.approvals == {2: 2} and run.votes >= 6
        assert run.best is not None and run.best.votes > 0
        images = sorted((report.folder / run.folder).rglob("job-*.png"))
        assert len(images) == 10
        assert run.sheet is not None and run.sheet.parent == report.folder / run.folder
        with Image.open(run.sheet) as sheet:
            sheet.load()
            assert sheet.width >= 640
        assert run.name in text and str(run.sheet) in text
    assert report.jobs_done == 30
    assert "summary" in text and "approved step 2, top 2" in text
    assert text.splitlines()[0].endswith("upgrading the database…")  # at once, before any wait
    # The voter's taste follows what the images show, so the runs' ratings differ. Two runs
    # may still tie: the same few votes in the same shape fit to the same ratings.
    assert len({round(run.best.elo, 1) for run in report.runs if run.best}) >= 2

    engine = create_engine(db_url)
    async with create_session_factory(engine)() as s:
        statuses = set(await s.scalars(select(PipelineRun.status)))
    await engine.dispose()
    assert statuses == {RunStatus.completed}  # a later demo finds nothing left running


async def test_refuses_a_database_with_runs_it_did_not_start(tmp_path, db_url):
    engine = create_engine(db_url)
    async with create_session_factory(engine)() as s:
        await import_pipeline(s, REPO / "pipelines" / "cpu-demo")
        await create_run(s, "cpu-demo", "Real work", {}, RunSettings(), created_by="alice")
    await engine.dispose()
    with pytest.raises(DemoError, match="did not start"):
        await run_demo(options(tmp_path, db_url), out=io.StringIO())


async def test_a_demo_database_with_an_older_cpu_demo_takes_the_new_one(tmp_path, db_url):
    """After an upgrade the shipped pipeline differs from the one an earlier demo stored."""
    import shutil

    older = tmp_path / "older"
    shutil.copytree(REPO / "pipelines" / "cpu-demo", older)
    yaml_file = older / "pipeline.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("3368652", "255"))
    engine = create_engine(db_url)
    async with create_session_factory(engine)() as s:
        await import_pipeline(s, older)
    await engine.dispose()
    report = await run_demo(options(tmp_path, db_url, runs=1, votes_per_candidate=1),
                            out=io.StringIO())
    assert [run.counts[1] for run in report.runs] == [2]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no stray .env from the repo
    for name in ("DATABASE_URL", "DATA_DIR", "COMFY_URL", "TOP_K", "MAX_CHILDREN_PER_NODE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_demo_keeps_to_its_own_folder(env, capsys):
    assert main(["demo", "--runs", "1", "--k", "1", "--duration", "0.02"]) == 0
    out = capsys.readouterr().out
    assert "Morning gym shoot" in out and "1: 2  2: 4  3: 2" in out
    assert (env / "data" / "demo" / "demo.db").is_file()
    assert not (env / "data" / "comfy-curator.db").exists()  # the bot's database untouched
    assert list((env / "data" / "demo").glob("run-0001-*/final-contact-sheet.*"))


def test_cli_unreachable_comfy_is_one_clear_line(env, capsys):
    url = f"http://127.0.0.1:{closed_port()}"
    assert main(["demo", "--comfy-url", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"comfy-curator: ComfyUI at {url} is not reachable")
    assert "--comfy-url" in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_bad_option_is_one_clear_line(env, capsys):
    assert main(["demo", "--runs", "0"]) == 2
    assert capsys.readouterr().err == "comfy-curator: --runs must be at least 1, got 0.\n"


async def test_a_held_run_ends_the_demo_instead_of_hanging(tmp_path, db_url, monkeypatch):
    class Failing(SimulatedComfy):
        async def start(self) -> None:
            await super().start()
            for _ in range(3):
                self.fail_next_prompt("CUDA out of memory")

    monkeypatch.setattr(bot.demo, "SimulatedComfy", Failing)
    out = io.StringIO()
    report = await run_demo(options(tmp_path, db_url, runs=1, timeout=20), out=out)
    [run] = report.runs
    assert run.held and "3 jobs in a row failed at step 1" in run.held
    assert "CUDA out of memory" in out.getvalue()


async def test_the_live_view_fits_80_columns_one_line_per_run(tmp_path, db_url):
    engine = create_engine(db_url)
    demo = bot.demo.Demo(options(tmp_path, db_url), make_console(io.StringIO()),
                         create_session_factory(engine))
    width80 = Console(file=io.StringIO(), width=80, color_system=None)
    starting = render(width80, demo.view())
    assert "0 jobs done" in starting[0]
    assert sum("starting…" in line for line in starting) == 3

    demo.scheduler = Scheduler(demo.sessions, ["http://127.0.0.1:8188"], tmp_path)
    demo.comfy_url = "http://127.0.0.1:8188"
    for run_id, (name, _prompt) in enumerate(bot.demo.RUN_IDEAS, start=1):
        run = bot.demo.DemoRun(run_id, name + " at the far end of a long name", "f", 3, 3,
                               counts={1: 12, 2: 36, 3: 108}, votes=321, jobs_done=156,
                               approvals={1: 3, 2: 3}, status="voting on step 3")
        demo.runs.append(run)
    running = JobProgress(1234, 2, 3, demo.comfy_url, nodes=6)
    for node in ("1", "2", "3"):
        running.report(node, 1.0, 1.0)
    demo.scheduler.progress[demo.comfy_url] = running
    lines = render(width80, demo.view())
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if line.split()[:1] in (["1"], ["2"], ["3"])]
    assert len(rows) == 3  # one line per run, nothing wrapped
    assert all(" 12 36 108 " in row and " 1, 2 " in row and " 321 " in row and " 156 " in row
               for row in rows)
    assert "━━━━━━━━ job 1234 → 3" in rows[1] and rows[0].rstrip().endswith("voting on step 3")
    bar = bot.demo.Demo._now(demo.runs[1], [running]).spans
    assert [(s.end - s.start, s.style) for s in bar[:2]] == [(4, "bar.complete"), (4, "bar.back")]
    await engine.dispose()


def render(console: Console, renderable) -> list[str]:
    with console.capture() as captured:
        console.print(renderable)
    return captured.get().splitlines()


def test_each_prompt_gets_a_tint_of_its_own():
    tints = {bot.demo.tint(prompt) for _name, prompt in bot.demo.RUN_IDEAS}
    assert len(tints) == len(bot.demo.RUN_IDEAS)
    assert all(0 <= t <= 0xFFFFFF for t in tints)
    assert bot.demo.tint("a lighthouse") == bot.demo.tint("a lighthouse")
