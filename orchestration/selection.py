"""Which job comes next (docs/architecture.md, "Choosing the next job").

`select_next_job` only reads: it returns a decision and changes nothing, so it can be called to
preview or to measure. `orchestration.jobs.claim_next_job` turns a decision into a job.
Every count here is an indexed aggregate; candidates are never loaded to be counted.
"""

from __future__ import annotations

import random
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CursorResult,
    Executable,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ImageCandidate, Job, PipelineRun, PipelineStep, SchedulerState
from orchestration.states import IN_FLIGHT, CandidateStatus, RunStatus, SelectionOrder


class Mode(StrEnum):
    base_generation = "base_generation"
    child_generation = "child_generation"
    no_work = "no_work"


@dataclass(frozen=True)
class JobDecision:
    mode: Mode
    reason: str
    run_id: int | None = None
    step: int | None = None  # the step the new job makes a candidate for
    parent_id: int | None = None
    deficit: bool = False  # base generation because the final step is below T (gates off)

    @property
    def has_work(self) -> bool:
        return self.mode is not Mode.no_work


@dataclass(frozen=True)
class RunPlan:
    """What selection needs to know of one run: its settings and its pipeline's length."""

    id: int
    max_children: int
    target_leaves: int
    order: SelectionOrder
    gates: bool
    budget: int
    base_quota: int
    steps: int


@dataclass(frozen=True)
class RunCounts:
    made: int  # candidates the run has, any status
    in_flight: int  # its jobs pending, submitted or running
    base_made: int
    base_in_flight: int
    final_active: int  # active candidates at the final step plus final-step jobs in flight

    @property
    def base_total(self) -> int:
        return self.base_made + self.base_in_flight


# Statements are built once with bind parameters: building and cache-keying a fresh statement
# costs more than running it, and selection runs after every job.
_STEPS_OF_PIPELINE = (
    select(func.count())
    .where(PipelineStep.pipeline_id == PipelineRun.pipeline_id)
    .correlate(PipelineRun)
    .scalar_subquery()
)
_RUN_COLUMNS = (
    PipelineRun.id,
    PipelineRun.max_children,
    PipelineRun.target_leaves,
    PipelineRun.order,
    PipelineRun.gates,
    PipelineRun.budget,
    PipelineRun.base_quota,
    _STEPS_OF_PIPELINE,
)
_ROTATION = (
    select(
        PipelineRun.id,
        select(SchedulerState.last_run_id).where(SchedulerState.id == 1).scalar_subquery(),
    )
    .where(PipelineRun.status == RunStatus.running, PipelineRun.held_reason.is_(None))
    .order_by(PipelineRun.id)
)


def _count(model: type[ImageCandidate] | type[Job], *where: ColumnElement[bool]) -> Any:
    return select(func.count()).select_from(model).where(*where).scalar_subquery()


_RUN: BindParameter[int] = bindparam("run_id", type_=Integer)
_FINAL: BindParameter[int] = bindparam("final_step", type_=Integer)
_C, _J = ImageCandidate, Job
_FLYING = and_(_J.run_id == _RUN, _J.status.in_(IN_FLIGHT))
# One round trip for everything selection needs to know of a run.
_PLAN_AND_COUNTS = select(
    *_RUN_COLUMNS,
    _count(_C, _C.run_id == _RUN),
    _count(_J, _FLYING),
    _count(_C, _C.run_id == _RUN, _C.step == 1),
    _count(_J, _FLYING, _J.step == 1),
    _count(
        _C, _C.run_id == _RUN, _C.status == CandidateStatus.active, _C.step == _STEPS_OF_PIPELINE
    ),
    _count(_J, _FLYING, _J.step == _STEPS_OF_PIPELINE),
).where(PipelineRun.id == _RUN)


async def _core(
    session: AsyncSession, stmt: Executable, params: dict[str, Any] | None = None
) -> CursorResult[Any]:
    """Run a Core statement on the session's connection, skipping the ORM layer it needs not."""
    conn = await session.connection()
    return await conn.execute(stmt, params)


async def runs_in_rotation(session: AsyncSession) -> list[int]:
    """Ids of running runs without a hold, starting after the run that got the previous job."""
    rows = (await _core(session, _ROTATION)).all()
    ids = [row[0] for row in rows]
    cursor = rows[0][1] if rows else None
    start = 0 if cursor is None else next((i for i, r in enumerate(ids) if r > cursor), 0)
    return ids[start:] + ids[:start]


PlanAndCounts = tuple[RunPlan, RunCounts]


async def plan_and_counts(session: AsyncSession, run_id: int) -> PlanAndCounts | None:
    """A run's knobs and its job and candidate counts, in one statement. The functions that
    take `found` accept it read once by their caller, so one look at a run reads it once."""
    row = (await _core(session, _PLAN_AND_COUNTS, {"run_id": run_id})).first()
    if row is None:
        return None
    made, flying, base, base_flying, final, final_flying = row[8:]
    return RunPlan(*row[:8]), RunCounts(made, flying, base, base_flying, final + final_flying)


