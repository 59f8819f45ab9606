"""Runs as use cases: which run a person means, and the scheduler woken by what makes work."""

from __future__ import annotations

import pytest

from app.context import App, RunRef
from app.runs import channel_opened, complete_run, resume_run, start_run, which_run
from orchestration.errors import InvalidInput
from orchestration.runs import RunCreated, RunSettings
from tests.committed import hold_run
from tests.factories import make_pipeline


async def started(session_factory, tmp_path) -> tuple[App, list[int], RunCreated]:
    """A run started without waking; the list records each wake from here on."""
    async with session_factory() as s:
        await make_pipeline(s, tmp_path)
    woken: list[int] = []
    use = App(session_factory, wake=lambda: woken.append(1))
    made = await start_run(use, "test-pipeline", "Gym", {"prompt": "a cat"}, RunSettings(),
                           wake=False)
    return use, woken, made


async def test_starting_waits_for_the_channel_when_asked_to(session_factory, tmp_path):
    use, woken, made = await started(session_factory, tmp_path)
    assert woken == []
    await channel_opened(use, made.run_id, 4242)
    assert woken == [1]
    assert await which_run(use, RunRef(None, 4242)) == made.run_id  # the channel's run
    assert await which_run(use, RunRef(7, 4242)) == 7  # the one picked wins
    with pytest.raises(InvalidInput, match="pick the run with the `run` option"):
        await which_run(use, RunRef(None, 1))
    await start_run(use, "test-pipeline", "Gym 2", {"prompt": "a cat"}, RunSettings())
    assert woken == [1, 1]


async def test_resuming_wakes_and_completing_does_not(session_factory, tmp_path):
    use, woken, made = await started(session_factory, tmp_path)
    async with session_factory() as s:
        await hold_run(s, made.run_id, "3 jobs failed")
    resumed = await resume_run(use, RunRef(made.run_id))
    assert (resumed.id, resumed.name, woken) == (made.run_id, "Gym", [1])
    done = await complete_run(use, made.run_id)
    assert (done.id, done.channel_id, woken) == (made.run_id, None, [1])
