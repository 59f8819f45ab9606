"""Pair messages in Discord: their picture and five buttons, a tap on them, and keeping the
messages in step with the pairs (`app.pairs`).

The buttons carry the run and both candidates in their custom ids, so they keep working after a
restart (discord.py DynamicItem, registered at start-up). Pairs go out when a job made a new
candidate and after each answer, at most a few unanswered per run (orchestration.pair_posts).
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import discord

from app.news import RunNews
from app.pairs import answer, pair_not_sent, pair_sent
from bot.app import CuratorBot, component_boundary, reply_ephemeral
from bot.permissions import ensure_curator
from bot.render import render_pair
from orchestration.pair_posts import Action, PairSide, PairToPost
from orchestration.text import caption

log = logging.getLogger(__name__)

LABELS: dict[Action, tuple[str, discord.ButtonStyle]] = {
    "a": ("A better", discord.ButtonStyle.primary),
    "b": ("B better", discord.ButtonStyle.primary),
    "s": ("Skip", discord.ButtonStyle.secondary),
    "ra": ("Reject A", discord.ButtonStyle.danger),
    "rb": ("Reject B", discord.ButtonStyle.danger),
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
        message = interaction.message
        answered = await answer(
            bot.app, self.run_id, self.action, self.a, self.b, str(interaction.user.id),
            bot.can_post, message_id=message.id if message is not None else None,
        )
        by = "" if not answered.answer.counted else f" — {interaction.user.display_name}"
        await interaction.edit_original_response(
            content=f"{answered.answer.outcome}{by}", view=None
        )
        plan = answered.news.pairs
        await show_pairs(bot, answered.news)
        if plan is not None and plan.note and not plan.posts and plan.waiting == 0:
            await reply_ephemeral(interaction, plan.note)  # e.g. the step is settled


def vote_view(run_id: int, a: int, b: int) -> discord.ui.View:
    """The five buttons under a pair; `timeout=None` because they must outlive the process."""
    view = discord.ui.View(timeout=None)
    for action in LABELS:
        view.add_item(VoteButton(action, run_id, a, b))
    return view


def side_label(letter: str, side: PairSide) -> str:
    return f"{letter} {caption(side.id, side.elo, side.votes)}"


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


async def show_pairs(bot: CuratorBot, news: RunNews) -> None:
    """Bring the run's channel in step with its pairs: those gone out of date say why, new
    ones are posted. Never raises: pairs are an offer, and a failure here must not turn a vote
    that counted into an error."""
    plan = news.pairs
    channel = bot.get_channel(news.channel_id) if news.channel_id is not None else None
    if plan is None or not isinstance(channel, discord.TextChannel):
        return
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
            log.info("run %s: could not update message %s", news.run_id, closed.message_id)
    for post in plan.posts:
        try:
            await deliver(bot, post, channel.send)
        except Exception:  # this pair's place is freed; the next offer tries again
            log.warning("run %s: could not post pair #%s vs #%s", news.run_id, post.a.id,
                        post.b.id, exc_info=True)


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


def remember_private(message: discord.WebhookMessage) -> None:
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
        await pair_not_sent(bot.app, post.post_id)
        raise
    await pair_sent(bot.app, post.post_id, sent.channel.id, sent.id)
    return sent
