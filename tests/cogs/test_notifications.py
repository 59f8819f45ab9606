"""Scheduler news and run notices reach the right channels, each notice once."""

from __future__ import annotations

import random
from unittest.mock import MagicMock

import discord

from cogs.approvals import Approvals
from cogs.notifications import Notifications
from db.models import PipelineRun
from orchestration.jobs import ClaimedJob, StoredImage, claim_next_job, complete_job
from orchestration.runs import RunSettings
from orchestration.states import HoldKind
from scheduler.events import SchedulerEvent
from tests.committed import complete_run, set_run_channel
from tests.factories import make_pipeline, make_run
from tests.helpers import confirmed, fake_interaction, fake_text_channel, invoke, make_bot


async def setup_runs(session_factory, tmp_path):
    bot = make_bot(session_factory, tmp_path)
    channels = {}
    async with session_factory() as s:
        await make_pipeline(s, tmp_path)
        for name in ("a", "b", "done"):
            run = await make_run(s, name=name)
            channels[name] = fake_text_channel(name)
            await set_run_channel(s, run, channels[name].id)
        await complete_run(s, 3)
    by_id = {c.id: c for c in channels.values()}
    bot.get_channel = by_id.get  # type: ignore[method-assign]
    return Notifications(bot), channels


async def test_hold_goes_to_its_run_only(session_factory, tmp_path):
    cog, channels = await setup_runs(session_factory, tmp_path)
    await cog.on_scheduler_event(SchedulerEvent(
        "run_held", "3 jobs in a row failed at step 1; the last error: checkpoint 'x' is not "
        "installed on this ComfyUI", "http://gpu:8188", run_id=2, job_id=7, step=1))
    [call] = channels["b"].send.await_args_list
    assert "on hold" in call.args[0] and "checkpoint 'x'" in call.args[0]
    assert "/resume" in call.args[0]
    assert channels["a"].send.await_count == 0


async def test_storage_hold_and_its_lifting_go_to_their_run_only(session_factory, tmp_path):
    cog, channels = await setup_runs(session_factory, tmp_path)
    await cog.on_scheduler_event(SchedulerEvent(
        "run_held", "the data folder cannot take files: No space left on device (/data/x.png)",
        "http://gpu:8188", run_id=2, job_id=7, step=1, hold_kind=HoldKind.storage))
    await cog.on_scheduler_event(SchedulerEvent(
        "run_resumed", "the data folder takes files again", "", run_id=2,
        hold_kind=HoldKind.storage))
    held, lifted = posted(channels["b"])
    assert "No space left on device" in held and "by itself" in held and "/resume" not in held
    assert "lifted" in lifted and "takes files again" in lifted
    assert channels["a"].send.await_count == 0


async def test_a_hold_for_want_of_a_model_says_it_lifts_itself(session_factory, tmp_path):
    cog, channels = await setup_runs(session_factory, tmp_path)
    await cog.on_scheduler_event(SchedulerEvent(
        "run_held", "no connected ComfyUI can run it; it goes on by itself once one can:\n"
        "• step 1 (base) needs checkpoint 'x.safetensors'; ComfyUI at http://gpu:8188 has: none",
        "http://gpu:8188", run_id=2, hold_kind=HoldKind.workers))
    await cog.on_scheduler_event(SchedulerEvent(
        "run_resumed", "ComfyUI at http://gpu:8188 has what it needs", "http://gpu:8188",
        run_id=2, hold_kind=HoldKind.workers))
    held, lifted = posted(channels["b"])
    assert "checkpoint 'x.safetensors'" in held and "/resume" not in held
    assert "install" in held.lower()
    assert "lifted" in lifted and "has what it needs" in lifted
    assert channels["a"].send.await_count == 0


async def test_unhealthy_worker_is_told_to_running_runs(session_factory, tmp_path):
    cog, channels = await setup_runs(session_factory, tmp_path)
    await cog.on_scheduler_event(SchedulerEvent(
        "worker_unhealthy", "ComfyUI at http://gpu:8188 answers, but GET /history/p failed: "
        "HTTP 500: database is locked", "http://gpu:8188"))
    [text] = posted(channels["a"])
    assert "HTTP 500: database is locked" in text and "growing pauses" in text
    assert channels["b"].send.await_count == 1 and channels["done"].send.await_count == 0


