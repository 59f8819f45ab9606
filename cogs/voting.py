"""Pairs in a run's channel and their vote buttons, and /vote.

The buttons carry the run and both candidates in their custom ids, so they keep working after a
restart (discord.py DynamicItem, registered at start-up). Pairs go out when a job made a new
candidate and after each answer, at most a few unanswered per run (orchestration.pair_posts).
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import CuratorBot, component_boundary, reply_ephemeral
from bot.permissions import curator_only, ensure_curator
from bot.render import render_pair
from cogs.common import RunOption, resolve_run
from orchestration.busy import retry_while_busy
from orchestration.errors import DomainError
from orchestration.overview import run_channel
from orchestration.pair_posts import (
    Action,
    PairPlan,
    PairSide,
    PairToPost,
    answer_pair,
    forget_deleted_messages,
    forget_post,
    mark_sent,
    plan_pairs,
)
from orchestration.text import plural
from scheduler.events import SchedulerEvent

log = logging.getLogger(__name__)

LABELS: dict[Action, tuple[str, discord.ButtonStyle]] = {
    "a": ("A better", discord.ButtonStyle.primary),
    "b": ("B better", discord.ButtonStyle.primary),
    "s": ("Skip", discord.ButtonStyle.secondary),
    "ra": ("Reject A", discord.ButtonStyle.danger),
    "rb": ("Reject B", discord.ButtonStyle.danger),
}


# What a tap that could not be recorded was, for the line after orchestration.busy.BUSY.
NOT_RECORDED: dict[Action, str] = {
    "a": "your vote", "b": "your vote", "s": "the skip",
    "ra": "the rejection", "rb": "the rejection",
}


def custom_id(action: Action, run_id: int, a: int, b: int) -> str:
    return f"cc:vote:{action}:{run_id}:{a}:{b}"


class VoteButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"cc:vote:(?P<action>a|b|s|ra|rb):(?P<run>\d+):(?P<a>\d+):(?P<b>\d+)",
):
    def __init__(self, action: Action, run_id: int, a: int, b: int) -> None:
        label, style = LABELS[action]
        super().__init__(
            discord.ui.Button(label=label, style=style, custom_id=custom_id(action, run_id, a, b))
        )
        self.action, self.run_id, self.a, self.b = action, run_id, a, b

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> VoteButton:
        action: Action = match["action"]  # type: ignore[assignment]
        return cls(action, int(match["run"]), int(match["a"]), int(match["b"]))

    @component_boundary
    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Refusals, and a database held past the retries, reach the person privately through
        the error boundary; the pair stays open for another tap."""
        bot: CuratorBot = interaction.client
        ensure_curator(interaction, int(bot.settings.curator_role_id or 0))
        await interaction.response.defer()  # the message is updated below, when it is known
        voter = str(interaction.user.id)
        message = interaction.message
        answer = await retry_while_busy(
            bot.sessions,
            functools.partial(
                answer_pair,
                run_id=self.run_id,
                action=self.action,
                a=self.a,
                b=self.b,
                voter=voter,
                message_id=message.id if message is not None else None,
            ),
            refusal=f"{NOT_RECORDED[self.action]} was not recorded. Tap again in a minute",
            what=f"run {self.run_id}: a tap on #{self.a} vs #{self.b}",
        )
        bot.scheduler.wake()
        by = "" if not answer.counted else f" — {interaction.user.display_name}"
        await interaction.edit_original_response(content=f"{answer.outcome}{by}", view=None)
        plan = await post_pairs(bot, self.run_id, voter)
        if plan is not None and plan.note and not plan.posts and plan.waiting == 0:
            await reply_ephemeral(interaction, plan.note)  # e.g. the step is settled


def vote_view(run_id: int, a: int, b: int) -> discord.ui.View:
    """The five buttons under a pair; `timeout=None` because they must outlive the process."""
    view = discord.ui.View(timeout=None)
    for action in LABELS:
        view.add_item(VoteButton(action, run_id, a, b))
    return view


def side_label(letter: str, side: PairSide) -> str:
    return f"{letter} #{side.id} · Elo {side.elo:.0f} · {plural(side.votes, 'vote')}"


async def pair_message(bot: CuratorBot, post: PairToPost) -> dict[str, Any]:
    """What a pair message carries: the composite picture and its five buttons."""
    data_dir = bot.settings.data_dir
    picture = await asyncio.to_thread(
        render_pair,
        data_dir / post.a.image_path,
        data_dir / post.b.image_path,
        label_a=side_label("A", post.a),
        label_b=side_label("B", post.b),
        header=post.header,
    )
    return {
        "content": f"Which is better? Step {post.step}: #{post.a.id} (A) or #{post.b.id} (B)",
        "file": discord.File(io.BytesIO(picture.data), filename=picture.filename),
        "view": vote_view(post.run_id, post.a.id, post.b.id),
    }


