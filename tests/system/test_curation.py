"""A whole curation by taps, as a person on a phone would do it: /run start, pairs arrive in the
run's channel as the simulated ComfyUI makes candidates, votes by buttons, /approve, the
notices once each, /complete. Only Discord is faked; the database, the scheduler and ComfyUI
(simulated, on loopback) are real."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from sqlalchemy import func, select

from bot.app import CuratorBot
from bot.pairs import VoteButton
from cogs.approvals import Approvals
from cogs.gallery import Gallery
from cogs.notifications import Notifications
from cogs.runs import Runs
from cogs.voting import Voting
from comfy.simulator import SimulatedComfy
from db.models import ImageCandidate, PairPost, PipelineRun, Vote
from orchestration.pair_posts import OPEN_PAIRS_PER_RUN
from orchestration.states import RunStatus
from scheduler.process import Scheduler
from scheduler.thumbnails import thumbnail_path
from tests.committed import import_pipeline
from tests.helpers import (
    confirmed,
    created_channels,
    fake_interaction,
    fake_member,
    invoke,
    make_settings,
    posted_with,
)

REPO = Path(__file__).resolve().parents[2]
FAST = {"retry_attempts": 2, "retry_wait": 0.01, "retry_max_wait": 0.02,
        "request_timeout": 5.0, "connect_timeout": 1.0, "poll_interval": 0.05,
        "idle_poll_interval": 1.0, "history_grace": 1.0}


async def settle(bot: CuratorBot) -> None:
    """Wait until the scheduler is idle and every event it dispatched has been handled."""
    async with asyncio.timeout(60):
        while True:
            await bot.scheduler.wait_idle()
            pending = [t for t in asyncio.all_tasks()
                       if t.get_name().startswith("discord.py:") and not t.done()]
            if not pending:
                return
            await asyncio.gather(*pending)


async def open_pairs(session_factory) -> int:
    async with session_factory() as s:
        return await s.scalar(select(func.count()).select_from(PairPost).where(
            PairPost.answered_at.is_(None))) or 0


async def test_a_whole_curation_by_taps(session_factory, tmp_path):
    data = tmp_path / "data"
    async with SimulatedComfy(duration=0.01, root=tmp_path / "comfy", seed=1) as sim:
        async with session_factory() as s:
            await import_pipeline(s, REPO / "pipelines" / "cpu-demo")
        scheduler = Scheduler(session_factory, [sim.url], data, rng=random.Random(1),
                              tick_seconds=60, down_retry_seconds=0.05, client_options=FAST)
        bot = CuratorBot(make_settings(data, comfy_url=sim.url), session_factory, scheduler)
        await bot._async_setup_hook()  # what login does: the bot's loop, so events dispatch
        runs, voting, approvals = Runs(bot), Voting(bot), Approvals(bot)
        for cog in (runs, voting, approvals, Notifications(bot), Gallery(bot)):
            await bot.add_cog(cog)
        curator = fake_member(name="carol")

        started = fake_interaction(bot, user=curator)  # the longest name, for Discord's limits
        await invoke(Runs.start, runs, started, pipeline="cpu-demo", name="Sofa " * 20, prompt="",
                     n=3)
        [channel] = created_channels(started)
        bot.get_channel = {channel.id: channel}.get  # type: ignore[method-assign]

        await scheduler.start()
        try:
            await settle(bot)  # 3 base images, 9 refined: step 2 awaits approval
            assert 0 < await open_pairs(session_factory) <= OPEN_PAIRS_PER_RUN

            # The curator's taste: the candidate made first is the better one.
            taps = 0
            answered: set[int] = set()
            while taps < 200:
                waiting = [m for m in channel.send.messages
                           if "view" in posted_with(m) and m.id not in answered]
                if not waiting:
                    break
                message = waiting[0]
                labels = {c.item.label: c for c in posted_with(message)["view"].children}
                a, b = labels["A better"].a, labels["A better"].b
                button: VoteButton = labels["A better" if a < b else "B better"]
                tap = fake_interaction(bot, user=curator, message=message)
                await button.callback(tap)
                answered.add(message.id)
                taps += 1
                assert await open_pairs(session_factory) <= OPEN_PAIRS_PER_RUN
            assert 0 < taps < 200  # the policy stopped asking: the top is settled
            async with session_factory() as s:
                assert await s.scalar(select(func.count()).select_from(Vote)) == taps
                step2 = list(await s.scalars(select(ImageCandidate.id).where(
                    ImageCandidate.step == 2).order_by(ImageCandidate.id)))
            assert len(step2) == 9

            approving = fake_interaction(bot, user=curator, channel_id=channel.id)
            await confirmed(approving, invoke(Approvals.approve, approvals, approving,
                                              step=2, k=1))
            await settle(bot)  # the approved best grows: 3 candidates at step 3, then no work
            async with session_factory() as s:
                advancing = list(await s.scalars(select(ImageCandidate.id).where(
                    ImageCandidate.step == 2, ImageCandidate.advancing.is_(True))))
                step3 = await s.scalar(select(func.count()).where(ImageCandidate.step == 3))
            assert advancing == [step2[0]] and step3 == 3

            completing = fake_interaction(bot, user=curator, channel_id=channel.id)
            await confirmed(completing, invoke(Runs.complete, runs, completing))
        finally:
            await scheduler.stop()

    texts = [m.content or "" for m in channel.send.messages]
    assert sum("Step 2 is ready for review" in t for t in texts) == 1
    assert sum("has no work left" in t for t in texts) == 1
    async with session_factory() as s:
        run = (await s.scalars(select(PipelineRun))).one()
    assert run.status is RunStatus.completed
    channel.edit.assert_awaited()  # the channel is marked done
    async with session_factory() as s:
        images = list(await s.scalars(select(ImageCandidate.image_path)))
    assert len(images) == 15  # 3 + 9 + 3, each with the thumbnail /gallery will use
    assert all(thumbnail_path(data / path).is_file() for path in images)
