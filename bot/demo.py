"""`comfy-curator demo`: the whole loop without Discord or a GPU (docs/operations.md, "The demo").

A simulated ComfyUI on loopback (or a real one with `--comfy-url`), the real `Scheduler`, the
`cpu-demo` pipeline, a few runs, a simulated voter and a simulated curator who approves the
top k of each step once its candidates have enough votes. It ends with a summary and one
contact sheet per run.

Everything the demo makes lives in one folder of its own (`DATA_DIR/demo` unless
`--data-dir` is given): its SQLite database `demo.db`, the run folders and the contact sheets.
The real bot's database and images are never touched. The demo drives the same use cases the
Discord cogs do (app/): the pairs it votes on are the ones /vote offers, a run is done when /runs
would say it has no work left; it writes no SQL.
"""

from __future__ import annotations

import asyncio
import colorsys
import contextlib
import hashlib
import itertools
import json
import logging
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

import numpy as np
from PIL import Image
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from app.approvals import approve
from app.context import App, RunRef
from app.overview import gallery
from app.pairs import answer, offer_pair
from app.pipelines import store_pipeline
from app.refits import ratings_settled
from app.runs import complete_run, run_state, start_run
from bot.config import ConfigError, Settings
from bot.render import Badge, SheetItem, render_contact_sheet
from comfy.client import ComfyClient
from comfy.errors import ComfyError, ComfyUnavailable
from comfy.simulator import SimulatedComfy
from db.engine import SessionFactory, create_engine, create_session_factory
from db.migrate import upgrade_database
from orchestration.errors import Conflict, DuplicateVote
from orchestration.overview import GalleryItem
from orchestration.pair_posts import Action, PairSide
from orchestration.pipelines import PipelineSpec, load_pipeline_spec
from orchestration.runs import RunSettings, get_run
from orchestration.selection import runs_in_rotation
from orchestration.states import CandidateStatus
from orchestration.text import caption, plural
from pipelines import shipped
from scheduler.events import JobProgress, SchedulerEvent
from scheduler.process import Scheduler

log = logging.getLogger(__name__)

PIPELINE_DIR = shipped("cpu-demo")
CREATED_BY = "demo"  # marks the demo's runs, so a later demo can tidy up after an interrupted one
CURATOR = "demo-curator"
VOTERS = ("demo-voter-1", "demo-voter-2", "demo-voter-3")
WIN_PROBABILITY = 0.8  # how often the voter picks the candidate it truly prefers
SHEET_LIMIT = 24  # the most candidates one contact sheet shows
BAR_WIDTH = 8  # the live view's progress bar, in characters
# Nothing grows from the final step, so it is never approved and its candidates stay undecided.
FINAL_BADGE: Badge = "pending"
RUN_IDEAS = (
    ("Morning gym shoot", "a sunlit gym at dawn, chalk dust in the air"),
    ("Neon alley", "a rainy alley lit by neon signs, reflections on wet stone"),
    ("Desert bloom", "wildflowers after rain in a red desert, wide angle"),
)


class DemoError(ConfigError):
    """Something the person can fix (a bad option, ComfyUI unreachable); one line, exit 2."""


