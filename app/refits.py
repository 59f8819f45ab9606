"""Ratings kept up to date: the refit after votes, in the background, and the one at start.

A vote only writes the vote (`orchestration.votes`); once it is committed, its step is refitted
here a moment later (`REFIT_DELAY`), one fit per burst of votes, so a tap costs what an insert
costs. `ratings_settled()` waits for those refits; `finish_refits()` runs them at once, for a
stop; `refit_stale()` catches up, at start, on what a kill left behind.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from app.context import App
from app.transaction import transaction
from orchestration.fit import fit_ratings
from orchestration.refits import refit_stale_steps, step_results, store_ratings

# How long a step's refit waits after a vote, gathering the votes that follow into one fit.
REFIT_DELAY = 1.0

log = logging.getLogger(__name__)


async def _refit_aside(engine: AsyncEngine, run_id: int, step: int) -> None:
    """`refit_step` for the background: read the votes, fit with no transaction open, then
    write in a short one, so votes never wait behind the read and the fit holding the write
    lock. Safe because one task per step runs at a time and reruns after any vote it missed."""
    async with engine.connect() as conn:
        rows = await step_results(conn, run_id, step)
    ratings = fit_ratings(rows)
    if ratings.ids:
        async with engine.begin() as conn:
            await store_ratings(conn, ratings)


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


def votes_committed(app: App, run_id: int, step: int) -> None:
    """Bring the step's ratings up to date, in the background, after votes were committed."""
    engine = app.sessions.kw.get("bind")
    assert isinstance(engine, AsyncEngine), "the use cases' sessions come from an engine"
    schedule_refit(engine, run_id, step)


async def refit_stale(app: App) -> list[tuple[int, int]]:
    """Refit every step whose stored ratings are older than its votes; the (run, step) pairs."""
    async with transaction(app) as session:
        return await refit_stale_steps(session)
