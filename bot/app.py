"""The Discord bot: start-up, the one error boundary, and shutdown."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import discord
from discord import app_commands
from discord.ext import commands

from app.context import App
from app.refits import finish_refits, refit_stale
from bot.config import Settings
from bot.questions import ConfirmButton
from db.engine import SessionFactory
from orchestration.busy import BUSY, is_busy
from orchestration.errors import DatabaseBusy, DomainError
from orchestration.text import clip
from scheduler.events import SchedulerEvent
from scheduler.process import Scheduler

log = logging.getLogger(__name__)

COGS = (
    "cogs.runs",
    "cogs.approvals",
    "cogs.pipelines",
    "cogs.gallery",
    "cogs.notifications",
    "cogs.voting",
)

UNEXPECTED = "Something went wrong on the bot's side; it is in the log. Nothing was changed."

_CHANGED = "comfy-curator:changed"


def changed(interaction: discord.Interaction[Any], what: str) -> None:
    """Note what this interaction has committed (“run #3 “Gym” was started”), so that an error
    after it is reported as what it is, never as “nothing was changed”."""
    interaction.extras.setdefault(_CHANGED, []).append(what)


def unexpected_text(interaction: discord.Interaction[Any]) -> str:
    done = interaction.extras.get(_CHANGED)
    if not done:
        return UNEXPECTED
    return (
        f"Something went wrong on the bot's side after {'; '.join(done)}; that stands. "
        "The rest is in the log."
    )


def busy_text(interaction: discord.Interaction[Any]) -> str:
    """What a person reads when another program held the database past the wait."""
    done = interaction.extras.get(_CHANGED)
    if not done:
        return f"{BUSY}, so nothing was changed. Try again in a minute."
    return (
        f"{BUSY}, so this stopped after {'; '.join(done)}; that stands. "
        "Look before you try again in a minute."
    )


_PUBLIC_THINKING = "comfy-curator:public-thinking"
MESSAGE_MAX = 2000  # Discord's limit on a message's text


async def defer_public(interaction: discord.Interaction[Any]) -> None:
    """Defer a command whose answer everyone in the channel sees (a sheet, a new run). Discord
    makes the first follow-up of such a deferral public whatever it asks for, so a refusal
    must first remove the "thinking…" message (see `reply_ephemeral`)."""
    await interaction.response.defer(thinking=True)
    interaction.extras[_PUBLIC_THINKING] = True


async def reply_ephemeral(interaction: discord.Interaction[Any], message: str) -> None:
    """Answer or follow up, whichever the interaction still allows, seen by the person alone.
    A long refusal (say, every problem a worker has) is cut to what Discord takes."""
    message = clip(message, MESSAGE_MAX)
    if not interaction.response.is_done():
        await interaction.response.send_message(message, ephemeral=True)
        return
    if interaction.extras.pop(_PUBLIC_THINKING, False):
        try:
            await interaction.delete_original_response()
        except discord.HTTPException:
            log.warning("could not remove the public 'thinking' message before a refusal")
    await interaction.followup.send(message, ephemeral=True)


async def report_error(
    interaction: discord.Interaction[Any], error: BaseException, where: str
) -> None:
    """The one error boundary of commands, buttons and menus. A refusal a person caused is
    shown to them alone, and so is a database held by another program (one line that says
    what, if anything, stands); anything else is logged once with its traceback."""
    if not isinstance(error, DomainError) and is_busy(error):
        log.warning("%s by %s: the database is locked by another program", where,
                    interaction.user)
        error = DatabaseBusy(busy_text(interaction))
    if isinstance(error, DomainError | app_commands.CheckFailure):
        await reply_ephemeral(interaction, str(error))
        return
    log.error("%s by %s failed", where, interaction.user, exc_info=error)
    await reply_ephemeral(interaction, unexpected_text(interaction))


class CuratorTree(app_commands.CommandTree["CuratorBot"]):
    """Every slash command's failure goes to `report_error`."""

    async def on_error(
        self, interaction: discord.Interaction[CuratorBot], error: app_commands.AppCommandError
    ) -> None:
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        command = interaction.command.qualified_name if interaction.command else "?"
        await report_error(interaction, cause, f"/{command}")


ItemT = TypeVar("ItemT")


def component_boundary(
    callback: Callable[[ItemT, discord.Interaction[Any]], Coroutine[Any, Any, None]],
) -> Callable[[ItemT, discord.Interaction[Any]], Coroutine[Any, Any, None]]:
    """Wrap a DynamicItem's `callback` in `report_error`: discord.py only logs what such a
    callback raises (a plain View's errors go to `View.on_error`, a DynamicItem's nowhere), and
    the person would see nothing."""

    @functools.wraps(callback)
    async def guarded(item: ItemT, interaction: discord.Interaction[Any]) -> None:
        try:
            await callback(item, interaction)
        except Exception as err:
            await report_error(interaction, err, f"component {getattr(item, 'custom_id', '?')}")

    return guarded


class CuratorBot(commands.Bot):
    def __init__(self, settings: Settings, sessions: SessionFactory, scheduler: Scheduler) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),  # no privileged intent is needed
            tree_cls=CuratorTree,
        )
        self.settings = settings
        self.scheduler = scheduler
        self.app = App(sessions, wake=scheduler.wake, check=scheduler.problems_for_run)
        scheduler.on_event = self._on_scheduler_event

    async def _on_scheduler_event(self, event: SchedulerEvent) -> None:
        """Scheduler news becomes a bot event the cogs listen to (`on_scheduler_event`)."""
        self.dispatch("scheduler_event", event)

    def can_post(self, channel_id: int) -> bool:
        """Whether a channel of ours is there to post in (a run's channel may be deleted)."""
        return isinstance(self.get_channel(channel_id), discord.TextChannel)

    @property
    def guild_id(self) -> int:
        assert self.settings.discord_guild_id is not None
        return self.settings.discord_guild_id

    async def setup_hook(self) -> None:
        self.add_dynamic_items(ConfirmButton)
        for extension in COGS:
            await self.load_extension(extension)
        guild = discord.Object(id=self.guild_id)
        self.tree.copy_global_to(guild=guild)
        synced = await self.tree.sync(guild=guild)
        log.info(
            "slash commands synced to guild %s: %s",
            self.guild_id,
            ", ".join(sorted(c.name for c in synced)),
        )
        await refit_stale(self.app)  # before any interaction can show a rating
        await self.scheduler.start()

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """Answer a tap on one of our components that its message no longer carries (a phone
        that had not refreshed after the pair was answered). discord.py hands a dynamic item
        only taps on components still on the message, so without this the tap goes unanswered
        and the phone says "This interaction failed"."""
        if interaction.type is not discord.InteractionType.component:
            return
        data: dict[str, Any] = dict(interaction.data or {})
        custom_id = str(data.get("custom_id", ""))
        message = interaction.message
        if not custom_id.startswith("cc:") or message is None:
            return
        live = {
            getattr(child, "custom_id", None)
            for row in message.components
            for child in getattr(row, "children", ())
        }
        if custom_id in live:
            return
        shown = f": {message.content}" if message.content else "."
        await reply_ephemeral(interaction, f"This was already answered{shown}")

    async def close(self) -> None:
        """Stop the scheduler and Discord, then store at once the ratings of votes whose refit
        was still waiting out `REFIT_DELAY`, before `bot.startup` disposes the engine."""
        try:
            await self.scheduler.stop()
            await super().close()
        finally:
            await finish_refits()
