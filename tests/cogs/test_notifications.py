"""Scheduler news reaches the right channels."""

from __future__ import annotations

from cogs.notifications import Notifications
from orchestration.overview import set_run_channel
from orchestration.runs import complete_run
from orchestration.scheduler import SchedulerEvent
from tests.factories import make_pipeline, make_run
from tests.helpers import fake_text_channel, make_bot


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


async def test_worker_news_goes_to_running_runs(session_factory, tmp_path):
    cog, channels = await setup_runs(session_factory, tmp_path)
    await cog.on_scheduler_event(SchedulerEvent(
        "worker_down", "ComfyUI at http://gpu:8188 is not reachable: connection refused",
        "http://gpu:8188"))
    assert channels["a"].send.await_count == channels["b"].send.await_count == 1
    assert channels["done"].send.await_count == 0
    await cog.on_scheduler_event(SchedulerEvent("job_succeeded", "1 new", "http://gpu:8188", 1))
    assert channels["a"].send.await_count == 1  # routine news is not posted
