"""Fakes for the Discord boundary only, built with `spec_set` on discord.py's own classes so a
misspelt attribute fails the test. Everything behind them (database, orchestration, scheduler)
is real."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, MagicMock

import discord
from discord import app_commands

from bot.app import CuratorBot
from bot.config import Settings
from db.engine import SessionFactory
from orchestration.scheduler import Scheduler

CURATOR_ROLE = 4242
GUILD = 1111
_ids = itertools.count(10_000)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "discord_token": "token",
        "discord_guild_id": GUILD,
        "curator_role_id": CURATOR_ROLE,
        "comfy_url": "http://127.0.0.1:9",
        "data_dir": data_dir,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def make_bot(sessions: SessionFactory, data_dir: Path, **overrides: Any) -> CuratorBot:
    settings = make_settings(data_dir, **overrides)
    scheduler = Scheduler(sessions, settings.comfy_urls, data_dir)  # never started here
    return CuratorBot(settings, sessions, scheduler)


def fake_role(role_id: int) -> MagicMock:
    role = MagicMock(spec_set=discord.Role)
    role.id = role_id
    return role


def fake_member(*, curator: bool = True, name: str = "alice") -> MagicMock:
    member = MagicMock(spec_set=discord.Member)
    member.id = next(_ids)
    member.name = member.display_name = name
    member.mention = f"<@{member.id}>"
    member.roles = [fake_role(CURATOR_ROLE)] if curator else [fake_role(1)]
    return member


_posted_with: dict[int, dict[str, Any]] = {}


def fake_message(channel: MagicMock, **sent: Any) -> MagicMock:
    """A message the bot posted; `posted_with(message)` is what it was posted with."""
    message = MagicMock(spec_set=discord.Message)
    message.id = next(_ids)
    message.channel = channel
    message.content = sent.get("content")
    message.edit = AsyncMock()
    _posted_with[message.id] = sent
    return message


def posted_with(message: MagicMock) -> dict[str, Any]:
    """The content, file, view, ... a fake message was sent with."""
    return _posted_with[message.id]


def fake_text_channel(name: str = "general") -> MagicMock:
    """A channel that remembers what the bot posted in it (`channel.messages`)."""
    channel = MagicMock(spec_set=discord.TextChannel)
    channel.id = next(_ids)
    channel.name = name
    channel.mention = f"<#{channel.id}>"
    messages: list[MagicMock] = []

    async def send(content: str | None = None, **kwargs: Any) -> MagicMock:
        message = fake_message(channel, content=content, **kwargs)
        messages.append(message)
        return message

    def partial(message_id: int) -> MagicMock:
        return next(m for m in messages if m.id == message_id)

    channel.send = AsyncMock(side_effect=send)
    channel.send.messages = messages
    channel.get_partial_message = MagicMock(side_effect=partial)
    channel.edit = AsyncMock()
    return channel


def fake_guild() -> MagicMock:
    guild = MagicMock(spec_set=discord.Guild)
    guild.id = GUILD
    created: list[MagicMock] = []

    async def create_text_channel(name: str, **_: Any) -> MagicMock:
        channel = fake_text_channel(name)
        created.append(channel)
        return channel

    guild.create_text_channel = AsyncMock(side_effect=create_text_channel)
    guild.create_text_channel.created = created
    guild.get_channel = MagicMock(return_value=None)
    return guild


def created_channels(interaction: MagicMock) -> list[MagicMock]:
    return list(interaction.guild.create_text_channel.created)


class FakeResponse:
    """Records what the handler answered; knows whether it already answered, like Discord."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.deferred = False
        self.deferred_with: dict[str, Any] = {}  # e.g. ephemeral=True, thinking=True
        self.answered = asyncio.Event()

    def is_done(self) -> bool:
        return self.deferred or bool(self.sent)

    async def send_message(self, content: str | None = None, **kwargs: Any) -> None:
        assert not self.is_done(), "answered twice"
        self.sent.append({"content": content, **kwargs})
        self.answered.set()

    async def edit_message(self, **kwargs: Any) -> None:
        assert not self.is_done(), "answered twice"
        self.sent.append({"edited": True, **kwargs})

    async def defer(self, **kwargs: Any) -> None:
        assert not self.is_done(), "deferred after answering"
        self.deferred = True
        self.deferred_with = kwargs


def fake_interaction(
    bot: CuratorBot,
    *,
    user: MagicMock | None = None,
    channel_id: int | None = None,
    message: MagicMock | None = None,
) -> MagicMock:
    """An interaction from a slash command, or from a button of `message`."""
    interaction = MagicMock(spec_set=discord.Interaction)
    interaction.client = bot
    interaction.user = user or fake_member()
    interaction.guild = fake_guild()
    interaction.channel_id = channel_id
    interaction.message = message
    interaction.command = None
    interaction.response = FakeResponse()
    interaction.followup = MagicMock(spec_set=discord.Webhook)
    followed = asyncio.Event()
    here = fake_text_channel("here")
    here.id = channel_id if channel_id is not None else here.id

    async def follow_up(content: str | None = None, **kwargs: Any) -> MagicMock:
        followed.set()
        return fake_message(here, content=content, **kwargs)

    interaction.followup.send = AsyncMock(side_effect=follow_up)
    interaction.followup.send.event = followed
    interaction.edit_original_response = AsyncMock()
    interaction.delete_original_response = AsyncMock()
    interaction.extras = {}
    return interaction


async def invoke(
    command: app_commands.Command[Any, Any, Any], cog: Any, interaction: MagicMock, **kwargs: Any
) -> None:
    """Run a command as discord.py would: its checks, then the callback, errors to the tree."""
    bot: CuratorBot = interaction.client
    try:
        for check in command.checks:
            await discord.utils.maybe_coroutine(check, interaction)
        await command.callback(cog, interaction, **kwargs)
    except app_commands.AppCommandError as err:
        await bot.tree.on_error(interaction, err)
    except Exception as err:  # discord.py wraps what a callback raises
        await bot.tree.on_error(interaction, app_commands.CommandInvokeError(command, err))


def replies(interaction: MagicMock) -> list[str]:
    """Every text the person saw, in order."""
    texts = [m.get("content") or "" for m in interaction.response.sent]
    for call in interaction.followup.send.await_args_list:
        texts.append(call.args[0] if call.args else call.kwargs.get("content") or "")
    return texts


async def followed_up(interaction: MagicMock) -> None:
    """Wait for the handler's first follow-up message (e.g. a preview awaiting a button)."""
    async with asyncio.timeout(5):
        await interaction.followup.send.event.wait()


async def confirmed(interaction: MagicMock, handler: Coroutine[Any, Any, None]) -> None:
    """Run a handler that asks for a confirmation, press Confirm once it is on screen, and wait
    for the handler to finish."""
    task = asyncio.create_task(handler)
    await followed_up(interaction)
    view = interaction.followup.send.await_args.kwargs["view"]
    view.answer = True
    view.stop()
    await task
