"""What a person looks at: the runs, a run's gallery, one candidate, the runs to pick from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.context import App, RunRef
from app.transaction import look
from orchestration import overview
from orchestration.export import VoteRecord, vote_records
from orchestration.overview import CandidateDetail, GalleryPage, RunOverview


@dataclass(frozen=True)
class Gallery:
    run_id: int
    page: GalleryPage


async def gallery(app: App, ref: RunRef, step: int | None, page: int) -> Gallery:
    async with look(app) as session:
        run_id = await overview.run_in_question(session, ref.run_id, ref.channel_id)
        return Gallery(run_id, await overview.gallery_page(session, run_id, step, page))


async def candidate(app: App, run_id: int, candidate_id: int) -> CandidateDetail:
    async with look(app) as session:
        return await overview.candidate_detail(session, run_id, candidate_id)


async def run_choices(app: App, typed: str, *, completed: bool = False) -> list[tuple[int, str]]:
    """The runs a `run` option offers for what was typed (on every keystroke)."""
    async with look(app) as session:
        return await overview.run_choices(session, typed, completed=completed)


async def runs_with_work(app: App) -> list[RunOverview]:
    """The runs the GPU box is busy with, for /status."""
    async with look(app) as session:
        return [r for r in await overview.run_overviews(session) if r.has_work]


async def votes_of(app: App, run_id: int, data_dir: Path) -> list[VoteRecord]:
    async with look(app) as session:
        return await vote_records(session, run_id, data_dir)
