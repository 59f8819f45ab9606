"""Starting, completing and resuming a run, and which run a person means."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.context import App, RunRef
from app.transaction import look, transaction
from orchestration import runs
from orchestration.overview import (
    RunOverview,
    run_in_question,
    run_overview,
    run_overviews,
    set_run_channel,
)
from orchestration.runs import RunCreated, RunSettings


@dataclass(frozen=True)
class RunChanged:
    """A run after a person changed it: what a reply names, and where its channel is."""

    id: int
    name: str
    channel_id: int | None


async def which_run(app: App, ref: RunRef) -> int:
    async with look(app) as session:
        return await run_in_question(session, ref.run_id, ref.channel_id)


async def start_run(
    app: App,
    pipeline: str | int,
    name: str,
    variables: dict[str, Any],
    settings: RunSettings,
    *,
    created_by: str = "",
    wake: bool = True,
) -> RunCreated:
    """A new run, refused before anything is written if no worker can serve it. `wake=False`
    leaves waking to `channel_opened`, so the first candidates find the run's channel."""
    async with transaction(app) as session:
        created = await runs.create_run(
            session, pipeline, name, variables, settings, created_by=created_by, check=app.check
        )
    if wake:
        app.wake()
    return created


async def channel_opened(app: App, run_id: int, channel_id: int | None) -> None:
    """The run's channel is made (or could not be: None); its work can begin."""
    if channel_id is not None:
        async with transaction(app) as session:
            await set_run_channel(session, run_id, channel_id)
    app.wake()


async def complete_run(app: App, run_id: int) -> RunChanged:
    async with transaction(app) as session:
        run = await runs.complete_run(session, run_id)
        return RunChanged(run.id, run.name, run.channel_id)


async def resume_run(app: App, ref: RunRef) -> RunChanged:
    async with transaction(app) as session:
        run_id = await run_in_question(session, ref.run_id, ref.channel_id)
        run = await runs.resume_run(session, run_id)
        done = RunChanged(run.id, run.name, run.channel_id)
    app.wake()
    return done


async def list_runs(app: App) -> list[RunOverview]:
    async with look(app) as session:
        return await run_overviews(session)


async def run_state(app: App, run_id: int) -> RunOverview:
    async with look(app) as session:
        return await run_overview(session, run_id)
