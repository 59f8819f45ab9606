"""Approval gates (docs/architecture.md, "Approvals"): a person lets the global top-k of a step
grow further."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.base import utcnow
from db.models import ImageCandidate, Job, PipelineRunStep
from orchestration.confidence import Confidence, check_k, top_k_confidence
from orchestration.errors import Conflict, InvalidInput, NotFound
from orchestration.ranking import RANKING
from orchestration.refits import refit_step
from orchestration.runs import get_running_run
from orchestration.selection import (
    PlanAndCounts,
    RunCounts,
    RunPlan,
    eligible_params,
    eligible_parent_filter,
    plan_and_counts,
)
from orchestration.states import IN_FLIGHT, CandidateStatus
from orchestration.text import person


@dataclass(frozen=True)
class RankedCandidate:
    id: int
    elo: float
    votes: int
    parent_id: int | None
    image_path: str


def decided_by_approval(approved: bool, top_k: int | None) -> bool:
    """Whether /approve has decided the step: approved with its k. Step 1 is approved when its
    run starts, without a k: it only steers the raffle, and its candidates are still compared."""
    return approved and top_k is not None


@dataclass(frozen=True)
class ApprovalResult:
    run_id: int
    step: int
    k: int
    advancing: list[RankedCandidate]
    not_advancing: int


async def ranked_candidates(
    session: AsyncSession, run_id: int, step: int, limit: int | None = None
) -> list[RankedCandidate]:
    """Active candidates of one step, best first, by the one ranking rule (ratings.RANKING)."""
    c = ImageCandidate
    stmt = (
        select(c.id, c.elo, c.votes, c.parent_id, c.image_path)
        .where(c.run_id == run_id, c.step == step, c.status == CandidateStatus.active)
        .order_by(*RANKING)
        .limit(limit)
    )
    return [RankedCandidate(*tuple(row)) for row in await session.execute(stmt)]


async def _run_step(session: AsyncSession, run_id: int, step: int, steps: int) -> PipelineRunStep:
    run_step = await session.get(PipelineRunStep, (run_id, step), with_for_update=True)
    if run_step is None:
        raise NotFound(f"Run #{run_id} has steps 1–{steps}; there is no step {step}.")
    return run_step


@dataclass(frozen=True)
class ApprovalPreview:
    k: int  # the k asked for, or the run's when none was
    top: list[RankedCandidate]
    confidence: Confidence


async def approval_preview(
    session: AsyncSession, run_id: int, step: int, k: int | None = None
) -> ApprovalPreview:
    """The candidates `approve_step` would let advance, after the same checks, and how sure
    the ranking is of them; changes no decision. k None: the run's k."""
    _, k, top = await _checked(session, run_id, step, k)
    return ApprovalPreview(k, top, await top_k_confidence(session, run_id, step, k))


async def _checked(
    session: AsyncSession, run_id: int, step: int, k: int | None
) -> tuple[PipelineRunStep, int, list[RankedCandidate]]:
    """The step after every check, the k that applies (the run's when None) and its top k."""
    run = await get_running_run(session, run_id)
    k = run.top_k if k is None else k
    found = await plan_and_counts(session, run.id)
    assert found is not None
    plan = found[0]
    check_k(k)
    # The stored ratings follow the votes a moment later; the decision takes the latest.
    await refit_step(session, run.id, step)
    run_step = await _run_step(session, run.id, step, plan.steps)
    if step == plan.steps:
        raise InvalidInput(
            f"Step {step} is the final step of run #{run.id}: nothing grows from it, "
            "so it has no approval."
        )
    if step == 1:
        raise Conflict(
            f"Step 1 of run #{run.id} needs no approval: it is approved when the run starts, "
            "and every base image may grow. Approve step 2 or later."
        )
    if run_step.approved:
        when = f" on {run_step.approved_at:%Y-%m-%d %H:%M} UTC" if run_step.approved_at else ""
        who = f" by {person(run_step.approved_by)}" if run_step.approved_by else ""
        raise Conflict(f"Step {step} of run #{run.id} is already approved{when}{who}.")
    top = await ranked_candidates(session, run.id, step, limit=k)
    if not top:
        raise Conflict(f"Step {step} of run #{run.id} has no active candidates to approve yet.")
    return run_step, k, top


async def approve_step(
    session: AsyncSession, run_id: int, step: int, k: int | None, by: str
) -> ApprovalResult:
    """One-way: the top-k active candidates of `step` advance, every other one does not.
    k None: the run's k."""
    run_step, k, top = await _checked(session, run_id, step, k)
    run_id = run_step.run_id

    c = ImageCandidate
    await session.execute(
        update(c).where(c.run_id == run_id, c.step == step).values(advancing=False)
    )
    await session.execute(update(c).where(c.id.in_([t.id for t in top])).values(advancing=True))
    total = await session.scalar(select(func.count()).where(c.run_id == run_id, c.step == step))
    run_step.approved = True
    run_step.approved_at = utcnow()
    run_step.approved_by = by
    run_step.top_k = k
    await session.flush()
    return ApprovalResult(run_id, step, k, top, int(total or 0) - len(top))


async def awaiting_approval(
    session: AsyncSession, run_id: int, *, found: PlanAndCounts | None = None
) -> list[int]:
    """Steps that are not approved, have candidates, and can get no more (docs/architecture.md,
    "Approvals")."""
    found = found or await plan_and_counts(session, run_id)
    if found is None or not found[0].gates:
        return []
    plan, counts = found
    c = ImageCandidate
    rows = await session.execute(
        select(PipelineRunStep.step)
        .where(
            PipelineRunStep.run_id == run_id,
            PipelineRunStep.approved.is_(False),
            PipelineRunStep.step < plan.steps,
            exists().where(c.run_id == run_id, c.step == PipelineRunStep.step),
        )
        .order_by(PipelineRunStep.step)
    )
    steps = list(rows.scalars())
    return [s for s in steps if await _settled_up_to(session, plan, counts, s)]


async def _settled_up_to(
    session: AsyncSession, plan: RunPlan, counts: RunCounts, step: int
) -> bool:
    """True when nothing upstream can still add a candidate at `step` or before."""
    upstream = exists().where(*eligible_parent_filter(plan.gates), ImageCandidate.step < step)
    flying = exists().where(and_(Job.run_id == plan.id, Job.step <= step,
                                 Job.status.in_(IN_FLIGHT)))
    if await session.scalar(select(or_(upstream, flying)), eligible_params(plan)):
        return False
    return counts.base_total >= plan.base_quota or counts.made + counts.in_flight >= plan.budget