@dataclass(frozen=True)
class DemoOptions:
    folder: Path  # everything the demo writes: database, run folders, contact sheets
    database_url: str
    comfy_url: str | None = None  # None: a simulated ComfyUI on loopback
    runs: int = 3
    duration: float = 0.3  # seconds per simulated prompt
    seed: int = 1
    votes_per_candidate: int = 3
    timeout: float = 600.0
    tick_seconds: float = 30.0
    run_settings: RunSettings = field(default_factory=lambda: RunSettings(max_children=2))

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        data_dir: Path | None = None,
        database_url: str | None = None,
        comfy_url: str | None = None,
        runs: int = 3,
        n: int = 2,
        k: int | None = None,
        duration: float = 0.3,
        seed: int = 1,
        votes_per_candidate: int = 3,
        timeout: float = 600.0,
    ) -> DemoOptions:
        """The demo's options: its own folder under DATA_DIR unless one is given, gates on,
        the other run settings (budget, order) from the environment."""
        folder = data_dir if data_dir is not None else settings.data_dir / "demo"
        run_settings = replace(settings.run_settings(), max_children=n, gates=True,
                               top_k=k if k is not None else settings.top_k)
        options = cls(
            folder=folder,
            database_url=database_url or f"sqlite+aiosqlite:///{folder / 'demo.db'}",
            comfy_url=comfy_url,
            runs=runs,
            duration=duration,
            seed=seed,
            votes_per_candidate=votes_per_candidate,
            timeout=timeout,
            tick_seconds=settings.tick_seconds,
            run_settings=run_settings,
        )
        options.validate()
        return options

    def validate(self) -> None:
        for name, value in (
            ("--runs", self.runs),
            ("--n", self.run_settings.max_children),
            ("--k", self.run_settings.top_k),
            ("--votes", self.votes_per_candidate),
        ):
            if value < 1:
                raise DemoError(f"{name} must be at least 1, got {value}.")
        if self.duration <= 0 or self.timeout <= 0:
            raise DemoError("--duration and --timeout must be more than 0 seconds.")
        if self.comfy_url is not None and not self.comfy_url.startswith(("http://", "https://")):
            raise DemoError(f"--comfy-url must be an http:// or https:// URL, got "
                            f"{self.comfy_url!r}.")


@dataclass
class DemoRun:
    """What the demo knows of one of its runs; the live view reads it without a query."""

    run_id: int
    name: str
    folder: str
    steps: int
    top_k: int
    counts: dict[int, int] = field(default_factory=dict)  # active candidates per step
    votes: int = 0
    approvals: dict[int, int] = field(default_factory=dict)  # step -> k
    jobs_done: int = 0
    status: str = "growing"
    held: str | None = None
    done: bool = False
    best: GalleryItem | None = None
    sheet: Path | None = None

    @property
    def label(self) -> str:
        return f"run {self.run_id} “{self.name}”"

    def counts_text(self) -> str:
        return "  ".join(f"{s}: {self.counts.get(s, 0)}" for s in range(1, self.steps + 1))

    def approvals_text(self) -> str:
        return ", ".join(f"step {s} top {k}" for s, k in sorted(self.approvals.items())) or "-"


@dataclass(frozen=True)
class DemoReport:
    runs: list[DemoRun]
    folder: Path
    database_url: str
    jobs_done: int
    seconds: float


# -- the simulated people ----------------------------------------------------------------------


def tint(prompt: str) -> int:
    """The run variable `tint` of cpu-demo (an RGB number) for a prompt: a hue of its own per
    prompt. Core ComfyUI cannot draw text without a model, so this is how the prompt shows."""
    hue = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:2], "big") / 65536
    red, green, blue = (round(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.6, 0.8))
    return red << 16 | green << 8 | blue


def vividness(path: Path) -> float:
    """The voter's hidden taste: vivid colour and strong contrast, as the mean saturation plus
    the spread of brightness of the image (each 0–255).

    Deterministic: the images follow from the job seeds, which follow from `--seed`.
    """
    with Image.open(path) as image:
        small = image.convert("RGB").resize((64, 64), Image.Resampling.BOX)
    hsv = np.asarray(small.convert("HSV"), dtype=np.float64)
    return float(hsv[..., 1].mean() + hsv[..., 2].std())


class Voter:
    """Answers the pairs the bot offers (the pair policy of /vote): the more vivid candidate
    wins with probability WIN_PROBABILITY."""

    def __init__(self, folder: Path, rng: random.Random) -> None:
        self.folder = folder
        self.rng = rng
        self._quality: dict[int, float] = {}

    async def quality(self, side: PairSide) -> float:
        if side.id not in self._quality:
            path = self.folder / side.image_path
            self._quality[side.id] = await asyncio.to_thread(vividness, path)
        return self._quality[side.id]

    async def choose(self, a: PairSide, b: PairSide) -> Action:
        """"a" or "b": the truly better one wins four times in five."""
        qa, qb = await self.quality(a), await self.quality(b)
        better: Action = "a" if (qa, -a.id) >= (qb, -b.id) else "b"
        worse: Action = "b" if better == "a" else "a"
        return better if self.rng.random() < WIN_PROBABILITY else worse


