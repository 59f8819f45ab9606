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

from app.news import run_news
from bot.app import CuratorBot
from bot.config import Settings
from bot.pairs import show_pairs
from db.engine import SessionFactory
from orchestration.pair_posts import PairPlan
from scheduler.process import Scheduler
from tests import discord_rules as rules

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
_ephemeral: set[int] = set()


def _rows(view: discord.ui.View | None) -> list[discord.ActionRow]:
    return [discord.ActionRow(row) for row in view.to_components()] if view is not None else []


def _edited(message: MagicMock | None, kwargs: dict[str, Any]) -> None:
    """What Discord keeps of an edit: the new text and the new components."""
    rules.check_message(kwargs, editing=True)
    if message is None:
        return
    if "content" in kwargs:
        message.content = kwargs["content"]
    if "view" in kwargs:
        message.components = _rows(kwargs["view"])


def fake_message(channel: MagicMock, **sent: Any) -> MagicMock:
    """A message the bot posted; `posted_with(message)` is what it was posted with, its
    `content` and `components` what it shows now. An ephemeral one can be edited only through
    its interaction, as in Discord."""
    message = MagicMock(spec_set=discord.Message)
    message.id = next(_ids)
    message.channel = channel
    message.content = sent.get("content")
    message.components = _rows(sent.get("view"))

    async def edit(**kwargs: Any) -> None:
        _edited(message, kwargs)

    message.edit = AsyncMock(side_effect=edit)
    _posted_with[message.id] = sent
    if sent.get("ephemeral"):
        _ephemeral.add(message.id)
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
        rules.check_message({"content": content, **kwargs})
        message = fake_message(channel, content=content, **kwargs)
        messages.append(message)
        return message

    def partial(message_id: int) -> MagicMock:
        found = next((m for m in messages if m.id == message_id), None)
        if found is not None:
            return found
        unknown = MagicMock(spec_set=discord.PartialMessage)
        unknown.id = message_id

        async def refused(**_: Any) -> None:
            if message_id in _ephemeral:
                raise rules.refuse(
                    "an ephemeral message edited through its channel; only its interaction "
                    "can reach it", rules.EPHEMERAL, status=404, code=10008,
                )
            raise rules.refuse("Unknown Message", rules.MESSAGE, status=404, code=10008)

        unknown.edit = AsyncMock(side_effect=refused)
        return unknown

    async def edit(**kwargs: Any) -> None:
        rules.check_channel(kwargs.get("name"), kwargs.get("topic"))

    channel.send = AsyncMock(side_effect=send)
    channel.send.messages = messages
    channel.get_partial_message = MagicMock(side_effect=partial)
    channel.edit = AsyncMock(side_effect=edit)
    return channel


def fake_guild() -> MagicMock:
    guild = MagicMock(spec_set=discord.Guild)
    guild.id = GUILD
    created: list[MagicMock] = []

    async def create_text_channel(name: str, **kwargs: Any) -> MagicMock:
        rules.check_channel(name, kwargs.get("topic"))
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
    """Records what the handler answered; refuses, like Discord, a second answer, an answer
    after 3 s, and a message over its limits."""

    def __init__(self, message: MagicMock | None = None) -> None:
        self.message = message
        self.sent: list[dict[str, Any]] = []
        self.deferred = False
        self.deferred_with: dict[str, Any] = {}  # e.g. ephemeral=True, thinking=True
        self.answered = asyncio.Event()
        self.created = asyncio.get_running_loop().time()
        self.answered_at: float | None = None

    def is_done(self) -> bool:
        return self.deferred or bool(self.sent)

    def arrived(self) -> None:
        """The interaction reaches its handler now: Discord's 3 s count from here, not from when
        the test built it (the test may set up slowly on a busy machine)."""
        if not self.is_done():
            self.created = asyncio.get_running_loop().time()

    def _answer(self) -> None:
        if self.is_done():
            raise rules.refuse(
                "Interaction has already been acknowledged", rules.RESPONDING, code=40060
            )
        now = asyncio.get_running_loop().time()
        if now - self.created > rules.RESPONSE_WITHIN_S:
            raise rules.refuse(
                f"first answer after {now - self.created:.1f} s; Discord waits 3 s",
                rules.RESPONDING, status=404, code=10062,
            )
        self.answered_at = now

    async def send_message(self, content: str | None = None, **kwargs: Any) -> None:
        self._answer()
        rules.check_message({"content": content, **kwargs})
        self.sent.append({"content": content, **kwargs})
        self.answered.set()

    async def edit_message(self, **kwargs: Any) -> None:
        self._answer()
        _edited(self.message, kwargs)
        self.sent.append({"edited": True, **kwargs})

    async def defer(self, **kwargs: Any) -> None:
        self._answer()
        self.deferred = True
        self.deferred_with = kwargs

    async def autocomplete(self, choices: list[Any]) -> None:
        self._answer()
        for rule in rules.choice_problems(choices):
            raise rules.refuse(rule, rules.AUTOCOMPLETE)
        self.sent.append({"choices": choices})

    def token_check(self, what: str) -> None:
        """Follow-ups and edits of the original answer: only after it, within 15 minutes."""
        if self.answered_at is None:
            raise rules.refuse(
                f"{what} before the interaction was answered", rules.FOLLOWUPS,
                status=404, code=10015,
            )
        if asyncio.get_running_loop().time() - self.answered_at > rules.TOKEN_VALID_S:
            raise rules.refuse(f"{what} after the token expired", rules.FOLLOWUPS, status=401)


