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
    """The job in flight on one worker, for `/status` and the demo's live view.

    ComfyUI reports progress per node: every node goes from 0 of 1 to 1 of 1 as it starts and
    ends (a sampler counts its steps in between). The job's share done is the mean over the
    workflow's `nodes` of each node's own share, so the bar moves through a graph of image nodes
    as through a sampler's steps.
    """

    job_id: int
    run_id: int
    step: int
    worker: str
    started: float = field(default_factory=time.monotonic)
    nodes: int = 0  # nodes in the submitted workflow; 0 when not known (a recovered job)
    node: str | None = None
    value: float = 0.0
    maximum: float = 0.0
    done: dict[str, float] = field(default_factory=dict)  # node id -> its share done

    def report(self, node: str, value: float, maximum: float) -> None:
        self.node, self.value, self.maximum = node, value, maximum
        self.done[node] = min(max(value / maximum, 0.0), 1.0) if maximum > 0 else 0.0

    @property
    def fraction(self) -> float:
        if self.nodes:
            return min(sum(self.done.values()) / max(self.nodes, len(self.done)), 1.0)
        return self.value / self.maximum if self.maximum else 0.0


EventHandler = Callable[[SchedulerEvent], Awaitable[None]]