# -- the demo ------------------------------------------------------------------------------------


def _versioned(spec: PipelineSpec) -> PipelineSpec:
    """The spec under a name that says which version of its workflows it is."""
    content = [[[step.name, step.workflow] for step in spec.steps], spec.defaults]
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:8]
    return replace(spec, name=f"{spec.name}-{digest}")


class Demo:
    """Drives runs to their end: votes and approvals while the scheduler keeps ComfyUI busy."""

    def __init__(self, options: DemoOptions, console: Console, sessions: SessionFactory) -> None:
        self.options = options
        self.console = console
        self.live = console.is_terminal
        self.sessions = sessions
        self.app = App(sessions, wake=self._wake)
        self.voter = Voter(options.folder, random.Random(options.seed))
        self.runs: list[DemoRun] = []
        self.scheduler: Scheduler | None = None
        self.comfy_url = ""
        self.started = time.monotonic()  # from the command's start: what the person waits
        self.phase: str | None = None  # what the demo does before its runs go, or at its end
        self._kick = asyncio.Event()

    def _wake(self) -> None:
        if self.scheduler is not None:
            self.scheduler.wake()

    # -- setup

    async def prepare(self) -> str:
        """Import the pipeline, retire leftovers of an interrupted demo, start the runs."""
        spec = await asyncio.to_thread(load_pipeline_spec, PIPELINE_DIR)
        try:
            imported = await store_pipeline(self.app, spec)
        except Conflict:  # an earlier version's demo stored another cpu-demo: it stays theirs
            imported = await store_pipeline(self.app, _versioned(spec))
            self._note(f"this version's pipeline is stored as “{imported.name}”: the demo's "
                       f"database holds an earlier “{spec.name}”")
        await self._retire_leftovers()
        settings = self.options.run_settings
        for index in range(self.options.runs):
            name, prompt = RUN_IDEAS[index % len(RUN_IDEAS)]
            if index >= len(RUN_IDEAS):
                name = f"{name} {index // len(RUN_IDEAS) + 1}"
            made = await start_run(self.app, imported.name, name,
                                   {"prompt": prompt, "tint": tint(prompt)},
                                   settings, created_by=CREATED_BY)
            self.runs.append(DemoRun(made.run_id, made.name, made.folder, made.steps,
                                     settings.top_k))
        return imported.steps[-1]

    async def _retire_leftovers(self) -> None:
        """Runs left running by an interrupted demo would compete for ComfyUI: complete them.
        Any other running run means this is not a demo database: refuse, changing nothing."""
        async with self.sessions() as session:
            running = [await get_run(session, rid) for rid in await runs_in_rotation(session)]
            foreign = [run for run in running if run.created_by != CREATED_BY]
        if foreign:
            raise DemoError(
                f"the database {self.options.database_url} has {len(foreign)} running run(s) "
                "that the demo did not start; give the demo a database of its own (leave out "
                "--database-url to use one in the demo's folder)."
            )
        for run in running:
            await complete_run(self.app, run.id)
            self._note(f"completed run {run.id} “{run.name}”, left over from an earlier demo",
                       notable=True)

    # -- events and output

    async def on_event(self, event: SchedulerEvent) -> None:
        run = next((r for r in self.runs if r.run_id == event.run_id), None)
        if event.kind == "job_succeeded" and run is not None and event.step is not None:
            run.jobs_done += 1
            run.counts[event.step] = run.counts.get(event.step, 0) + len(event.candidate_ids)
            ids = ", ".join(f"#{i}" for i in event.candidate_ids)
            self._note(f"{run.label}: job {event.job_id} made {ids} at step {event.step}  "
                       f"({run.counts_text()})")
        elif event.kind in ("job_failed", "run_held", "run_resumed"):
            where = run.label if run is not None else f"run {event.run_id}"
            self._note(f"{where}: {event.kind.replace('_', ' ')}: {event.message}", notable=True)
        else:
            self._note(f"worker {event.worker}: {event.message}", notable=True)
        self._kick.set()

    def _note(self, line: str, *, notable: bool = False) -> None:
        """Plain mode prints every line; the live view prints only the notable ones above it."""
        if notable or not self.live:
            elapsed = time.monotonic() - self.started
            self.console.print(f"[{elapsed:5.1f}s] {line}", markup=False, highlight=False)

    def starting(self, phase: str) -> None:
        """Say what the demo is doing before (and after) its runs, the moment it starts."""
        self.phase = f"{phase}…"
        self._note(f"{phase}…")

    def view(self) -> RenderableType:
        """The live table: one line per run, fit for an 80-column terminal; the running job's
        progress bar in its row."""
        done = sum(r.jobs_done for r in self.runs)
        up = self.scheduler.up.get(self.comfy_url) if self.scheduler else None
        state = {True: "up", False: "DOWN, retrying", None: "connecting"}[up]
        doing = self.phase or f"ComfyUI ({state}) {self.comfy_url}"
        header = Text(f"{time.monotonic() - self.started:5.1f} s · {done} jobs done · {doing}",
                      style="bold", no_wrap=True, overflow="ellipsis")
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False)
        for column, width in (("run", 18), ("per step", 9), ("approved", 8), ("votes", 5),
                              ("jobs", 4), ("now", 21)):
            table.add_column(column, no_wrap=True, overflow="ellipsis", min_width=min(width, 5),
                             max_width=width)
        progress = list(self.scheduler.progress.values()) if self.scheduler else []
        if not self.runs:  # not started yet: the runs to come
            for index in range(self.options.runs):
                table.add_row(f"- {RUN_IDEAS[index % len(RUN_IDEAS)][0]}", "-", "-", "-", "-",
                              "starting…")
        for run in self.runs:
            counts = " ".join(str(run.counts.get(s, 0)) for s in range(1, run.steps + 1))
            approved = ", ".join(str(s) for s in sorted(run.approvals)) or "-"
            table.add_row(f"{run.run_id} {run.name}", counts, approved, str(run.votes),
                          str(run.jobs_done), self._now(run, progress))
        return Group(header, table)

    @staticmethod
    def _now(run: DemoRun, progress: list[JobProgress]) -> Text:
        """The run's state, or its running job as a bar and where it goes, on one line."""
        mine = next((p for p in progress if p.run_id == run.run_id), None)
        if mine is None:
            return Text(run.status)
        filled = round(mine.fraction * BAR_WIDTH)
        line = Text()
        line.append("━" * filled, style="bar.complete")
        line.append("━" * (BAR_WIDTH - filled), style="bar.back")
        line.append(f" job {mine.job_id} → {mine.step}")
        return line

    # -- the loop

    async def drive(self) -> None:
        """Until every run is done: approve what awaits approval, finish what has no work."""
        while True:
            self._kick.clear()
            for run in self.runs:
                if not run.done:
                    await self._advance(run)
            if all(run.done for run in self.runs):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), 0.25)

    async def _advance(self, run: DemoRun) -> None:
        state = await run_state(self.app, run.run_id)  # what /runs shows of it
        run.counts = {s.step: s.candidates for s in state.steps}
        if state.held_reason:
            run.held, run.status, run.done = state.held_reason, "held", True
            await complete_run(self.app, run.run_id)  # the demo ends; nobody will /resume it
            return
        for step in (s.step for s in state.steps if s.awaiting_approval):
            run.status = f"voting on step {step}"
            await self._vote(run, step)
            await self._approve(run, step)
        if state.finished:
            await self._finish(run)

    async def _finish(self, run: DemoRun) -> None:
        """Vote on the final step, keep the best, complete the run as a curator would."""
        run.status = f"voting on step {run.steps}"
        await self._vote(run, run.steps)
        await ratings_settled()  # the stored ratings take in the last votes
        best = (await self._final(run, 1))[:1]
        run.best = best[0] if best else None
        await complete_run(self.app, run.run_id)
        run.status, run.done = "completed", True
        self._note(f"{run.label}: no work left ({run.counts_text()}); best final candidate "
                   + (f"#{run.best.id}, Elo {run.best.elo:.0f}" if run.best else "none"),
                   notable=True)

    async def _final(self, run: DemoRun, limit: int) -> list[GalleryItem]:
        """The best of the final step, as /gallery shows them."""
        shown = await gallery(self.app, RunRef(run.run_id), run.steps, 1)
        return [item for item in shown.page.items
                if item.status is CandidateStatus.active][:limit]

    async def _vote(self, run: DemoRun, step: int) -> None:
        """Answer the pairs the bot offers, as a curator tapping /vote would, until it has none
        (the ranking is settled) or `votes_per_candidate` votes per candidate of `step`."""
        made = 0
        limit = self.options.votes_per_candidate * max(2, run.counts.get(step, 0))
        idle = 0
        for voter in itertools.cycle(VOTERS):
            if made >= limit or idle == len(VOTERS):
                break
            offer = await offer_pair(self.app, RunRef(run.run_id), voter)
            if not offer.plan.posts:
                idle += 1
                continue
            idle = 0
            pair = offer.plan.posts[0]
            action = await self.voter.choose(pair.a, pair.b)
            try:
                await answer(self.app, run.run_id, action, pair.a.id, pair.b.id, voter, _nowhere)
            except DuplicateVote:
                continue
            made += 1
            run.votes += 1
        if made:
            self._note(f"{run.label}: {plural(made, 'vote')} at step {step}", notable=False)

    async def _approve(self, run: DemoRun, step: int) -> None:
        approved = await approve(self.app, run.run_id, step, run.top_k, CURATOR, _nowhere)
        result = approved.result
        run.approvals[step] = result.k
        run.status = "growing"
        top = ", ".join(f"#{c.id} (Elo {c.elo:.0f})" for c in result.advancing)
        self._note(f"{run.label}: approved step {step}, top {result.k}: {top}", notable=True)

    # -- the end

    async def write_sheets(self, final_step_name: str) -> None:
        await ratings_settled()
        for run in self.runs:
            ranked = await self._final(run, SHEET_LIMIT)
            items = [
                SheetItem(self.options.folder / c.image_path, rank,
                          caption(c.id, c.elo, c.votes), FINAL_BADGE)
                for rank, c in enumerate(ranked, start=1)
            ]
            title = f"{run.name}: step {run.steps} ({final_step_name}), best first"
            rendered = await asyncio.to_thread(render_contact_sheet, items, title=title)
            path = (self.options.folder / run.folder /
                    f"final-contact-sheet{Path(rendered.filename).suffix}")
            path.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(path.write_bytes, rendered.data)
            run.sheet = path

    def summary(self) -> Table:
        """What each run came to, narrow enough for 80 columns (its folder is printed below)."""
        table = Table(title="comfy-curator demo: summary")
        for column in ("run", "per step", "approved", "votes", "best final"):
            table.add_column(column)
        for run in self.runs:
            best = f"#{run.best.id}, Elo {run.best.elo:.0f}" if run.best else "-"
            if run.held:
                best = f"held: {run.held}"
            table.add_row(f"{run.run_id} {run.name}", run.counts_text(), run.approvals_text(),
                          str(run.votes), best)
        return table


