"""Pictures and texts for docs/discord.md, made by the bot's own code from a simulated run.

    .venv/bin/python docs/pictures.py [--out docs/pictures]

In a temporary folder: a migrated SQLite database, the simulated ComfyUI on loopback, the real
scheduler and the `cpu-demo` pipeline. The slash commands are the cogs' own callbacks and the
vote buttons their own items, called with a stand-in for Discord: an interaction that records
its answers, a run channel that records what the bot posts in it. Pair messages, notices,
contact sheets and the lineage text come from the functions the cogs use. Simulated curators
vote with a fixed taste (the candidate made first is the better one) and seeded noise, so two
runs of this script write the same files.

Writes into the output folder: `pair.*` (a pair as posted with its vote buttons), `gallery.*`
(the /gallery contact sheet), `approve.*` (the /approve preview sheet), `candidate.*` (one
candidate as the gallery menu opens it, shrunk) and `messages.md` (the texts the bot posts,
with those pictures).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import logging
import random
import re
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import AsyncMock, MagicMock

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the project's packages first
    sys.path.insert(0, str(ROOT))

import discord  # noqa: E402
from PIL import Image  # noqa: E402

from app.context import App  # noqa: E402
from app.news import run_news  # noqa: E402
from app.pairs import vote as cast_vote  # noqa: E402
from app.refits import ratings_settled  # noqa: E402
from bot.demo import tint  # noqa: E402
from bot.news import show_news  # noqa: E402
from bot.pairs import VoteButton, show_pairs  # noqa: E402
from bot.render import encode, to_rgb  # noqa: E402
from cogs.approvals import Approvals  # noqa: E402
from cogs.gallery import UPLOAD_MAX_BYTES, Gallery, detail_text, full_size  # noqa: E402
from cogs.notifications import Notifications  # noqa: E402
from cogs.pipelines import Pipelines  # noqa: E402
from cogs.runs import Runs  # noqa: E402
from cogs.voting import Voting  # noqa: E402
from comfy.simulator import SimulatedComfy  # noqa: E402
from db.engine import SessionFactory, create_engine, create_session_factory  # noqa: E402
from db.migrate import upgrade_database  # noqa: E402
from orchestration import pairing  # noqa: E402
from orchestration.approvals import ranked_candidates  # noqa: E402
from orchestration.errors import DuplicateVote  # noqa: E402
from orchestration.overview import candidate_detail, run_for_channel  # noqa: E402
from orchestration.pairing import next_pair  # noqa: E402
from orchestration.runs import RunSettings  # noqa: E402
from scheduler.events import SchedulerEvent  # noqa: E402
from scheduler.process import Scheduler  # noqa: E402

PIPELINE = ROOT / "pipelines" / "cpu-demo"
DEFAULT_OUT = Path(__file__).resolve().parent / "pictures"
PICTURE_MAX_BYTES = 400_000  # the pictures are committed: keep each one light
CANDIDATE_MAX_SIDE = 512
SHOWN_URL = "http://127.0.0.1:8188"  # the simulator listens on a free port; shown as ComfyUI's
GUILD_ID = 900000000000000001
CHANNEL_ID = 900000000000000002
ROLE_ID = 900000000000000003
CURATOR_ID = 900000000000000004
RUN_NAME = "Morning gym"
PROMPT = "a sunlit gym at dawn, chalk dust in the air"
NOISE = 0.1  # how often a simulated curator picks against their taste
VOTERS = ("p1", "p2", "p3", "p4", "p5")
FAST = {"retry_attempts": 2, "retry_wait": 0.01, "retry_max_wait": 0.02,
        "request_timeout": 5.0, "connect_timeout": 1.0, "poll_interval": 0.05,
        "idle_poll_interval": 1.0, "history_grace": 1.0}


# -- a stand-in for Discord ----------------------------------------------------------------------


@dataclass
class Sent:
    """One message the bot sent, or one edit of its answer."""

    content: str | None
    kwargs: dict[str, Any]
    id: int = 0

    def file(self) -> tuple[bytes, str]:
        """The attached picture's bytes and file name."""
        file: discord.File = self.kwargs["file"]
        file.fp.seek(0)
        return file.fp.read(), file.filename


class Followup:
    def __init__(self, ids: Iterator[int], channel_id: int) -> None:
        self.ids = ids
        self.channel = SimpleNamespace(id=channel_id)
        self.sent: list[Sent] = []
        self.posted = asyncio.Event()

    async def send(self, content: str | None = None, **kwargs: Any) -> Any:
        message = Sent(content, kwargs, next(self.ids))
        self.sent.append(message)
        self.posted.set()
        return SimpleNamespace(id=message.id, channel=self.channel)


