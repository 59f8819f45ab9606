"""/vote, and pair messages deleted by hand (the messages and their buttons: bot.pairs)."""

from __future__ import annotations

import functools
import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from app.pairs import messages_deleted, offer_pair
from bot.app import CuratorBot
from bot.pairs import VoteButton, deliver, remember_private
from bot.permissions import curator_only
from cogs.common import RunOption, run_ref

log = logging.getLogger(__name__)


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
        offer = await offer_pair(self.bot.app, run_ref(interaction, run), str(interaction.user.id))
        run_id, plan = offer.run_id, offer.plan
        if not plan.posts:
            links = [jump_url(self.bot.guild_id, c, m) for c, m in plan.open_messages]
            text = plan.note or f"Nothing to vote on in run #{run_id} right now."
            if links:
                text += "\nWaiting for an answer: " + " ".join(links)
            await interaction.followup.send(text, ephemeral=True)
            return
        send = functools.partial(interaction.followup.send, ephemeral=True, wait=True)
        remember_private(await deliver(self.bot, plan.posts[0], send))

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
        freed = await messages_deleted(self.bot.app, message_ids)
        if freed:
            log.info("%d deleted pair message(s) no longer hold a place", freed)


async def setup(bot: CuratorBot) -> None:
    bot.add_dynamic_items(VoteButton)
    await bot.add_cog(Voting(bot))