async def test_worker_news_goes_to_running_runs(session_factory, tmp_path):
    cog, channels = await setup_runs(session_factory, tmp_path)
    await cog.on_scheduler_event(SchedulerEvent(
        "worker_down", "ComfyUI at http://gpu:8188 is not reachable: connection refused",
        "http://gpu:8188"))
    assert channels["a"].send.await_count == channels["b"].send.await_count == 1
    assert channels["done"].send.await_count == 0
    await cog.on_scheduler_event(SchedulerEvent("job_succeeded", "1 new", "http://gpu:8188", 1))
    assert channels["a"].send.await_count == 1  # routine news is not posted


async def run_awaiting_review(session_factory, tmp_path, *, visible: bool = True):
    """A gated run whose step 2 just filled up: its last job has succeeded, nothing is left."""
    bot = make_bot(session_factory, tmp_path)
    channel = fake_text_channel("run-0001")
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=3)
        run = await make_run(s, settings=RunSettings(max_children=2, top_k=2))
        await set_run_channel(s, run, channel.id)
        rng = random.Random(1)
        while isinstance(job := await claim_next_job(s, rng), ClaimedJob):
            await complete_job(s, job.job_id, [StoredImage(f"{job.job_id}.png", 0)])
        await s.commit()
    channels = {channel.id: channel} if visible else {}
    bot.get_channel = channels.get  # type: ignore[method-assign]
    return Notifications(bot), run, channel


def succeeded(run: int) -> SchedulerEvent:
    return SchedulerEvent("job_succeeded", "1 new candidate(s)", "http://gpu:8188", run, 6, 2)


def posted(channel) -> list[str]:
    """The notices sent to the channel (pairs, which carry buttons, left out)."""
    return [call.args[0] for call in channel.send.await_args_list if "view" not in call.kwargs]


async def test_job_succeeded_posts_each_notice_once(session_factory, tmp_path):
    cog, run, channel = await run_awaiting_review(session_factory, tmp_path)
    await cog.on_scheduler_event(succeeded(run))
    await cog.on_scheduler_event(succeeded(run))  # a second event, e.g. another worker
    await cog.on_ready()  # and a reconnect
    [awaiting] = posted(channel)  # dry only because step 2 waits: no "no work" notice
    assert awaiting.startswith("⏳ Step 2 is ready for review: 4 candidates.")
    assert "`/approve step:2 k:2`" in awaiting
    sent = channel.send.await_args_list  # the arrival's news in one order: notices, then pairs
    assert "view" not in sent[0].kwargs
    assert sent[1:] and all("view" in call.kwargs for call in sent[1:])


async def test_a_failed_post_is_logged_and_not_repeated(session_factory, tmp_path, caplog):
    cog, run, channel = await run_awaiting_review(session_factory, tmp_path)
    channel.send.side_effect = discord.HTTPException(MagicMock(status=503, reason="down"), "down")
    await cog.on_scheduler_event(succeeded(run))  # does not raise
    assert len(posted(channel)) == 1
    assert "could not post the awaiting_approval notice" in caplog.text
    channel.send.side_effect = None
    await cog.on_scheduler_event(succeeded(run))
    assert len(posted(channel)) == 1  # at most once: no duplicate once Discord is back


async def test_notices_wait_for_a_channel_the_bot_can_see(session_factory, tmp_path):
    cog, run, channel = await run_awaiting_review(session_factory, tmp_path, visible=False)
    await cog.on_scheduler_event(succeeded(run))
    assert channel.send.await_count == 0
    cog.bot.get_channel = {channel.id: channel}.get  # type: ignore[method-assign]
    await cog.on_ready()  # e.g. the next start: what was due is posted then
    assert len(posted(channel)) == 1


async def test_approve_asks_for_notices_again(session_factory, tmp_path):
    cog, run, channel = await run_awaiting_review(session_factory, tmp_path)
    await cog.on_scheduler_event(succeeded(run))
    approvals = Approvals(cog.bot)
    interaction = fake_interaction(cog.bot, channel_id=channel.id)
    await confirmed(interaction, invoke(Approvals.approve, approvals, interaction, step=2, k=1))
    async with session_factory() as s:
        assert (await s.get_one(PipelineRun, run)).no_work_notified_at is None
    notices = [c for c in channel.send.await_args_list if "view" not in c.kwargs]
    assert len(notices) == 1  # nothing new to say while step 3 has work (pairs aside)