class Response:
    def __init__(self) -> None:
        self.done = False
        self.sent: list[Sent] = []

    def is_done(self) -> bool:
        return self.done

    async def defer(self, **_: Any) -> None:
        self.done = True

    async def send_message(self, content: str | None = None, **kwargs: Any) -> None:
        self.done = True
        self.sent.append(Sent(content, kwargs))


class Interaction:
    """What the cogs read of a `discord.Interaction`; records every answer."""

    def __init__(self, bot: Any, user: Any, channel_id: int | None, message: Any = None) -> None:
        self.client = bot
        self.user = user
        self.guild = bot.guild
        self.channel_id = channel_id
        self.message = message
        self.command = None
        self.response = Response()
        self.followup = Followup(bot.ids, channel_id or CHANNEL_ID)
        self.edits: list[Sent] = []
        self.extras: dict[str, Any] = {}

    async def delete_original_response(self) -> None:
        pass  # only a refusal after a public deferral does this; nothing was shown yet

    async def edit_original_response(self, **kwargs: Any) -> None:
        self.edits.append(Sent(kwargs.get("content"), kwargs))

    def texts(self) -> list[str]:
        """Every text the person saw, in order."""
        return [m.content or "" for m in (*self.response.sent, *self.followup.sent, *self.edits)]


def run_channel(ids: Iterator[int], posts: list[Sent]) -> Any:
    """The run's channel: a `discord.TextChannel` to the cogs' isinstance checks; what the bot
    posts in it goes to `posts`."""
    channel = MagicMock(spec_set=discord.TextChannel)
    channel.id = CHANNEL_ID
    channel.name = "run-0001-morning-gym"
    channel.mention = f"<#{CHANNEL_ID}>"

    async def send(content: str | None = None, **kwargs: Any) -> Any:
        message = Sent(content, kwargs, next(ids))
        posts.append(message)
        return SimpleNamespace(id=message.id, channel=channel)

    channel.send = AsyncMock(side_effect=send)
    channel.edit = AsyncMock()
    channel.get_partial_message = MagicMock(return_value=SimpleNamespace(edit=AsyncMock()))
    return channel


def curator(name: str) -> Any:
    """A member with the curator role (the vote buttons check it is a `discord.Member`)."""
    member = MagicMock(spec_set=discord.Member)
    member.id = CURATOR_ID
    member.name = member.display_name = name
    member.mention = f"<@{CURATOR_ID}>"
    member.roles = [SimpleNamespace(id=ROLE_ID)]
    return member


def stand_in_bot(sessions: SessionFactory, scheduler: Scheduler, data_dir: Path) -> Any:
    """What the cogs read of `CuratorBot`: settings, its use cases, the scheduler, channels."""
    ids = itertools.count(900000000000001000)
    posts: list[Sent] = []
    channel = run_channel(ids, posts)

    async def create_text_channel(name: str, **_: Any) -> Any:
        channel.name = name
        return channel

    settings = SimpleNamespace(
        data_dir=data_dir,
        curator_role_id=ROLE_ID,
        run_category_id=None,
        run_settings=lambda: RunSettings(max_children=3),
    )
    return SimpleNamespace(
        settings=settings,
        app=App(sessions, wake=scheduler.wake, check=scheduler.problems_for_run),
        scheduler=scheduler,
        can_post=lambda cid: cid == CHANNEL_ID,
        guild_id=GUILD_ID,
        guild=SimpleNamespace(id=GUILD_ID, create_text_channel=create_text_channel),
        get_channel=lambda cid: channel if cid == CHANNEL_ID else None,
        ids=ids,
        posts=posts,
    )


async def call(command: Any, cog: Any, interaction: Interaction, **options: Any) -> Interaction:
    """A slash command's callback, as discord.py calls it once the command's checks passed."""
    await command.callback(cog, interaction, **options)
    return interaction


async def confirmed(command: Any, cog: Any, interaction: Interaction, **options: Any) -> None:
    """A command that asks for confirmation, with its Confirm button pressed."""
    task = asyncio.create_task(call(command, cog, interaction, **options))
    await interaction.followup.posted.wait()
    view = interaction.followup.sent[-1].kwargs["view"]
    confirm = next(b for b in view.children if b.item.label == "Confirm")
    await confirm.callback(Interaction(interaction.client, interaction.user, None))
    await task


# -- what the script gathers ---------------------------------------------------------------------


@dataclass
class Section:
    title: str
    note: str
    texts: list[str]
    picture: str | None = None  # the stem of its picture in `Gathered.pictures`