def eligible_parent_filter(gates: bool) -> list[ColumnElement[bool]]:
    """Candidates that may get a child now (docs/architecture.md, "Choosing the next job", 3), for
    bind parameters `run_id`, `final_step` and `max_children`.

    With gates on, `advancing IS TRUE` already implies an approved step: only an approval (or
    step 1 at creation) ever sets it true.
    """
    where = [
        _C.run_id == _RUN,
        _C.status == CandidateStatus.active,
        _C.step < _FINAL,
        _C.child_slots < bindparam("max_children"),
    ]
    if gates:
        where.append(_C.advancing.is_(True))
    return where


def eligible_params(run: RunPlan) -> dict[str, int]:
    return {"run_id": run.id, "final_step": run.steps, "max_children": run.max_children}


def _raffle_statement(gates: bool, order: SelectionOrder) -> Select[tuple[int, int, int]]:
    """The raffle among the eligible parents of the group (docs/architecture.md, "Choosing the
    next job", 4), drawn in the database: each candidate holds a slice of [0, total) as wide as
    max(elo, 1), in id order, and the one whose slice holds `u`·total wins (what
    `random.choices` does with weights). Only the winner comes back, so a bigger tree costs
    SQLite a longer scan, not Python rows.
    Returns (winner, its step, how many were in the raffle)."""
    where = eligible_parent_filter(gates)
    pick = func.min(_C.step) if order is SelectionOrder.breadth_first else func.max(_C.step)
    group_step = select(pick).where(*where).scalar_subquery()
    weight = case((_C.elo > 1.0, _C.elo), else_=1.0)
    tickets = (
        select(
            _C.id,
            _C.step,
            func.sum(weight).over(order_by=_C.id).label("upto"),
            func.sum(weight).over().label("total"),
            func.row_number().over(order_by=_C.id).label("place"),
            func.count().over().label("entrants"),
        )
        .where(*where, _C.step == group_step)
        .subquery()
    )
    return (
        select(tickets.c.id, tickets.c.step, tickets.c.entrants)
        # The last entrant always qualifies, so rounding can never leave the raffle without a
        # winner.
        .where(or_(tickets.c.upto > bindparam("u") * tickets.c.total,
                   tickets.c.place == tickets.c.entrants))
        .order_by(tickets.c.id)
        .limit(1)
    )


_RAFFLES = {(g, o): _raffle_statement(g, o) for g in (True, False) for o in SelectionOrder}


async def decide_for_run(
    session: AsyncSession, run_id: int, rng: random.Random, *,
    found: PlanAndCounts | None = None,
) -> JobDecision | None:
    """The job this run would get now, or None when it has no work."""
    found = found or await plan_and_counts(session, run_id)
    if found is None:
        return None
    run, counts = found
    if counts.made + counts.in_flight >= run.budget:
        return None
    base_open = counts.base_total < run.base_quota
    base = JobDecision(
        Mode.base_generation,
        f"run {run.id}: base image {counts.base_total + 1} of {run.base_quota} for step 1",
        run.id,
        1,
    )
    if base_open and run.order is SelectionOrder.breadth_first:
        return base

    params = {**eligible_params(run), "u": rng.random()}
    won = (await _core(session, _RAFFLES[(run.gates, run.order)], params)).first()
    if won is not None:
        parent_id, parent_step, entrants = won
        return JobDecision(
            Mode.child_generation,
            f"run {run.id}: step {parent_step} parent #{parent_id} won raffle among {entrants}",
            run.id,
            parent_step + 1,
            parent_id,
        )
    if base_open:
        return base
    if not run.gates and counts.final_active < run.target_leaves:
        return JobDecision(
            Mode.base_generation,
            f"run {run.id}: deficit, final step has {counts.final_active} of "
            f"{run.target_leaves} wanted; {run.max_children} more base images",
            run.id,
            1,
            deficit=True,
        )
    return None


async def select_next_job(
    session: AsyncSession, rng: random.Random, skip_runs: AbstractSet[int] = frozenset()
) -> JobDecision:
    """Round-robin over runs after the one that got the previous job; first with work wins.

    Runs in `skip_runs` (ones the asking worker cannot serve) keep their place in the rotation
    but get no job from this call."""
    runs = await runs_in_rotation(session)
    if not runs:
        return JobDecision(Mode.no_work, "no running runs without a hold")
    skipped: list[int] = []
    for run_id in runs:
        if run_id in skip_runs:
            continue
        decision = await decide_for_run(session, run_id, rng)
        if decision is not None:
            if skipped:
                ids = ", ".join(str(i) for i in skipped)
                decision = JobDecision(
                    decision.mode,
                    f"{decision.reason} (runs without work skipped: {ids})",
                    decision.run_id,
                    decision.step,
                    decision.parent_id,
                    decision.deficit,
                )
            return decision
        skipped.append(run_id)
    unfit = f", {len(skip_runs & set(runs))} this worker cannot serve" if skip_runs else ""
    return JobDecision(Mode.no_work, f"no run has work ({len(runs)} running{unfit})")
