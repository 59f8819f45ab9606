"""The data model: pipelines and their steps, runs, candidates, votes, jobs, scheduler state.

A step inside a run is addressed by `(run_id, step)` where `step` is the 1-based position in the
pipeline; candidates, jobs and votes carry that pair and reference `pipeline_run_steps` with a
composite foreign key, so a row can never point at a step its run does not have.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Enum,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.base import Base, utcnow
from orchestration.states import (
    CandidateStatus,
    HoldKind,
    JobMode,
    JobStatus,
    RunStatus,
    SelectionOrder,
)


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    """Enum stored as its value with a CHECK constraint, portable across SQLite and PostgreSQL."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [m.value for m in members],
    )


# Ids that outlive their rows (in vote buttons, folder and file names, ComfyUI's outputs) are
# never given twice, even after a deletion: SQLite otherwise reuses the highest id.
NEVER_REUSED: dict[str, Any] = {"sqlite_autoincrement": True}


class Pipeline(Base):
    __tablename__ = "pipelines"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Run variables' defaults from pipeline.yaml: a run takes them where /run start is silent.
    defaults: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))

    steps: Mapped[list[PipelineStep]] = relationship(
        back_populates="pipeline", lazy="raise", order_by="PipelineStep.position"
    )


class PipelineStep(Base):
    __tablename__ = "pipeline_steps"
    __table_args__ = (
        UniqueConstraint("pipeline_id", "position"),
        CheckConstraint("position >= 1", name="position_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id", ondelete="CASCADE"))
    position: Mapped[int]
    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(100))
    workflow: Mapped[dict[str, Any]]
    # Run variables the workflow needs (placeholders other than the ones the system fills).
    variables: Mapped[list[str]]

    pipeline: Mapped[Pipeline] = relationship(back_populates="steps", lazy="raise")


