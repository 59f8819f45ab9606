"""What the scheduler tells the bot: events worth telling people, and the job in flight on
each worker."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from orchestration.states import HoldKind

EventKind = Literal["job_succeeded", "job_failed", "run_held", "run_resumed", "worker_down",
                    "worker_up", "worker_unhealthy"]


@dataclass(frozen=True)
class SchedulerEvent:
    """Something the bot may tell people about."""

    kind: EventKind
    message: str
    worker: str
    run_id: int | None = None
    job_id: int | None = None
    step: int | None = None
    candidate_ids: tuple[int, ...] = ()
    image_paths: tuple[str, ...] = ()  # the new candidates' files, relative to DATA_DIR
    hold_kind: HoldKind | None = None  # run_held: who lifts it


@dataclass
class JobProgress:
    """The job in flight on one worker, for `/status` and the demo's live view."""

    job_id: int
    run_id: int
    step: int
    worker: str
    started: float = field(default_factory=time.monotonic)
    node: str | None = None
    value: float = 0.0
    maximum: float = 0.0

    @property
    def fraction(self) -> float:
        return self.value / self.maximum if self.maximum else 0.0


EventHandler = Callable[[SchedulerEvent], Awaitable[None]]
