"""Read models for the Discord surface: every run at a glance, finding a run by channel, a
step's gallery (with how sure its top k is) and one candidate with its lineage."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, String, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.models import ImageCandidate, Pipeline, PipelineRun, PipelineRunStep, PipelineStep, Vote
from orchestration.approvals import awaiting_approval
from orchestration.confidence import Confidence, top_k_confidence
from orchestration.errors import InvalidInput, NotFound
from orchestration.ranking import RANKING
from orchestration.runs import get_run
from orchestration.selection import PlanAndCounts, decide_for_run, plan_and_counts
from orchestration.states import CandidateStatus, RunStatus


@dataclass(frozen=True)
class StepOverview:
    step: int
    name: str
    candidates: int  # active ones
    approved: bool
    awaiting_approval: bool


@dataclass(frozen=True)
class RunOverview:
    id: int
    name: str
    pipeline: str
    status: RunStatus
    held_reason: str | None
    channel_id: int | None
    votes: int
    has_work: bool
    steps: list[StepOverview]
    in_flight: int = 0  # its jobs not ended yet

    @property
    def finished(self) -> bool:
        return run_finished(
            has_work=self.has_work,
            in_flight=self.in_flight,
            held=self.held_reason is not None,
            awaiting=any(s.awaiting_approval for s in self.steps),
        )

    @property
    def completion(self) -> float:
        """Share of steps finished: approved, or for the final step filled with no work left."""
        done = sum(1 for s in self.steps[:-1] if s.approved)
        final = self.steps[-1] if self.steps else None
        if (
            final is not None
            and final.candidates
            and (not self.has_work or self.status is RunStatus.completed)
        ):
            done += 1
        return done / len(self.steps) if self.steps else 0.0


def run_finished(*, has_work: bool, in_flight: int, held: bool, awaiting: bool) -> bool:
    """Nothing more will come of a run without a person: no work, no job still running (its
    end brings another look), no step awaiting approval, no hold."""
    return not has_work and in_flight == 0 and not held and not awaiting


async def jobs_in_flight(
    session: AsyncSession, run_id: int, *, found: PlanAndCounts | None = None
) -> int:
    found = found or await plan_and_counts(session, run_id)
    return found[1].in_flight if found is not None else 0


async def run_has_work(
    session: AsyncSession, run_id: int, *, found: PlanAndCounts | None = None
) -> bool:
    """Whether selection would give this run a job now (a held or completed run has none)."""
    run = await session.get(PipelineRun, run_id)
    if run is None or run.status is RunStatus.completed or run.held_reason is not None:
        return False
    # The raffle's draw does not matter here, only whether there is something to draw.
    return await decide_for_run(session, run_id, random.Random(0), found=found) is not None


async def run_overview(session: AsyncSession, run_id: int) -> RunOverview:
    run = await get_run(session, run_id)
    name = await session.scalar(select(Pipeline.name).where(Pipeline.id == run.pipeline_id))
    rows = (
        await session.execute(
            select(PipelineRunStep.step, PipelineStep.name, PipelineRunStep.approved)
            .join(PipelineStep, PipelineStep.id == PipelineRunStep.step_id)
            .where(PipelineRunStep.run_id == run_id)
            .order_by(PipelineRunStep.step)
        )
    ).all()
    counts = dict(
        (
            await session.execute(
                select(ImageCandidate.step, func.count())
                .where(
                    ImageCandidate.run_id == run_id, ImageCandidate.status == CandidateStatus.active
                )
                .group_by(ImageCandidate.step)
            )
        )
        .tuples()
        .all()
    )
    votes = await session.scalar(select(func.count()).where(Vote.run_id == run_id)) or 0
    found = await plan_and_counts(session, run_id)
    waiting = (
        set(await awaiting_approval(session, run_id, found=found))
        if run.status is RunStatus.running else set()
    )
    return RunOverview(
        run.id,
        run.name,
        name or "",
        run.status,
        run.held_reason,
        run.channel_id,
        int(votes),
        await run_has_work(session, run_id, found=found),
        [
            StepOverview(step, step_name, counts.get(step, 0), approved, step in waiting)
            for step, step_name, approved in rows
        ],
        await jobs_in_flight(session, run_id, found=found),
    )


async def run_overviews(session: AsyncSession) -> list[RunOverview]:
    """Every run, running ones first, newest first within each group."""
    ids = (
        await session.execute(
            select(PipelineRun.id).order_by(
                (PipelineRun.status == RunStatus.completed), PipelineRun.id.desc()
            )
        )
    ).scalars()
    return [await run_overview(session, run_id) for run_id in list(ids)]


async def run_for_channel(session: AsyncSession, channel_id: int) -> int | None:
    found: int | None = await session.scalar(
        select(PipelineRun.id).where(PipelineRun.channel_id == channel_id)
    )
    return found


async def run_in_question(session: AsyncSession, run_id: int | None, channel_id: int | None) -> int:
    """The run a person picked, else the run whose channel they are in."""
    if run_id is not None:
        return run_id
    if channel_id is not None:
        found = await run_for_channel(session, channel_id)
        if found is not None:
            return found
    raise InvalidInput("Use this in a run's channel, or pick the run with the `run` option.")


async def set_run_channel(session: AsyncSession, run_id: int, channel_id: int) -> None:
    run = await get_run(session, run_id)
    run.channel_id = channel_id


async def run_channel(session: AsyncSession, run_id: int) -> int | None:
    channel: int | None = await session.scalar(
        select(PipelineRun.channel_id).where(PipelineRun.id == run_id)
    )
    return channel


async def running_run_channels(session: AsyncSession) -> list[int]:
    """Channels of the runs still running: where news about the GPU box goes."""
    rows = await session.scalars(
        select(PipelineRun.channel_id).where(
            PipelineRun.status == RunStatus.running, PipelineRun.channel_id.is_not(None)
        )
    )
    return [c for c in rows if c is not None]


# The gallery's order within a step: active candidates by the ranking rule, rejected ones last.
# A candidate's rank is its place in this order, wherever it is shown.
GALLERY_ORDER: tuple[ColumnElement[Any], ...] = (
    ImageCandidate.status == CandidateStatus.rejected,
    *RANKING,
)


@dataclass(frozen=True)
class GalleryItem:
    rank: int  # 1-based among the page's ordering (active first, by the ranking rule)
    id: int
    elo: float
    votes: int
    status: CandidateStatus
    advancing: bool | None
    image_path: str
    parent_id: int | None


@dataclass(frozen=True)
class GalleryPage:
    run_id: int
    run_name: str
    step: int
    step_name: str
    page: int
    pages: int
    items: list[GalleryItem]
    active: int  # active candidates of the step, on every page
    # How sure the ranking is of the step's top k (k: the step's approved k, else the run's);
    # None when the step has fewer than two active candidates, so there is nothing to rank.
    confidence: Confidence | None


async def gallery_page(
    session: AsyncSession, run_id: int, step: int | None, page: int, per_page: int = 24
) -> GalleryPage:
    """One page of a step's candidates, best first, rejected ones last; default: the highest
    step that has candidates."""
    run = await get_run(session, run_id)
    steps = {
        row.step: row
        for row in await session.execute(
            select(PipelineRunStep.step, PipelineStep.name, PipelineRunStep.top_k)
            .join(PipelineStep, PipelineStep.id == PipelineRunStep.step_id)
            .where(PipelineRunStep.run_id == run_id)
        )
    }
    if step is None:
        step = (
            await session.scalar(
                select(func.max(ImageCandidate.step)).where(ImageCandidate.run_id == run_id)
            )
            or 1
        )
    if step not in steps:
        raise NotFound(f"Run #{run_id} has steps 1–{len(steps)}; there is no step {step}.")
    c = ImageCandidate
    total, active = (
        await session.execute(
            select(func.count(), func.count().filter(c.status == CandidateStatus.active)).where(
                c.run_id == run_id, c.step == step
            )
        )
    ).one()
    pages = max(1, -(-total // per_page))
    page = min(max(page, 1), pages)
    rows = await session.execute(
        select(c.id, c.elo, c.votes, c.status, c.advancing, c.image_path, c.parent_id)
        .where(c.run_id == run_id, c.step == step)
        .order_by(*GALLERY_ORDER)
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    start = (page - 1) * per_page
    items = [GalleryItem(start + i + 1, *row) for i, row in enumerate(rows)]
    # k: the k the step was approved with (how many advanced), else the run's k, the one the
    # pair policy aims at (step 1 is approved at creation without a k).
    approved_k: int | None = steps[step].top_k
    k = run.top_k if approved_k is None else approved_k
    confidence = await top_k_confidence(session, run_id, step, k) if active >= 2 else None
    return GalleryPage(
        run_id, run.name, step, steps[step].name, page, pages, items, int(active), confidence
    )


@dataclass(frozen=True)
class LineageItem:
    """One generation of a candidate's family line."""

    id: int
    step: int
    seed: int
    elo: float
    image_path: str


