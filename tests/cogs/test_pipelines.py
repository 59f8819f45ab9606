"""/pipeline import from an attachment, /pipeline list and /status."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from unittest.mock import AsyncMock, MagicMock

import discord

from cogs.pipelines import Pipelines
from tests.helpers import fake_interaction, fake_member, invoke, make_bot, replies

REPO = Path(__file__).resolve().parents[2]


def attachment(filename: str, data: bytes) -> MagicMock:
    file = MagicMock(spec_set=discord.Attachment)
    file.filename, file.size = filename, len(data)
    file.read = AsyncMock(return_value=data)
    return file


def zipped(folder: Path, inside: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in folder.iterdir():
            archive.write(path, f"{inside}/{path.name}")
    return buffer.getvalue()


async def test_import_a_zipped_folder_then_list(session_factory, tmp_path):
    cog = Pipelines(make_bot(session_factory, tmp_path))
    interaction = fake_interaction(cog.bot)
    data = zipped(REPO / "pipelines" / "cpu-demo", "cpu-demo")
    await invoke(Pipelines.import_, cog, interaction, file=attachment("cpu-demo.zip", data))
    assert "Imported **cpu-demo**: base → refine → upscale" in replies(interaction)[-1]
    listing = fake_interaction(cog.bot)
    await invoke(Pipelines.list_, cog, listing)
    assert replies(listing) == ["**cpu-demo**: base → refine → upscale (variables: none)"]


async def test_import_refusals(session_factory, tmp_path):
    cog = Pipelines(make_bot(session_factory, tmp_path))
    ui = fake_interaction(cog.bot)
    await invoke(Pipelines.import_, cog, ui,
                 file=attachment("flow.json", b'{"nodes": [], "links": []}'))
    assert "Export (API)" in replies(ui)[-1]
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../../escape.json", "{}")
    escape = fake_interaction(cog.bot)
    await invoke(Pipelines.import_, cog, escape, file=attachment("x.zip", evil.getvalue()))
    assert "outside itself" in replies(escape)[-1]
    stranger = fake_interaction(cog.bot, user=fake_member(curator=False))
    await invoke(Pipelines.import_, cog, stranger, file=attachment("a.json", b"{}"))
    assert "role" in replies(stranger)[0]
    listing = fake_interaction(cog.bot)
    await invoke(Pipelines.list_, cog, listing)
    assert "No pipelines yet" in replies(listing)[0]


async def test_status_names_an_unhealthy_worker_and_what_it_said(session_factory, tmp_path):
    cog = Pipelines(make_bot(session_factory, tmp_path))
    [url] = cog.bot.scheduler.workers
    cog.bot.scheduler.up[url] = True
    said = f"ComfyUI at {url} answers, but GET /history/p1 failed: HTTP 500: boom"
    cog.bot.scheduler.unhealthy[url] = said
    interaction = fake_interaction(cog.bot)
    await invoke(Pipelines.status, cog, interaction)
    assert f"**{url}**: UNHEALTHY ({said}), idle" in replies(interaction)[0]


async def test_status_before_the_scheduler_checked_workers(session_factory, tmp_path):
    cog = Pipelines(make_bot(session_factory, tmp_path))
    interaction = fake_interaction(cog.bot)
    await invoke(Pipelines.status, cog, interaction)
    text = replies(interaction)[0]
    assert "http://127.0.0.1:9**: not checked yet, idle" in text
    assert "Runs with work: none" in text