def fake_interaction(
    bot: CuratorBot,
    *,
    user: MagicMock | None = None,
    channel_id: int | None = None,
    message: MagicMock | None = None,
    custom_id: str | None = None,
) -> MagicMock:
    """An interaction from a slash command, or from a component (`custom_id`) of `message`."""
    interaction = MagicMock(spec_set=discord.Interaction)
    interaction.client = bot
    interaction.user = user or fake_member()
    interaction.guild = fake_guild()
    interaction.channel_id = channel_id
    interaction.message = message
    interaction.command = None
    interaction.type = (
        discord.InteractionType.component if message is not None
        else discord.InteractionType.application_command
    )
    interaction.data = {"custom_id": custom_id, "component_type": 2} if custom_id else {}
    response = FakeResponse(message)
    interaction.response = response
    interaction.followup = MagicMock(spec_set=discord.Webhook)
    followed = asyncio.Event()
    here = fake_text_channel("here")
    here.id = channel_id if channel_id is not None else here.id
    ours: list[MagicMock] = []

    async def follow_up(content: str | None = None, **kwargs: Any) -> MagicMock:
        response.token_check("a follow-up")
        rules.check_message({"content": content, **kwargs})
        followed.set()
        sent = fake_message(here, content=content, **kwargs)
        ours.append(sent)
        return sent

    async def edit_followup(message_id: int, **kwargs: Any) -> None:
        response.token_check("an edit of a follow-up")
        found = next((m for m in ours if m.id == message_id), None)
        if found is None:
            raise rules.refuse("Unknown Message", rules.FOLLOWUPS, status=404, code=10008)
        _edited(found, kwargs)

    async def edit_original(**kwargs: Any) -> None:
        response.token_check("an edit of the original answer")
        _edited(message, kwargs)  # a component's original answer is the message it is on

    async def delete_original() -> None:
        response.token_check("a deletion of the original answer")

    interaction.followup.send = AsyncMock(side_effect=follow_up)
    interaction.followup.send.event = followed
    interaction.followup.send.messages = ours
    interaction.followup.edit_message = AsyncMock(side_effect=edit_followup)
    interaction.edit_original_response = AsyncMock(side_effect=edit_original)
    interaction.delete_original_response = AsyncMock(side_effect=delete_original)
    interaction.extras = {}
    return interaction


async def tap(
    bot: CuratorBot, message: MagicMock, custom_id: str, user: MagicMock | None = None
) -> MagicMock:
    """A tap on a component of `message` as discord.py dispatches it: the bot's
    `on_interaction`, then the dynamic item whose template matches, but only when the message
    still carries that component (discord.py's ViewStore drops other taps silently)."""
    from bot.pairs import VoteButton
    from bot.questions import ConfirmButton
    from cogs.gallery import CandidateSelect

    interaction = fake_interaction(bot, user=user, message=message, custom_id=custom_id)
    interaction.response.arrived()
    await bot.on_interaction(interaction)
    live = {c.custom_id for row in message.components for c in row.children}
    if custom_id not in live:
        return interaction
    for factory in (VoteButton, ConfirmButton, CandidateSelect):
        match = factory.__discord_ui_compiled_template__.fullmatch(custom_id)
        if match is not None:
            item = await factory.from_custom_id(interaction, None, match)  # type: ignore[arg-type]
            await item.callback(interaction)
            return interaction
    raise AssertionError(f"no handler for {custom_id}")


async def invoke(
    command: app_commands.Command[Any, Any, Any], cog: Any, interaction: MagicMock, **kwargs: Any
) -> None:
    """Run a command as discord.py would: its checks, then the callback, errors to the tree."""
    bot: CuratorBot = interaction.client
    interaction.response.arrived()
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
    question = interaction.followup.send.await_args
    await press(interaction.client, question.kwargs["view"], "Confirm", interaction.user,
                question_message(question))
    await task


def question_message(sent: Any) -> MagicMock:
    return fake_message(fake_text_channel("here"), content=sent.args[0] if sent.args else None,
                        **sent.kwargs)


async def press(
    bot: CuratorBot, view: discord.ui.View, label: str, user: MagicMock, message: MagicMock
) -> MagicMock:
    """Tap the button labelled `label` of `view` as `user`; returns the tap's interaction."""
    button = next(i for i in view.children if getattr(i, "item", i).label == label)
    tap = fake_interaction(bot, user=user, message=message)
    await button.callback(tap)
    return tap


async def post_pairs(bot: CuratorBot, run_id: int) -> PairPlan | None:
    """What a job's arrival does to the pairs of the run's channel (its notices left out)."""
    news = await run_news(bot.app, run_id, bot.can_post, notices=False)
    await show_pairs(bot, news)
    return news.pairs
