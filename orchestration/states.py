"""The states a run, a candidate and a job go through, and why a run is held.

They belong to the rules (orchestration/), and the database stores them (db/models.py imports
them). This module imports nothing of ours, so the models can.
"""

from __future__ import annotations

import enum

__all__ = [
    "IN_FLIGHT",
    "CandidateStatus",
    "HoldKind",
    "JobMode",
    "JobStatus",
    "RunStatus",
    "SelectionOrder",
]


class RunStatus(enum.StrEnum):
    running = "running"
    completed = "completed"


class SelectionOrder(enum.StrEnum):
    breadth_first = "breadth_first"
    finish_first = "finish_first"


class CandidateStatus(enum.StrEnum):
    active = "active"
    rejected = "rejected"


class JobMode(enum.StrEnum):
    base_generation = "base_generation"
    child_generation = "child_generation"


class HoldKind(enum.StrEnum):
    """Why a run is on hold, which decides who lifts it."""

    failures = "failures"  # jobs kept failing: a person fixes the cause, then /resume
    storage = "storage"  # the data folder cannot take files: lifted once a write works
    workers = "workers"  # no worker has what the run needs: lifted once one has


class JobStatus(enum.StrEnum):
    pending = "pending"
    submitted = "submitted"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


IN_FLIGHT = (JobStatus.pending, JobStatus.submitted, JobStatus.running)