async def post_pairs(bot: CuratorBot, run_id: int, voter: str | None = None) -> PairPlan | None:
    """Top the run's channel up with pairs to vote on; update pairs that went out of date.

    Called after a job made a candidate and after each answer. Never raises: pairs are an
    offer, and a failure here must not turn a vote that counted into an error.
    """
    try:
        async with bot.sessions() as session:
            channel_id = await run_channel(session, run_id)
            channel = bot.get_channel(channel_id) if channel_id is not None else None
            if not isinstance(channel, discord.TextChannel):
                return None
            plan = await plan_pairs(session, run_id, voter)
    except DomainError:
        return None  # e.g. the run was completed meanwhile: nothing to offer
    except Exception:
        log.warning("run %s: could not plan the next pairs", run_id, exc_info=True)
        return None
    for closed in plan.closed:
        try:
            private = _private_pairs.pop(closed.message_id, None)
            if private is not None:
                if private.usable():
                    await private.message.edit(content=closed.reason, view=None)
                continue  # past its token a private pair can no longer be edited by anyone
            target = bot.get_channel(closed.channel_id)
            if isinstance(target, discord.TextChannel):
                await target.get_partial_message(closed.message_id).edit(
                    content=closed.reason, view=None
                )
        except discord.HTTPException:
            log.info("run %s: could not update message %s", run_id, closed.message_id)
    for post in plan.posts:
        try:
            await deliver(bot, post, channel.send)
        except Exception:  # this pair's place is freed; the next offer tries again
            log.warning("run %s: could not post pair #%s vs #%s", run_id, post.a.id, post.b.id,
                        exc_info=True)
    return plan


@dataclass(frozen=True)
class PrivatePair:
    """A pair shown to one person (/vote). Discord lets only its interaction's webhook edit it,
    and only while the interaction's token lasts (15 minutes)."""

    message: discord.WebhookMessage
    until: float

    def usable(self) -> bool:
        return time.monotonic() < self.until


PRIVATE_EDITABLE_FOR = 14 * 60.0  # a minute inside the token's 15, for a slow round trip
_private_pairs: dict[int, PrivatePair] = {}


def _remember_private(message: discord.WebhookMessage) -> None:
    now = time.monotonic()
    for message_id in [m for m, p in _private_pairs.items() if not p.usable()]:
        del _private_pairs[message_id]
    _private_pairs[message.id] = PrivatePair(message, now + PRIVATE_EDITABLE_FOR)


async def deliver(
    bot: CuratorBot, post: PairToPost, send: Callable[..., Awaitable[Any]]
) -> Any:
    """Send a reserved pair with `send` (a channel's, or a private follow-up), record its
    message and return it; when sending fails, free the place it held, then raise."""
    try:
        sent = await send(**await pair_message(bot, post))
    except Exception:
        async with bot.sessions() as session:
            await forget_post(session, post.post_id)
        raise
    async with bot.sessions() as session:
        await mark_sent(session, post.post_id, sent.channel.id, sent.id)
    return sent


def jump_url(guild_id: int, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


class Voting(commands.Cog):
    def __init__(self, bot: CuratorBot) -> None:
        self.bot = bot

    @app_commands.command(name="vote", description="Ask for a pair to vote on now")
    @app_commands.describe(run="The run (default: this channel's run)")
    @curator_only()
    async def vote(
        self, interaction: discord.Interaction[Any], run: RunOption | None = None
    ) -> None:
        """The pair is for the person who asked: shown to them alone, buttons and all."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        run_id = await resolve_run(self.bot, interaction, run)
        async with self.bot.sessions() as session:
            plan = await plan_pairs(session, run_id, str(interaction.user.id), want=1)
        if not plan.posts:
            links = [jump_url(self.bot.guild_id, c, m) for c, m in plan.open_messages]
            text = plan.note or f"Nothing to vote on in run #{run_id} right now."
            if links:
                text += "\nWaiting for an answer: " + " ".join(links)
            await interaction.followup.send(text, ephemeral=True)
            return
        send = functools.partial(interaction.followup.send, ephemeral=True, wait=True)
        _remember_private(await deliver(self.bot, plan.posts[0], send))


    @commands.Cog.listener()
    async def on_scheduler_event(self, event: SchedulerEvent) -> None:
        if event.kind == "job_succeeded" and event.run_id is not None:
            await post_pairs(self.bot, event.run_id)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self._forget({payload.message_id})

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(
        self, payload: discord.RawBulkMessageDeleteEvent
    ) -> None:
        await self._forget(payload.message_ids)

    async def _forget(self, message_ids: set[int]) -> None:
        """A pair message deleted by hand frees its place; the next pair fills it when the
        next candidate arrives or a pair is answered."""
        async with self.bot.sessions() as session:
            freed = await forget_deleted_messages(session, message_ids)
        if freed:
            log.info("%d deleted pair message(s) no longer hold a place", freed)


async def setup(bot: CuratorBot) -> None:
    bot.add_dynamic_items(VoteButton)
    await bot.add_cog(Voting(bot))
