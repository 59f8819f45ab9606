"""News from the GPU box in the runs' channels: holds, and workers going down or coming back."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.app import CuratorBot
from orchestration.overview import run_channel, running_run_channels
from orchestration.scheduler import SchedulerEvent

log = logging.getLogger(__name__)


def describe(event: SchedulerEvent) -> str | None:
    if event.kind == "run_held":
        return (
            f"⏸️ This run is on hold: {event.message}\n"
            "Fix the cause (a missing model or node on ComfyUI, a workflow error), "
            "then `/resume`."
        )
    if event.kind == "worker_down":
        return f"⚠️ {event.message}. Jobs wait until it is back; nothing is lost."
    if event.kind == "worker_up":
        return f"✅ {event.message} Work goes on."
    return None


class Notifications(commands.Cog):
    def __init__(self, bot: CuratorBot) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_scheduler_event(self, event: SchedulerEvent) -> None:
        text = describe(event)
        if text is None:
            return
        async with self.bot.sessions() as session:
            if event.kind == "run_held" and event.run_id is not None:
                found = await run_channel(session, event.run_id)
                channels = [found] if found is not None else []
            else:
                channels = await running_run_channels(session)
        for channel_id in channels:
            channel = self.bot.get_channel(channel_id)
            if isinstance(channel, discord.TextChannel):
                try:
                    await channel.send(text[:2000])
                except discord.HTTPException:
                    log.warning("could not post to channel %s", channel_id, exc_info=True)


async def setup(bot: CuratorBot) -> None:
    await bot.add_cog(Notifications(bot))
