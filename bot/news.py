"""Posting what a run's channel is owed (`app.news`): its notices, then its pairs."""

from __future__ import annotations

import logging

import discord

from app.news import RunNews
from bot.app import MESSAGE_MAX, CuratorBot
from bot.pairs import show_pairs
from orchestration.text import clip

log = logging.getLogger(__name__)


async def show_news(bot: CuratorBot, news: RunNews) -> int:
    """Post the notices, then bring the pairs up to date; how many notices went out. Never
    raises: news must not turn what came before it (an approval that worked) into an error."""
    channel = bot.get_channel(news.channel_id) if news.channel_id is not None else None
    posted = 0
    if isinstance(channel, discord.TextChannel):
        for notice in news.notices:
            try:
                await channel.send(clip(notice.message, MESSAGE_MAX))
                posted += 1
            except discord.HTTPException:
                log.warning("run %s: could not post the %s notice to channel %s", news.run_id,
                            notice.kind, news.channel_id, exc_info=True)
    await show_pairs(bot, news)
    return posted