class PipelineRun(Base):
    __tablename__ = "pipeline_runs"
    __table_args__ = (
        CheckConstraint("max_children >= 1", name="max_children_positive"),
        CheckConstraint("target_leaves >= 1", name="target_leaves_positive"),
        CheckConstraint("budget >= 1", name="budget_positive"),
        CheckConstraint("top_k >= 1", name="top_k_positive"),
        CheckConstraint("base_quota >= 0", name="base_quota_not_negative"),
        Index("ix_pipeline_runs_status_id", "status", "id"),
        NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"))
    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[RunStatus] = mapped_column(
        _enum(RunStatus, "run_status"), default=RunStatus.running
    )
    variables: Mapped[dict[str, Any]]
    max_children: Mapped[int]  # N
    target_leaves: Mapped[int]  # T, used only with gates off
    order: Mapped[SelectionOrder] = mapped_column(_enum(SelectionOrder, "selection_order"))
    gates: Mapped[bool]
    budget: Mapped[int]
    top_k: Mapped[int]  # the k suggested when a step of this run is approved
    # How many step-1 candidates the run may have; starts at N, deficit mode raises it by N.
    base_quota: Mapped[int]
    folder: Mapped[str] = mapped_column(String(200), default="")
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    held_reason: Mapped[str | None] = mapped_column(Text)
    held_at: Mapped[datetime | None]
    held_kind: Mapped[HoldKind | None] = mapped_column(_enum(HoldKind, "hold_kind"))
    created_by: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    # When the channel was told the run has no work left; cleared once it has work again,
    # so the next time it runs dry is told too (orchestration.notices).
    no_work_notified_at: Mapped[datetime | None]

    pipeline: Mapped[Pipeline] = relationship(lazy="raise")
    steps: Mapped[list[PipelineRunStep]] = relationship(
        back_populates="run", lazy="raise", order_by="PipelineRunStep.step"
    )


class PipelineRunStep(Base):
    __tablename__ = "pipeline_run_steps"
    __table_args__ = (CheckConstraint("top_k IS NULL OR top_k >= 1", name="top_k_positive"),)

    run_id: Mapped[int] = mapped_column(
        ForeignKey("pipeline_runs.id", ondelete="CASCADE"), primary_key=True
    )
    step: Mapped[int] = mapped_column(primary_key=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("pipeline_steps.id"))
    approved: Mapped[bool] = mapped_column(default=False)
    approved_at: Mapped[datetime | None]
    approved_by: Mapped[str | None] = mapped_column(String(100))
    top_k: Mapped[int | None]
    # When the channel was told this step awaits approval: once per step (orchestration.notices).
    awaiting_notified_at: Mapped[datetime | None]

    run: Mapped[PipelineRun] = relationship(back_populates="steps", lazy="raise")
    pipeline_step: Mapped[PipelineStep] = relationship(lazy="raise")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        ForeignKeyConstraint(
            ["run_id", "step"], ["pipeline_run_steps.run_id", "pipeline_run_steps.step"]
        ),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index("ix_jobs_run_id_status", "run_id", "status"),
        Index("ix_jobs_status_id", "status", "id"),
        Index("ix_jobs_parent_id", "parent_id"),
        NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"))
    step: Mapped[int]
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("image_candidates.id", use_alter=True, name="fk_jobs_parent_id")
    )
    mode: Mapped[JobMode] = mapped_column(_enum(JobMode, "job_mode"))
    reason: Mapped[str] = mapped_column(Text, default="")
    seed: Mapped[int] = mapped_column(BigInteger)
    # The values filled into the step's workflow (seed, output prefix, parent image, run
    # variables): with the step's template they give the prompt, without storing a copy of it.
    placeholder_values: Mapped[dict[str, Any] | None]
    prompt_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    worker: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[JobStatus] = mapped_column(
        _enum(JobStatus, "job_status"), default=JobStatus.pending
    )
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class ImageCandidate(Base):
    __tablename__ = "image_candidates"
    __table_args__ = (
        ForeignKeyConstraint(
            ["run_id", "step"], ["pipeline_run_steps.run_id", "pipeline_run_steps.step"]
        ),
        UniqueConstraint("job_id", "output_index"),
        CheckConstraint("child_slots >= 0", name="child_slots_not_negative"),
        CheckConstraint("votes >= 0", name="votes_not_negative"),
        # Selection: the parents of one run that are active with room for children.
        Index(
            "ix_image_candidates_selection",
            "run_id",
            "status",
            "step",
            "child_slots",
            "advancing",
        ),
        Index("ix_image_candidates_run_step_elo", "run_id", "step", "elo"),
        Index("ix_image_candidates_parent_id", "parent_id"),
        NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"))
    step: Mapped[int]
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("image_candidates.id"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    output_index: Mapped[int] = mapped_column(default=0)
    seed: Mapped[int] = mapped_column(BigInteger)
    image_path: Mapped[str] = mapped_column(Text)
    # Rating on the Elo scale and its standard deviation, refitted from all votes of the step
    # by orchestration.refits; before any vote: 1000 and the prior's spread (PRIOR_ELO_SD).
    elo: Mapped[float] = mapped_column(default=1000.0, server_default=text("1000.0"))
    elo_sd: Mapped[float] = mapped_column(default=491.35, server_default=text("491.35"))
    votes: Mapped[int] = mapped_column(default=0)
    status: Mapped[CandidateStatus] = mapped_column(
        _enum(CandidateStatus, "candidate_status"), default=CandidateStatus.active
    )
    # True: may be a parent; False: filtered by an approval; None: its step is not approved yet.
    advancing: Mapped[bool | None]
    # Children that exist plus child jobs in flight; kept by orchestration.jobs in the same
    # transaction as the rows it counts, so selection needs no per-candidate count.
    child_slots: Mapped[int] = mapped_column(default=0)
    rejected_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    parent: Mapped[ImageCandidate | None] = relationship(remote_side=[id], lazy="raise")


class Vote(Base):
    __tablename__ = "votes"
    __table_args__ = (
        ForeignKeyConstraint(
            ["run_id", "step"], ["pipeline_run_steps.run_id", "pipeline_run_steps.step"]
        ),
        UniqueConstraint("voter", "low_id", "high_id"),
        CheckConstraint("low_id < high_id", name="pair_ordered"),
        CheckConstraint("winner_id = low_id OR winner_id = high_id", name="winner_in_pair"),
        # Covers the query that refits a step's ratings: its results, grouped by pair and winner.
        Index("ix_votes_step_results", "run_id", "step", "low_id", "high_id", "winner_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"))
    step: Mapped[int]
    low_id: Mapped[int] = mapped_column(ForeignKey("image_candidates.id"))
    high_id: Mapped[int] = mapped_column(ForeignKey("image_candidates.id"))
    winner_id: Mapped[int] = mapped_column(ForeignKey("image_candidates.id"))
    voter: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PairPost(Base):
    """A pair posted with vote buttons in a run's channel; open until someone answers it.

    Kept so the bot never has more than a few unanswered pairs out per run, never posts the
    same pair twice at once, and knows the message to update when a pair goes out of date.
    A row is written before its message is sent (`message_id` empty until then).
    """

    __tablename__ = "pair_posts"
    __table_args__ = (
        ForeignKeyConstraint(
            ["run_id", "step"], ["pipeline_run_steps.run_id", "pipeline_run_steps.step"]
        ),
        CheckConstraint("a_id <> b_id", name="two_candidates"),
        Index("ix_pair_posts_run_open", "run_id", "answered_at"),
        Index("ix_pair_posts_message_id", "message_id"),
        NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"))
    step: Mapped[int]
    a_id: Mapped[int] = mapped_column(ForeignKey("image_candidates.id"))
    b_id: Mapped[int] = mapped_column(ForeignKey("image_candidates.id"))
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    posted_at: Mapped[datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(200))


class SchedulerState(Base):
    """One row: where the round-robin over runs stands, so a restart keeps its place."""

    __tablename__ = "scheduler_state"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=1)
    last_run_id: Mapped[int | None]


class ComfyWorker(Base):
    """One ComfyUI URL this installation has used, with the client id it always gives it.

    ComfyUI sends a prompt's websocket frames only to the client id that queued it; keeping
    the id across restarts lets a restarted bot hear the end of a prompt it queued before.
    """

    __tablename__ = "comfy_workers"

    url: Mapped[str] = mapped_column(String(200), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
