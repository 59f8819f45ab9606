"""Votes as data: every vote of a run with what a preference model needs to learn from it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.models import ImageCandidate, Vote
from orchestration.runs import get_run


@dataclass(frozen=True)
class VotedImage:
    id: int
    image_path: str  # absolute, so the file can be opened from anywhere
    seed: int
    parent_id: int | None


@dataclass(frozen=True)
class VoteRecord:
    vote_id: int
    run_id: int
    run_name: str
    pipeline_id: int
    step: int
    voter: str  # the Discord user id
    created_at: str  # ISO 8601, UTC
    prompt: str | None
    negative_prompt: str | None
    variables: dict[str, Any]  # every run variable, prompt included
    winner: VotedImage
    loser: VotedImage


async def vote_records(session: AsyncSession, run_id: int, data_dir: Path) -> list[VoteRecord]:
    """Every vote of the run, oldest first; image paths absolute under `data_dir`."""
    run = await get_run(session, run_id)
    winner, loser = aliased(ImageCandidate), aliased(ImageCandidate)
    stmt = (
        select(Vote, winner, loser)
        .join(winner, winner.id == Vote.winner_id)
        .join(loser, loser.id == Vote.low_id + Vote.high_id - Vote.winner_id)
        .where(Vote.run_id == run_id)
        .order_by(Vote.id)
    )
    variables = dict(run.variables)
    root = _absolute(data_dir)
    return [
        VoteRecord(
            vote.id,
            run.id,
            run.name,
            run.pipeline_id,
            vote.step,
            vote.voter,
            vote.created_at.isoformat(),
            variables.get("prompt"),
            variables.get("negative_prompt"),
            variables,
            _image(won, root),
            _image(lost, root),
        )
        for vote, won, lost in (await session.execute(stmt)).tuples()
    ]


def _absolute(data_dir: Path) -> Path:
    return Path(os.path.abspath(data_dir))


def _image(candidate: ImageCandidate, root: Path) -> VotedImage:
    return VotedImage(
        candidate.id, str(root / candidate.image_path), candidate.seed, candidate.parent_id
    )
