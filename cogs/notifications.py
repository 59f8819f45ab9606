"""News in the runs' channels: holds and their lifting, workers going down, failing or coming
back, a step awaiting approval and a run with no work left."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from app.news import catch_up, channels_for, job_arrived
from bot.app import MESSAGE_MAX, CuratorBot
from bot.news import show_news
from orchestration.states import HoldKind
from orchestration.text import clip
from scheduler.events import SchedulerEvent

log = logging.getLogger(__name__)


# Events about one run, posted in its channel; the others go to every running run's channel.
RUN_EVENTS = frozenset({"run_held", "run_resumed"})


def describe(event: SchedulerEvent) -> str | None:
    if event.kind == "run_held" and event.hold_kind is HoldKind.storage:
        return (
            f"⏸️ This run is on hold: {event.message}.\n"
            "Free space in the data folder (or make it writable again); the run goes on by "
            "itself once a file can be written. The job that could not be stored is made again."
        )
    if event.kind == "run_held" and event.hold_kind is HoldKind.workers:
        return (
            f"⏸️ This run is on hold: {event.message}\n"
            "Install what is missing on a ComfyUI (or add a worker that has it); the run goes "
            "on by itself once a connected worker has it (looked at on every connect and "
            "every few minutes)."
        )
    if event.kind == "run_resumed":
        return f"▶️ The hold is lifted: {event.message}. Work goes on."
    if event.kind == "worker_unhealthy":
        return (
            f"⚠️ {event.message}. The bot keeps following its job with growing pauses and "
            "makes it again if it waits too long; check ComfyUI's console."
        )
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
        """The one subscriber to the scheduler's news: a job's arrival brings its run's
        notices and pairs (`app.news`), the rest is posted where it belongs."""
        if event.kind == "job_succeeded" and event.run_id is not None:
            await show_news(self.bot, await job_arrived(self.bot.app, event.run_id,
                                                        self.bot.can_post))
            return
        text = describe(event)
        if text is None:
            return
        one_run = event.kind in RUN_EVENTS
        if one_run and event.run_id is None:
            return
        for channel_id in await channels_for(self.bot.app, event.run_id if one_run else None):
            channel = self.bot.get_channel(channel_id)
            if isinstance(channel, discord.TextChannel):
                try:
                    await channel.send(clip(text, MESSAGE_MAX))
                except discord.HTTPException:
                    log.warning("could not post to channel %s", channel_id, exc_info=True)

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        """Catch up after a start on notices a stop kept from going out."""
        for news in await catch_up(self.bot.app, self.bot.can_post):
            await show_news(self.bot, news)


async def setup(bot: CuratorBot) -> None:
    await bot.add_cog(Notifications(bot))