@dataclass(frozen=True)
class CandidateDetail:
    run_id: int
    id: int
    step: int
    rank: int  # its place in the step's gallery order, 1-based
    elo: float
    votes: int
    status: CandidateStatus
    advancing: bool | None
    seed: int
    image_path: str
    lineage: list[LineageItem]  # its ancestors, step 1 first, ending with its parent
    rejected_by: str | None = None  # a person's id, or the scheduler's reason

    @property
    def chain(self) -> list[LineageItem]:
        """The whole line from step 1 down to this candidate."""
        me = LineageItem(self.id, self.step, self.seed, self.elo, self.image_path)
        return [*self.lineage, me]


async def candidate_detail(
    session: AsyncSession, run_id: int, candidate_id: int
) -> CandidateDetail:
    """One candidate of a run, its gallery rank and its ancestors up to step 1.

    Refuses a candidate of another run, so a gallery message of one run cannot open another's.
    """
    c = ImageCandidate
    row = (
        await session.execute(
            select(
                c.run_id, c.step, c.elo, c.votes, c.status, c.advancing, c.seed, c.image_path,
                c.rejected_by,
            ).where(c.id == candidate_id)
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"There is no candidate #{candidate_id}.")
    if row.run_id != run_id:
        raise NotFound(f"Candidate #{candidate_id} is not in run #{run_id}.")
    ranked = (
        select(c.id, func.row_number().over(order_by=GALLERY_ORDER).label("rank"))
        .where(c.run_id == run_id, c.step == row.step)
        .subquery()
    )
    rank = await session.scalar(select(ranked.c.rank).where(ranked.c.id == candidate_id))
    assert rank is not None, "the candidate is in its own step"
    return CandidateDetail(
        run_id,
        candidate_id,
        row.step,
        int(rank),
        row.elo,
        row.votes,
        row.status,
        row.advancing,
        row.seed,
        row.image_path,
        await _ancestors(session, candidate_id),
        row.rejected_by if row.status is CandidateStatus.rejected else None,
    )


async def _ancestors(session: AsyncSession, candidate_id: int) -> list[LineageItem]:
    """Parents up to step 1 in one recursive query; each step is lower than the one below it,
    so even a damaged parent link cannot make it loop."""
    c = ImageCandidate
    chain = (
        select(c.id, c.parent_id, c.step).where(c.id == candidate_id).cte("chain", recursive=True)
    )
    parent = aliased(ImageCandidate)
    chain = chain.union_all(
        select(parent.id, parent.parent_id, parent.step).join(
            chain, (parent.id == chain.c.parent_id) & (parent.step < chain.c.step)
        )
    )
    rows = await session.execute(
        select(c.id, c.step, c.seed, c.elo, c.image_path)
        .join(chain, chain.c.id == c.id)
        .where(c.id != candidate_id)
        .order_by(c.step)
    )
    return [LineageItem(*r) for r in rows]


CHOICES_MAX = 25  # Discord shows at most 25 autocomplete choices


async def run_choices(
    session: AsyncSession, typed: str, *, completed: bool = False
) -> list[tuple[int, str]]:
    """`(id, "#id name")` of the newest runs whose label contains `typed`, any case: running
    ones, and with `completed` also the completed. One statement, whatever the number of runs,
    because it runs on every keystroke."""
    label = literal("#") + cast(PipelineRun.id, String) + " " + PipelineRun.name
    statuses = [RunStatus.running, RunStatus.completed] if completed else [RunStatus.running]
    rows = await session.execute(
        select(PipelineRun.id, label)
        .where(
            PipelineRun.status.in_(statuses),
            func.lower(label).contains(typed.lower(), autoescape=True),
        )
        .order_by(PipelineRun.id.desc())
        .limit(CHOICES_MAX)
    )
    return [(int(run_id), str(text)) for run_id, text in rows]
