"""Read models for the Discord surface: every run at a glance, and finding a run by channel."""

from __future__ import annotations

import random
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    CandidateStatus,
    ImageCandidate,
    Pipeline,
    PipelineRun,
    PipelineRunStep,
    PipelineStep,
    RunStatus,
    Vote,
)
from orchestration.approvals import awaiting_approval
from orchestration.errors import NotFound
from orchestration.ratings import RANKING
from orchestration.selection import decide_for_run


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


async def run_has_work(session: AsyncSession, run_id: int) -> bool:
    """Whether selection would give this run a job now (a held or completed run has none)."""
    run = await session.get(PipelineRun, run_id)
    if run is None or run.status is RunStatus.completed or run.held_reason is not None:
        return False
    # The raffle's draw does not matter here, only whether there is something to draw.
    return await decide_for_run(session, run_id, random.Random(0)) is not None


async def run_overview(session: AsyncSession, run_id: int) -> RunOverview:
    run = await session.get(PipelineRun, run_id)
    if run is None:
        raise NotFound(f"There is no run #{run_id}.")
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
    waiting = (
        set(await awaiting_approval(session, run_id)) if run.status is RunStatus.running else set()
    )
    return RunOverview(
        run.id,
        run.name,
        name or "",
        run.status,
        run.held_reason,
        run.channel_id,
        int(votes),
        await run_has_work(session, run_id),
        [
            StepOverview(step, step_name, counts.get(step, 0), approved, step in waiting)
            for step, step_name, approved in rows
        ],
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


async def set_run_channel(session: AsyncSession, run_id: int, channel_id: int) -> None:
    run = await session.get(PipelineRun, run_id)
    if run is None:
        raise NotFound(f"There is no run #{run_id}.")
    run.channel_id = channel_id
    await session.commit()


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


async def gallery_page(
    session: AsyncSession, run_id: int, step: int | None, page: int, per_page: int = 24
) -> GalleryPage:
    """One page of a step's candidates, best first, rejected ones last; default: the highest
    step that has candidates."""
    run = await session.get(PipelineRun, run_id)
    if run is None:
        raise NotFound(f"There is no run #{run_id}.")
    steps = dict(
        (
            await session.execute(
                select(PipelineRunStep.step, PipelineStep.name)
                .join(PipelineStep, PipelineStep.id == PipelineRunStep.step_id)
                .where(PipelineRunStep.run_id == run_id)
            )
        )
        .tuples()
        .all()
    )
    if step is None:
        step = (
            await session.scalar(
                select(func.max(ImageCandidate.step)).where(ImageCandidate.run_id == run_id)
            )
            or 1
        )
    if step not in steps:
        raise NotFound(f"Run #{run_id} has steps 1–{len(steps)}; there is no step {step}.")
    total = (
        await session.scalar(
            select(func.count()).where(ImageCandidate.run_id == run_id, ImageCandidate.step == step)
        )
        or 0
    )
    pages = max(1, -(-total // per_page))
    page = min(max(page, 1), pages)
    c = ImageCandidate
    rows = await session.execute(
        select(c.id, c.elo, c.votes, c.status, c.advancing, c.image_path, c.parent_id)
        .where(c.run_id == run_id, c.step == step)
        .order_by(c.status == CandidateStatus.rejected, *RANKING)
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    start = (page - 1) * per_page
    items = [GalleryItem(start + i + 1, *row) for i, row in enumerate(rows)]
    return GalleryPage(run_id, run.name, step, steps[step], page, pages, items)
