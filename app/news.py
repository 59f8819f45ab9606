"""What a run's channel is owed after something happened: its notices, then its pairs.

A job's arrival, an approval and an answered pair all end here, so the channel hears about a
run from one place and in one order: the notices first (a step awaiting approval, no work left),
then the pairs (those gone out of date closed, new ones reserved). Finding the news never
raises: it is an offer, and must not turn what happened before it into an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from app.context import App
from app.transaction import look, transaction
from orchestration.errors import DomainError
from orchestration.notices import Notice, due_notices, runs_to_notify
from orchestration.overview import run_channel, running_run_channels
from orchestration.pair_posts import PairPlan, plan_pairs

log = logging.getLogger(__name__)

Reachable = Callable[[int], bool]
"""Whether the bot can post in this channel now; a channel it cannot reach keeps its news."""


@dataclass(frozen=True)
class RunNews:
    run_id: int
    channel_id: int | None = None  # None: no channel to take news, so none was taken
    notices: list[Notice] = field(default_factory=list)
    pairs: PairPlan | None = None


async def run_news(
    app: App,
    run_id: int,
    reachable: Reachable,
    *,
    voter: str | None = None,
    notices: bool = True,
    pairs: bool = True,
) -> RunNews:
    """Take what the run owes its channel: notices are marked given, pairs reserved; the
    caller posts them (and records each pair's message, `app.pairs.pair_sent`)."""
    try:
        async with look(app) as session:
            channel_id = await run_channel(session, run_id)
    except Exception:
        log.warning("run %s: could not find its channel", run_id, exc_info=True)
        return RunNews(run_id)
    if channel_id is None or not reachable(channel_id):
        return RunNews(run_id)
    found: list[Notice] = []
    if notices:
        try:
            async with transaction(app) as session:
                found = await due_notices(session, run_id)
        except Exception:
            log.warning("run %s: could not work out its notices", run_id, exc_info=True)
    plan = None
    if pairs:
        try:
            async with transaction(app) as session:
                plan = await plan_pairs(session, run_id, voter)
        except DomainError:
            pass  # e.g. the run was completed meanwhile: nothing to offer
        except Exception:
            log.warning("run %s: could not plan the next pairs", run_id, exc_info=True)
    return RunNews(run_id, channel_id, found, plan)


async def job_arrived(app: App, run_id: int, reachable: Reachable) -> RunNews:
    """A job of the run succeeded: its candidates are stored (and their thumbnails made by the
    scheduler); the channel gets what that makes due."""
    return await run_news(app, run_id, reachable)


async def catch_up(app: App, reachable: Reachable) -> list[RunNews]:
    """After a start: notices that were due when the bot stopped get no job event if their run
    is idle. Asking again on a reconnect is harmless: each notice goes out once."""
    try:
        async with look(app) as session:
            run_ids = await runs_to_notify(session)
    except Exception:
        log.warning("could not list the runs to notify", exc_info=True)
        return []
    return [await run_news(app, run_id, reachable, pairs=False) for run_id in run_ids]


async def channels_for(app: App, run_id: int | None) -> list[int]:
    """Where news of the GPU box goes: the run's channel for news of one run, else the
    channel of every running run."""
    async with look(app) as session:
        if run_id is not None:
            found = await run_channel(session, run_id)
            return [found] if found is not None else []
        return await running_run_channels(session)
