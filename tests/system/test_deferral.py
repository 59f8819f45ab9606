"""Every interaction handler answers Discord (defers or replies) before it touches the database
or anything slow, so it never misses the 3-second window, however busy the GPU box is."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any
from unittest.mock import AsyncMock, MagicMock

import discord
import pytest

from bot.app import CuratorBot
from bot.pairs import VoteButton, custom_id
from cogs.approvals import Approvals
from cogs.gallery import CandidateSelect, Gallery
from cogs.pipelines import Pipelines
from cogs.runs import Runs
from cogs.voting import Voting
from tests.committed import hold_run
from tests.factories import add_candidate, make_pipeline, make_run
from tests.helpers import fake_interaction, invoke, make_bot


def watch_sessions(bot: CuratorBot, interaction: MagicMock) -> list[bool]:
    """Record, for each database session the handler opens, whether it had answered by then."""
    real = bot.app.sessions
    answered_then: list[bool] = []

    def sessions() -> Any:
        answered_then.append(interaction.response.is_done())
        return real()

    bot.app = replace(bot.app, sessions=sessions)  # type: ignore[arg-type]
    return answered_then


async def handled(coro: Any, interaction: MagicMock) -> None:
    """Run a handler until it finished or answered and is waiting for a person (a confirm)."""
    task = asyncio.create_task(coro)
    followed = asyncio.create_task(interaction.followup.send.event.wait())
    await asyncio.wait({task, followed}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, followed):
        pending.cancel()  # e.g. waiting for a confirm button nobody presses here
    await asyncio.gather(task, followed, return_exceptions=True)


@pytest.fixture
async def world(session_factory, tmp_path):
    async with session_factory() as s:
        await make_pipeline(s, tmp_path)
        run = await make_run(s)
        p = await add_candidate(s, run, 1)
        a, b = await add_candidate(s, run, 2, p), await add_candidate(s, run, 2, p)
        await hold_run(s, run, "checkpoint missing")
        await s.commit()
    return run, a, b


def attachment() -> MagicMock:
    file = MagicMock(spec_set=discord.Attachment)
    file.filename, file.size = "notes.txt", 5
    file.read = AsyncMock(return_value=b"hello")
    return file


COMMANDS: list[tuple[type, str, dict[str, Any]]] = [
    (Runs, "runs", {}),
    (Runs, "start", {"pipeline": "test-pipeline", "name": "x", "prompt": "a cat"}),
    (Runs, "complete", {"run": 1}),
    (Runs, "resume", {"run": 1}),
    (Gallery, "gallery", {"run": 1}),
    (Approvals, "approve", {"step": 2, "k": 1, "run": 1}),
    (Pipelines, "list_", {}),
    (Pipelines, "import_", {"file": "attachment"}),
    (Pipelines, "status", {}),
    (Voting, "vote", {"run": 1}),
]


@pytest.mark.parametrize(("cog_class", "name", "kwargs"), COMMANDS,
                         ids=[f"{c.__name__}.{n}" for c, n, _ in COMMANDS])
async def test_commands_answer_before_any_database_work(
    world, session_factory, tmp_path, cog_class, name, kwargs
):
    bot = make_bot(session_factory, tmp_path)
    cog = cog_class(bot)
    interaction = fake_interaction(bot)
    answered_then = watch_sessions(bot, interaction)
    args = {k: attachment() if v == "attachment" else v for k, v in kwargs.items()}
    await handled(invoke(getattr(cog_class, name), cog, interaction, **args), interaction)
    assert interaction.response.is_done()
    assert all(answered_then), f"/{name} opened a session before answering"


async def test_buttons_and_menus_answer_before_any_database_work(world, session_factory, tmp_path):
    run, a, b = world
    bot = make_bot(session_factory, tmp_path)
    for action in ("a", "ra", "s"):
        interaction = fake_interaction(bot)
        answered_then = watch_sessions(bot, interaction)
        match = VoteButton.__discord_ui_compiled_template__.fullmatch(custom_id(action, run, a, b))
        assert match is not None
        button = await VoteButton.from_custom_id(interaction, None, match)  # type: ignore[arg-type]
        await handled(button.callback(interaction), interaction)
        assert interaction.response.is_done() and answered_then and all(answered_then)
        bot.app = replace(bot.app, sessions=session_factory)

    menu = CandidateSelect(run, [discord.SelectOption(label=f"#{a}", value=str(a))])
    menu.item._values = [str(a)]  # what Discord sets when a person picks an option
    interaction = fake_interaction(bot)
    answered_then = watch_sessions(bot, interaction)
    await handled(menu.callback(interaction), interaction)
    assert interaction.response.is_done() and answered_then and all(answered_then)