@dataclass
class Gathered:
    sections: list[Section] = field(default_factory=list)
    pictures: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # stem: (data, name)

    def add(self, title: str, note: str, *texts: str, picture: str | None = None) -> None:
        self.sections.append(Section(title, note, [t for t in texts if t], picture))


def embed_text(embed: discord.Embed) -> str:
    lines = [f"**{embed.title}**"]
    if embed.description:
        lines.append(embed.description)
    for f in embed.fields:
        lines += ["", f"**{f.name}**", str(f.value)]
    if embed.footer.text:
        lines += ["", embed.footer.text]
    return "\n".join(lines)


def controls(view: discord.ui.View) -> str:
    """The buttons and menus under a message, as text."""
    shown = []
    for child in view.children:
        item = child.item if isinstance(child, discord.ui.DynamicItem) else child
        if isinstance(item, discord.ui.Button):
            shown.append(f"[{item.label}]")
        elif isinstance(item, discord.ui.Select):
            options = "\n".join(f"  {o.label}" for o in item.options)
            shown.append(f"menu “{item.placeholder}”:\n{options}")
    return " ".join(shown)


def vote_buttons(message: Sent) -> dict[str, VoteButton]:
    view: discord.ui.View = message.kwargs["view"]
    return {str(c.item.label): c for c in view.children if isinstance(c, VoteButton)}


# -- the simulated curators ----------------------------------------------------------------------


def taste(a: int, b: int, rng: random.Random) -> tuple[int, int]:
    """(winner, loser): the candidate made first, except now and then."""
    better, worse = min(a, b), max(a, b)
    return (worse, better) if rng.random() < NOISE else (better, worse)


async def vote(app: App, run_id: int, rng: random.Random, most: int) -> int:
    """Votes of VOTERS on the pairs the pair policy offers them, until it offers none."""
    made = 0
    while made < most:
        offered = False
        for voter in VOTERS:
            async with app.sessions() as session:
                found = await next_pair(session, run_id, voter, rng=rng)
            if found.pair is None:
                continue
            offered = True
            winner, loser = taste(*found.pair, rng)
            with contextlib.suppress(DuplicateVote):
                await cast_vote(app, run_id, winner, loser, voter)
                made += 1
        if not offered:
            break
    await ratings_settled()
    return made


# -- the run -------------------------------------------------------------------------------------


async def simulate(folder: Path) -> Gathered:
    """A whole run, command by command; the texts and pictures the bot posted."""
    url = f"sqlite+aiosqlite:///{folder / 'curator.db'}"
    await upgrade_database(url)
    engine = create_engine(url)
    try:
        async with SimulatedComfy(duration=0.01, root=folder / "comfy", seed=1) as sim:
            return await _simulate(create_session_factory(engine), sim, folder / "data")
    finally:
        await engine.dispose()


