"""Storing a step's fitted ratings: the refit after votes, in the background, and at start.

The stored ratings (`elo`, `elo_sd`, `votes` of each candidate) are a cache of the fit of the
step's votes; a vote only schedules the refit that brings them up to date.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, func, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from db.models import ImageCandidate, PipelineRunStep, Vote
from orchestration.fit import ELO_PER_UNIT, StepRatings, fit_ratings, to_elo

# How long a step's refit waits after a vote, gathering the votes that follow into one fit.
REFIT_DELAY = 1.0

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


async def _step_results(
    conn: AsyncConnection, run_id: int, step: int
) -> Sequence[tuple[int, int, int]]:
    return (await conn.execute(_RESULTS, {"run_id": run_id, "step": step})).tuples().all()


async def _fit_step(conn: AsyncConnection, run_id: int, step: int) -> StepRatings:
    return fit_ratings(await _step_results(conn, run_id, step))


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


async def refit_step(session: AsyncSession, run_id: int, step: int) -> StepRatings:
    """Fit one step from all its votes and store every rating, in one transaction."""
    conn = await session.connection()
    try:
        await conn.execute(_LOCK_STEP, {"run_id": run_id, "step": step})
        ratings = await _fit_step(conn, run_id, step)
        if ratings.ids:
            await conn.execute(_RATE, rating_rows(ratings))
    except Exception:
        await session.rollback()
        raise
    await session.commit()
    return ratings


async def _refit_aside(engine: AsyncEngine, run_id: int, step: int) -> None:
    """`refit_step` for the background: read the votes, fit with no transaction open, then
    write in a short one, so votes never wait behind the read and the fit holding the write
    lock. Safe because one task per step runs at a time and reruns after any vote it missed."""
    async with engine.connect() as conn:
        rows = await _step_results(conn, run_id, step)
    ratings = fit_ratings(rows)
    if ratings.ids:
        async with engine.begin() as conn:
            await conn.execute(_RATE, rating_rows(ratings))


class _Refits:
    """Background refits: one task per step, which takes every vote committed before it reads.

    A vote schedules its step's refit and returns. The task waits `REFIT_DELAY`, so a burst of
    votes costs one fit, then refits; a vote scheduled while the task is already reading runs
    it once more. So the last refit of a step always comes after its last vote's commit.
    `finish()` cuts the wait short, for a stop.
    """

    def __init__(self) -> None:
        self._tasks: dict[tuple[int, int, int], asyncio.Task[None]] = {}
        self._again: set[tuple[int, int, int]] = set()
        self._waiting: dict[tuple[int, int, int], asyncio.Event] = {}
        self._hurry: set[asyncio.AbstractEventLoop] = set()  # loops whose refits wait no more

    def schedule(self, engine: AsyncEngine, run_id: int, step: int) -> None:
        key = (id(engine), run_id, step)
        task = self._tasks.get(key)
        if task is not None and not task.done() and task.get_loop() is _running_loop():
            self._again.add(key)
            return
        self._again.discard(key)
        self._tasks[key] = asyncio.create_task(self._run(engine, key, run_id, step))

    async def _run(
        self, engine: AsyncEngine, key: tuple[int, int, int], run_id: int, step: int
    ) -> None:
        try:
            again = True
            while again:
                await self._delay(key)
                self._again.discard(key)
                try:
                    await _refit_aside(engine, run_id, step)
                except Exception:
                    log.exception("refitting the ratings of run %s step %s failed", run_id, step)
                again = key in self._again
        finally:
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]
                self._again.discard(key)

    async def _delay(self, key: tuple[int, int, int]) -> None:
        """`REFIT_DELAY`, or less once `finish()` was called."""
        if _running_loop() in self._hurry:
            return
        woken = self._waiting[key] = asyncio.Event()
        try:
            async with asyncio.timeout(REFIT_DELAY):
                await woken.wait()
        except TimeoutError:
            pass
        finally:
            if self._waiting.get(key) is woken:
                del self._waiting[key]

    async def settled(self) -> None:
        loop = _running_loop()
        while pending := [t for t in self._tasks.values() if t.get_loop() is loop]:
            await asyncio.gather(*pending, return_exceptions=True)

    async def finish(self) -> None:
        loop = _running_loop()
        self._hurry.add(loop)
        try:
            for key, woken in list(self._waiting.items()):
                task = self._tasks.get(key)
                if task is not None and task.get_loop() is loop:
                    woken.set()
            await self.settled()
        finally:
            self._hurry.discard(loop)


def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


_refits = _Refits()


def schedule_refit(engine: AsyncEngine, run_id: int, step: int) -> None:
    """Refit this step in the background a moment after a vote (`REFIT_DELAY`)."""
    _refits.schedule(engine, run_id, step)


async def ratings_settled() -> None:
    """Wait until every scheduled refit of this event loop has stored its ratings."""
    await _refits.settled()


async def finish_refits() -> None:
    """Run every scheduled refit of this event loop now, without waiting out `REFIT_DELAY`,
    and wait until they have stored their ratings: what a stop does before the engine goes."""
    await _refits.finish()


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
    await session.rollback()
    for run_id, step in stale:
        await refit_step(session, run_id, step)
    if stale:
        log.warning("refitted the ratings of %d step(s) that missed votes before the last stop: "
                    "%s", len(stale), ", ".join(f"run {r} step {s}" for r, s in stale))
    return stale
