"""What every use case needs from the process it runs in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from db.engine import SessionFactory
from orchestration.runs import WorkerCheck


def _no_scheduler() -> None:
    """Nothing to wake: a process without a scheduler (the command line, a test)."""


@dataclass(frozen=True)
class App:
    """The database and the scheduler, as the use cases see them.

    `wake` tells the scheduler that there may be work; a use case that made work calls it after
    its commit, so no caller has to remember. `check` says why no worker could serve a run's
    steps with these values (empty: one can); without it, runs are not checked before they
    start.
    """

    sessions: SessionFactory
    wake: Callable[[], None] = field(default=_no_scheduler)
    check: WorkerCheck | None = None


@dataclass(frozen=True)
class RunRef:
    """Which run an interaction is about: the one picked, else the run of the channel it came
    from (`orchestration.overview.run_in_question`)."""

    run_id: int | None
    channel_id: int | None = None