async def _simulate(sessions: SessionFactory, sim: SimulatedComfy, data_dir: Path) -> Gathered:
    got = Gathered()
    # The pairs the cogs post take which side is A from the pair policy's own generator.
    pairing._RNG.seed(1)
    rng = random.Random(7)
    held: list[SchedulerEvent] = []

    async def on_event(event: SchedulerEvent) -> None:
        if event.kind == "run_held":
            held.append(event)

    scheduler = Scheduler(sessions, [sim.url], data_dir, rng=random.Random(1), tick_seconds=60,
                          down_retry_seconds=0.05, client_options=FAST, on_event=on_event)
    bot = stand_in_bot(sessions, scheduler, data_dir)
    posts: list[Sent] = bot.posts
    carol = curator("carol")
    runs, approvals, gallery = Runs(bot), Approvals(bot), Gallery(bot)
    pipelines, voting, notifications = Pipelines(bot), Voting(bot), Notifications(bot)

    def ask(channel_id: int | None = CHANNEL_ID, message: Any = None) -> Interaction:
        return Interaction(bot, carol, channel_id, message)

    # /pipeline import: a zip of the pipeline's folder, attached as a person would.
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(PIPELINE.iterdir()):
            z.write(path, f"cpu-demo/{path.name}")
    attachment = SimpleNamespace(filename="cpu-demo.zip", size=len(archive.getvalue()),
                                 read=AsyncMock(return_value=archive.getvalue()))
    asked = await call(Pipelines.import_, pipelines, ask(None), file=attachment)
    got.add("/pipeline import", "`/pipeline import file:cpu-demo.zip`, a private reply.",
            *asked.texts())
    asked = await call(Pipelines.list_, pipelines, ask(None))
    got.add("/pipeline list", "A private reply.", *asked.texts())

    asked = await call(Runs.start, runs, ask(None), pipeline="cpu-demo", name=RUN_NAME,
                       prompt=PROMPT, variables=f"tint={tint(PROMPT)}", n=3)
    got.add("/run start", f"`/run start pipeline:cpu-demo name:{RUN_NAME} prompt:… "
            f"variables:tint={tint(PROMPT)} n:3`, a "
            "public reply. The run's channel is created with it.", *asked.texts())
    async with sessions() as session:
        run_id = await run_for_channel(session, CHANNEL_ID)
    assert run_id is not None

    await scheduler.start()
    try:
        await scheduler.wait_idle()  # 3 base images, 9 refined: step 2 awaits approval
        await show_news(bot, await run_news(bot.app, run_id, bot.can_post, pairs=False))
        asked = await call(Runs.runs, runs, ask())
        runs_awaiting = embed_text(asked.followup.sent[-1].kwargs["embed"])

        # A few votes first, so the pairs posted show Elo and votes.
        await vote(bot.app, run_id, rng, most=8)
        before = len(posts)
        await show_pairs(bot, await run_news(bot.app, run_id, bot.can_post, notices=False))
        pairs = [m for m in posts[before:] if "view" in m.kwargs]
        got.pictures["pair"] = pairs[0].file()
        got.add("Pair message", "Posted in the run's channel: this line, the picture, and five "
                "buttons under it.", pairs[0].content or "", controls(pairs[0].kwargs["view"]),
                picture="pair")

        # carol taps the better one of the first pair and "Reject B" on the second.
        outcomes = []
        sim.pause()  # what a rejection makes grow comes after the taps, not during them
        for message, pick in ((pairs[0], ""), (pairs[1], "Reject B")):
            buttons = vote_buttons(message)
            if not pick:
                a, b = buttons["A better"].a, buttons["A better"].b
                pick = "A better" if a < b else "B better"
            tapped = ask(message=SimpleNamespace(id=message.id))
            await buttons[pick].callback(tapped)  # type: ignore[arg-type]
            outcomes.append(f"[{pick}] → " + "\n".join(tapped.texts()))
        sim.resume()
        await scheduler.wait_idle()

        await vote(bot.app, run_id, rng, most=300)
        asked = await call(Voting.vote, voting, ask())
        got.add("/vote", "A private reply; here three pairs already wait for an answer in the "
                "channel, so it points to them.", *asked.texts())

        # /approve step:2; ComfyUI then fails three prompts in a row: the run is put on hold.
        for _ in range(3):
            sim.fail_next_prompt("CUDA out of memory. Tried to allocate 2.00 GiB",
                                 exception_type="torch.OutOfMemoryError")
        asked = ask()
        await confirmed(Approvals.approve, approvals, asked, step=2)
        preview = asked.followup.sent[0]
        got.pictures["approve"] = preview.file()
        got.add("/approve", "`/approve step:2`: a private preview (this text, the contact sheet, "
                "[Confirm] [Cancel]), then the same message once confirmed.",
                preview.content or "", controls(preview.kwargs["view"]),
                *(e.content or "" for e in asked.edits), picture="approve")
        await scheduler.wait_idle()
        for event in held:
            await notifications.on_scheduler_event(event)
        asked = await call(Runs.runs, runs, ask())
        runs_held = embed_text(asked.followup.sent[-1].kwargs["embed"])

        # A step 2 pair still open from before the approval is tapped.
        late = next(m for m in reversed(posts) if "view" in m.kwargs and m not in pairs[:2]
                    and (m.content or "").startswith("Which is better? Step 2:"))
        tapped = ask(message=SimpleNamespace(id=late.id))
        await vote_buttons(late)["A better"].callback(tapped)  # type: ignore[arg-type]
        outcomes.append("[A better] → " + "\n".join(tapped.texts()))
        got.add("Vote outcome", "A tap replaces the pair's message with its outcome and who "
                "tapped; the buttons go. The last pair was tapped after step 2 was approved.",
                *outcomes)

        asked = await call(Runs.resume, runs, ask())
        got.add("/resume", "A private reply.", *asked.texts())
        await scheduler.wait_idle()  # the approved three grow: 9 at step 3, then no work

        await vote(bot.app, run_id, rng, most=20)
        await show_news(bot, await run_news(bot.app, run_id, bot.can_post, pairs=False))

        asked = await call(Gallery.gallery, gallery, ask(), step=2)
        sheet = asked.followup.sent[-1]
        got.pictures["gallery"] = sheet.file()
        got.add("/gallery", "`/gallery step:2` after the approval, a public reply: this text, "
                "the contact sheet, and the menu under it.", sheet.content or "",
                controls(sheet.kwargs["view"]), picture="gallery")

        async with sessions() as session:
            [best] = await ranked_candidates(session, run_id, 3, limit=1)
            detail = await candidate_detail(session, run_id, best.id)
        got.pictures["candidate"] = await asyncio.to_thread(
            full_size, data_dir / detail.image_path, UPLOAD_MAX_BYTES
        )
        got.add("Gallery menu", f"#{detail.id} picked in the menu under `/gallery step:3`: a "
                "private reply with this text and the image file (shrunk here).",
                detail_text(detail), picture="candidate")

        asked = await call(Pipelines.status, pipelines, ask())
        got.add("/status", f"A private reply (the simulated ComfyUI's address shown as "
                f"{SHOWN_URL}).", *(t.replace(sim.url, SHOWN_URL) for t in asked.texts()))
        asked = await call(Runs.runs, runs, ask())
        got.add("/runs", "A private embed: the run while step 2 awaited approval, while it was "
                "on hold, and once it had no work left.", runs_awaiting, runs_held,
                embed_text(asked.followup.sent[-1].kwargs["embed"]))

        asked = ask()
        await confirmed(Runs.complete, runs, asked)
        got.add("/complete", "A private question with [Confirm] [Cancel], then the answer.",
                *asked.texts())
    finally:
        await scheduler.stop()

    said = [m.content or "" for m in posts if "view" not in m.kwargs]
    got.add("In the run's channel", "What the bot posted by itself in the run's channel, in "
            "order (the pairs left out).", *said)
    return got


