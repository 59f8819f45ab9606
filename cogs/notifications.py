"""News in the runs' channels: holds and their lifting, workers going down, failing or coming
back, a step awaiting approval and a run with no work left."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.app import MESSAGE_MAX, CuratorBot
from orchestration.notices import due_notices, runs_to_notify
from orchestration.overview import run_channel, running_run_channels
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


async def post_due_notices(bot: CuratorBot, run_id: int) -> int:
    """Post what the run owes its channel (orchestration.notices); returns how many went out.

    Called after each job that succeeded and after an approval. Notices are taken only when the
    run's channel is there to take them, so a run without a channel (yet) keeps them due. Never
    raises: a notice is news, and must not turn an approval that worked into an error.
    """
    try:
        async with bot.sessions() as session:
            channel_id = await run_channel(session, run_id)
            channel = bot.get_channel(channel_id) if channel_id is not None else None
            if not isinstance(channel, discord.TextChannel):
                return 0
            notices = await due_notices(session, run_id)
    except Exception:
        log.warning("run %s: could not work out its notices", run_id, exc_info=True)
        return 0
    posted = 0
    for notice in notices:
        try:
            await channel.send(clip(notice.message, MESSAGE_MAX))
            posted += 1
        except discord.HTTPException:
            log.warning(
                "run %s: could not post the %s notice to channel %s",
                run_id,
                notice.kind,
                channel_id,
                exc_info=True,
            )
    return posted


class Notifications(commands.Cog):
    def __init__(self, bot: CuratorBot) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_scheduler_event(self, event: SchedulerEvent) -> None:
        if event.kind == "job_succeeded" and event.run_id is not None:
            await post_due_notices(self.bot, event.run_id)
            return
        text = describe(event)
        if text is None:
            return
        async with self.bot.sessions() as session:
            if event.kind in RUN_EVENTS and event.run_id is not None:
                found = await run_channel(session, event.run_id)
                channels = [found] if found is not None else []
            else:
                channels = await running_run_channels(session)
        for channel_id in channels:
            channel = self.bot.get_channel(channel_id)
            if isinstance(channel, discord.TextChannel):
                try:
                    await channel.send(clip(text, MESSAGE_MAX))
                except discord.HTTPException:
                    log.warning("could not post to channel %s", channel_id, exc_info=True)

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        """Catch up after a start: a notice due when the bot stopped gets no job event if the
        run is idle. Asking again on a reconnect is harmless: each notice goes out once."""
        try:
            async with self.bot.sessions() as session:
                run_ids = await runs_to_notify(session)
        except Exception:
            log.warning("could not list the runs to notify", exc_info=True)
            return
        for run_id in run_ids:
            await post_due_notices(self.bot, run_id)


async def setup(bot: CuratorBot) -> None:
    await bot.add_cog(Notifications(bot))