def _nowhere(_channel_id: int) -> bool:
    """The demo has no Discord channel: news waits where it is."""
    return False


# -- entry point ---------------------------------------------------------------------------------


async def check_reachable(url: str) -> None:
    """Fail fast, in one line, when a real ComfyUI is not there."""
    try:
        async with ComfyClient(url, retry_attempts=1, connect_timeout=3.0,
                               request_timeout=5.0) as client:
            await client.system_stats()
    except ComfyUnavailable as err:
        raise DemoError(f"{err}. Start ComfyUI there, or leave out --comfy-url to use the "
                        "simulated ComfyUI.") from err
    except ComfyError as err:
        raise DemoError(f"{url} answered, but not like ComfyUI: {err}") from err


@contextlib.contextmanager
def _logs_above(console: Console) -> Iterator[None]:
    """While the live view runs, log warnings and errors through it, above the table (plain
    stream handlers would write through it and tear it)."""
    root = logging.getLogger()
    streams = [h for h in root.handlers
               if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    rich = RichHandler(console=console, show_path=False, level=max(logging.WARNING, root.level))
    for handler in streams:
        root.removeHandler(handler)
    root.addHandler(rich)
    try:
        yield
    finally:
        root.removeHandler(rich)
        for handler in streams:
            root.addHandler(handler)


def make_console(out: TextIO | None = None) -> Console:
    stream = out if out is not None else sys.stdout
    console = Console(file=stream, highlight=False)
    if not console.is_terminal:
        console = Console(file=stream, highlight=False, width=140)
    return console


async def _drive(demo: Demo, url: str) -> None:
    timeout = demo.options.timeout
    try:
        async with asyncio.timeout(timeout):
            await demo.drive()
    except TimeoutError as err:
        raise DemoError(f"the demo did not finish within {timeout:g} s; is ComfyUI at {url} "
                        "still up? (--timeout sets the limit)") from err


async def run_demo(options: DemoOptions, *, out: TextIO | None = None) -> DemoReport:
    """Run the whole demo; returns what happened (the CLI has printed it already)."""
    options.validate()
    console = make_console(out)
    if options.comfy_url is not None:
        await check_reachable(options.comfy_url)
    options.folder.mkdir(parents=True, exist_ok=True)
    engine = create_engine(options.database_url)
    demo = Demo(options, console, create_session_factory(engine))
    try:
        with (Live(console=console, get_renderable=demo.view, refresh_per_second=8)
              if demo.live else contextlib.nullcontext()):
            demo.starting("upgrading the database")
            await upgrade_database(options.database_url)
            async with contextlib.AsyncExitStack() as stack:
                url = options.comfy_url
                if url is None:
                    demo.starting("starting the simulated ComfyUI")
                    sim = await stack.enter_async_context(
                        SimulatedComfy(duration=options.duration, seed=options.seed))
                    url = sim.url
                report = await _run(demo, url.rstrip("/"), simulated=options.comfy_url is None)
    finally:
        await engine.dispose()
    _print_report(demo, report)
    return report


async def _run(demo: Demo, url: str, *, simulated: bool) -> DemoReport:
    options, console = demo.options, demo.console
    demo.starting("importing pipelines/cpu-demo and starting the runs")
    final_step_name = await demo.prepare()
    demo.comfy_url = url
    kind = "simulated ComfyUI" if simulated else "ComfyUI"
    runs = plural(len(demo.runs), "run")
    console.print(f"comfy-curator demo: {runs} of cpu-demo on {kind} at {url}; "
                  f"N = {options.run_settings.max_children}, k = {options.run_settings.top_k}; "
                  f"files in {options.folder}", markup=False)
    scheduler = Scheduler(demo.sessions, [url], options.folder, rng=random.Random(options.seed),
                          tick_seconds=options.tick_seconds, on_event=demo.on_event)
    demo.scheduler = scheduler
    demo.phase = None
    with _logs_above(console) if demo.live else contextlib.nullcontext():
        await scheduler.start()
        try:
            await _drive(demo, url)
        finally:
            await scheduler.stop()
    seconds = time.monotonic() - demo.started
    demo.starting("writing the contact sheets")
    await demo.write_sheets(final_step_name)
    demo.phase = "done"
    return DemoReport(demo.runs, options.folder, options.database_url, scheduler.jobs_done,
                      seconds)


def _print_report(demo: Demo, report: DemoReport) -> None:
    console = demo.console
    console.print(demo.summary())
    for run in demo.runs:
        console.print(f"contact sheet of {run.label}: {run.sheet}", markup=False)
    console.print(f"{report.jobs_done} jobs in {report.seconds:.1f} s; database "
                  f"{report.database_url}", markup=False)
