"""The bot object: its cogs load, and the error boundary answers every failure once."""

from __future__ import annotations

import logging

from discord import app_commands

from bot.app import COGS, UNEXPECTED
from orchestration.errors import Conflict
from tests.helpers import fake_interaction, make_bot, replies


async def test_cogs_load_and_register_commands(session_factory, tmp_path):
    bot = make_bot(session_factory, tmp_path)
    for extension in COGS:
        await bot.load_extension(extension)
    names = {c.qualified_name for c in bot.tree.walk_commands()}
    assert {"runs", "run start", "complete", "resume", "approve", "gallery", "pipeline import",
            "pipeline list", "status"} <= names


async def test_error_boundary(session_factory, tmp_path, caplog):
    bot = make_bot(session_factory, tmp_path)
    refused = fake_interaction(bot)
    cmd = app_commands.Command(name="x", description="x", callback=_noop)
    await bot.tree.on_error(refused, app_commands.CommandInvokeError(cmd, Conflict("No.")))
    assert replies(refused) == ["No."] and refused.response.sent[0]["ephemeral"]

    crashed = fake_interaction(bot)
    await crashed.response.defer()  # answered already: the message goes as a follow-up
    with caplog.at_level(logging.ERROR):
        await bot.tree.on_error(crashed, app_commands.CommandInvokeError(cmd, KeyError("k")))
    assert replies(crashed) == [UNEXPECTED]
    assert any(r.exc_info and isinstance(r.exc_info[1], KeyError) for r in caplog.records)


async def _noop(interaction) -> None:  # pragma: no cover - never called
    return None


async def test_a_refusal_longer_than_discord_takes_is_cut(session_factory, tmp_path):
    bot = make_bot(session_factory, tmp_path)
    refused = fake_interaction(bot)
    cmd = app_commands.Command(name="x", description="x", callback=_noop)
    long = "No ComfyUI can run it:\n" + "\n".join(f"- problem {i}" for i in range(400))
    await bot.tree.on_error(refused, app_commands.CommandInvokeError(cmd, Conflict(long)))
    [said] = replies(refused)
    assert said.startswith("No ComfyUI can run it:") and len(said) == 2000 and said[-1] == "…"
