"""/pipeline import from an attachment, /pipeline list and /status."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from unittest.mock import AsyncMock, MagicMock

import discord
import pytest
from sqlalchemy import func, select

from cogs.pipelines import Pipelines
from db.models import Pipeline
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
    assert replies(listing) == ["**cpu-demo**: base → refine → upscale (variables: tint=3368652)"]


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


def bomb(members: dict[str, int]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, size in members.items():
            archive.writestr(name, b"0" * size)
    return buffer.getvalue()


@pytest.mark.parametrize(("members", "words"), [
    ({"p/big.json": 60 * 2**20}, "unpacks to 60.0 MB; a pipeline zip may unpack to at most 50 MB"),
    ({f"p/{i}.json": 2 for i in range(300)},
     "holds 300 files; a pipeline zip may hold at most 100"),
])
async def test_a_zip_is_measured_before_it_is_unpacked(session_factory, tmp_path, members, words):
    cog = Pipelines(make_bot(session_factory, tmp_path))
    ui = fake_interaction(cog.bot)
    data = bomb(members)
    assert len(data) < 1_000_000
    await invoke(Pipelines.import_, cog, ui, file=attachment("p.zip", data))
    [refusal] = replies(ui)
    assert refusal == f"p.zip {words}." and "\n" not in refusal
    async with session_factory() as s:
        assert await s.scalar(select(func.count()).select_from(Pipeline)) == 0


@pytest.mark.parametrize(("members", "words"), [
    ({"p/pipeline.yaml": b"name: p\nsteps: [big.json]\n", "p/big.json": b"{" * 6 * 2**20},
     "step 1 “big”: big.json is 6.0 MB; a workflow may be at most 5 MB"),
    ({"p/a.json": b"{nope"}, "step 1 “a”: a.json: not valid JSON"),
    ({"p/notes.txt": b"hi"}, "p: no pipeline.yaml and no workflow .json files in this folder"),
])
async def test_a_refusal_names_files_as_the_zip_does_not_where_the_bot_unpacked_them(
    session_factory, tmp_path, members, words
):
    cog = Pipelines(make_bot(session_factory, tmp_path))
    ui = fake_interaction(cog.bot)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    await invoke(Pipelines.import_, cog, ui, file=attachment("p.zip", buffer.getvalue()))
    [refusal] = replies(ui)
    assert words in refusal and "/" not in refusal.split(":")[0]
    assert "tmp" not in refusal and "pipeline-" not in refusal


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


async def test_importing_a_pipeline_of_many_long_steps_replies_within_discords_limit(
    session_factory, tmp_path
):
    from tests.factories import write_pipeline

    folder = write_pipeline(tmp_path / "many", name="many",
                            step_names=[f"{'s' * 97}{i:03d}" for i in range(1, 31)])
    cog = Pipelines(make_bot(session_factory, tmp_path))
    interaction = fake_interaction(cog.bot)
    await invoke(Pipelines.import_, cog, interaction,
                 file=attachment("many.zip", zipped(folder, "many")))
    assert replies(interaction)[-1].startswith("Imported **many**")
    async with session_factory() as s:
        assert await s.scalar(select(func.count()).select_from(Pipeline)) == 1