# -- output --------------------------------------------------------------------------------------


def shown(text: str) -> str:
    """Mentions as Discord shows them."""
    text = text.replace(f"<#{CHANNEL_ID}>", "#run-0001-morning-gym")
    text = text.replace(f"<@&{ROLE_ID}>", "@curator")
    return re.sub(r"<@(\d+)>", "@carol", text)


def messages_markdown(got: Gathered, files: dict[str, str]) -> str:
    """The texts, section by section, each section's picture (`files`: stem -> file name)
    before its texts."""
    lines = [
        "# What the bot posts",
        "",
        "Generated by `.venv/bin/python docs/pictures.py` from a simulated run of the `cpu-demo` "
        "pipeline: the bot's own code, with Discord stood in for. Do not edit; run the script "
        "again. Mentions are shown as Discord shows them (`#run-0001-morning-gym`, `@carol`).",
    ]
    for section in got.sections:
        lines += ["", f"## {section.title}", "", section.note]
        if section.picture is not None:
            lines += ["", f"![{section.title}]({files[section.picture]})"]
        for text in section.texts:
            lines += ["", "```text", shown(text), "```"]
    return "\n".join(lines) + "\n"


def light(data: bytes, name: str, stem: str, *, max_side: int | None = None) -> tuple[bytes, str]:
    """The picture as the bot made it when it is light enough, else re-encoded under the
    limit by the bot's own encoder (shrunk first when `max_side` asks for it)."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        big = max_side is not None and max(im.size) > max_side
        if not big and len(data) <= PICTURE_MAX_BYTES:
            return data, f"{stem}{Path(name).suffix.lower()}"
        img = to_rgb(im)
    if max_side is not None:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    rendered = encode(img, stem, PICTURE_MAX_BYTES)
    return rendered.data, rendered.filename


def write(got: Gathered, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    files: dict[str, str] = {}
    for stem, (data, name) in got.pictures.items():
        side = CANDIDATE_MAX_SIDE if stem == "candidate" else None
        data, filename = light(data, name, stem, max_side=side)
        for old in out.glob(f"{stem}.*"):  # a picture may change format from one run to the next
            old.unlink()
        path = out / filename
        path.write_bytes(data)
        written.append(path)
        files[stem] = filename
    path = out / "messages.md"
    path.write_text(messages_markdown(got, files), encoding="utf-8")
    written.append(path)
    return written


async def build(out: Path) -> list[Path]:
    """Simulate a run, then write the pictures and messages.md into `out`; the files written."""
    with tempfile.TemporaryDirectory(prefix="comfy-curator-pictures-") as tmp:
        got = await simulate(Path(tmp))
    return await asyncio.to_thread(write, got, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the folder to write into")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)  # the failures that hold the run are on purpose
    for path in asyncio.run(build(args.out)):
        print(f"{path} ({path.stat().st_size / 1000:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
