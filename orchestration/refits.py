"""Storing a step's fitted ratings, and finding the steps whose stored ratings missed votes.

The stored ratings (`elo`, `elo_sd`, `votes` of each candidate) are a cache of the fit of the
step's votes; a vote only schedules the refit that brings them up to date (`app.refits`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, func, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from db.models import ImageCandidate, PipelineRunStep, Vote
from orchestration.fit import ELO_PER_UNIT, StepRatings, fit_ratings, to_elo

log = logging.getLogger(__name__)


# The results of one step, one row per (winner, loser) with how often.
_RESULTS = (
    select(
        Vote.winner_id,
        (Vote.low_id + Vote.high_id - Vote.winner_id).label("loser_id"),
        func.count(),
    )
    .where(Vote.run_id == bindparam("run_id"), Vote.step == bindparam("step"))
    .group_by(Vote.low_id, Vote.high_id, Vote.winner_id)  # the order of ix_votes_step_results
)


async def step_ratings(session: AsyncSession, run_id: int, step: int) -> StepRatings:
    """The fitted ratings of one step, with their covariance, from its votes."""
    conn = await session.connection()
    return await _fit_step(conn, run_id, step)


async def step_results(
    conn: AsyncConnection, run_id: int, step: int
) -> Sequence[tuple[int, int, int]]:
    return (await conn.execute(_RESULTS, {"run_id": run_id, "step": step})).tuples().all()


async def _fit_step(conn: AsyncConnection, run_id: int, step: int) -> StepRatings:
    return fit_ratings(await step_results(conn, run_id, step))


# A refit locks its step's row first, so on PostgreSQL refits of one step take turns as they do
# under SQLite's single writer: the one that commits last has read every vote committed before.
_LOCK_STEP = (
    select(PipelineRunStep.step)
    .where(PipelineRunStep.run_id == bindparam("run_id"), PipelineRunStep.step == bindparam("step"))
    .with_for_update()
)
_RATE = (
    update(ImageCandidate)
    .where(ImageCandidate.id == bindparam("cid"))
    .values(elo=bindparam("new_elo"), elo_sd=bindparam("new_sd"), votes=bindparam("games"))
)


def rating_rows(ratings: StepRatings) -> list[dict[str, Any]]:
    """Parameters of `_RATE` for every candidate that has votes."""
    return [
        {
            "cid": cid,
            "new_elo": to_elo(float(ratings.theta[i])),
            "new_sd": ELO_PER_UNIT * math.sqrt(float(ratings.cov[i, i])),
            "games": round(float(ratings.games[i])),
        }
        for i, cid in enumerate(ratings.ids)
    ]


async def store_ratings(conn: AsyncConnection, ratings: StepRatings) -> None:
    """Write a fit's ratings over the stored ones, in the transaction `conn` is in."""
    if ratings.ids:
        await conn.execute(_RATE, rating_rows(ratings))


async def refit_step(session: AsyncSession, run_id: int, step: int) -> StepRatings:
    """Fit one step from all its votes and store every rating, in the caller's transaction."""
    conn = await session.connection()
    await conn.execute(_LOCK_STEP, {"run_id": run_id, "step": step})
    ratings = await _fit_step(conn, run_id, step)
    await store_ratings(conn, ratings)
    return ratings


# How often each candidate appears in the votes recorded.
_APPEARANCES = union_all(
    select(Vote.low_id.label("candidate_id")), select(Vote.high_id.label("candidate_id"))
).subquery()
_COUNTED = (
    select(_APPEARANCES.c.candidate_id, func.count().label("n"))
    .group_by(_APPEARANCES.c.candidate_id)
    .subquery()
)
# Steps whose stored ratings missed votes: a refit stores, for each candidate it fits, how many
# votes it took in (`votes`); a candidate whose count differs from its recorded votes was last
# fitted before some of them.
_STALE_STEPS = (
    select(ImageCandidate.run_id, ImageCandidate.step)
    .join(_COUNTED, _COUNTED.c.candidate_id == ImageCandidate.id)
    .where(ImageCandidate.votes != _COUNTED.c.n)
    .group_by(ImageCandidate.run_id, ImageCandidate.step)
    .order_by(ImageCandidate.run_id, ImageCandidate.step)
)


async def refit_stale_steps(session: AsyncSession) -> list[tuple[int, int]]:
    """Refit every step whose stored ratings are older than its votes — what a kill leaves
    behind — and return those (run, step). Called at start; with nothing stale it costs one
    query and no fit."""
    stale = [(int(r), int(s)) for r, s in (await session.execute(_STALE_STEPS)).tuples()]
    for run_id, step in stale:
        await refit_step(session, run_id, step)
    if stale:
        log.warning("refitted the ratings of %d step(s) that missed votes before the last stop: "
                    "%s", len(stale), ", ".join(f"run {r} step {s}" for r, s in stale))
    return stale
