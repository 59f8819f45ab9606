"""Votes, ratings and rejection (DESIGN §1.4).

A step's ratings are a Bradley–Terry fit of all its votes (`choix`), not a running sum of
per-vote nudges: the same votes give the same ratings whatever their order, and every rating
comes with an uncertainty. The prior is weak: each candidate starts with half a virtual game
against a reference player rated 1000, a quarter won and a quarter lost, so a candidate without
votes is at 1000 and one vote moves it a long way. Ratings are shown on the Elo scale,
1000 + 400·θ/ln 10, where the chance that A beats B is 1 / (1 + 10^((Rb − Ra)/400)).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import choix
import numpy as np
from numpy.typing import NDArray
from scipy.special import expit
from sqlalchemy import (
    UnaryExpression,
    bindparam,
    func,
    insert,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import aliased

from db.base import utcnow
from db.models import (
    CandidateStatus,
    ImageCandidate,
    PipelineRun,
    PipelineRunStep,
    RunStatus,
    Vote,
)
from orchestration.errors import Conflict, DuplicateVote, InvalidInput, NotFound
from orchestration.rejection import mark_rejected
from orchestration.runs import get_running_run

BASE_RATING = 1000.0
ELO_PER_UNIT = 400.0 / math.log(10.0)  # Elo points per unit of θ (natural log-odds)
# Virtual games each candidate plays against the 1000-rated reference (half won, half lost).
PRIOR_GAMES = 0.5
# A candidate's uncertainty before any vote: the prior's standard deviation, in Elo points.
PRIOR_ELO_SD = ELO_PER_UNIT / math.sqrt(PRIOR_GAMES * 0.25)
_FIT_TOLERANCE = 1e-6  # successive iterates' L1 distance: ratings good to ~0.001 Elo
_FIT_MAX_ITER = 100_000
# How long a step's refit waits after a vote, gathering the votes that follow into one fit.
REFIT_DELAY = 1.0

log = logging.getLogger(__name__)

# How candidates of a step are ranked everywhere: rating, then more votes, then older first.
RANKING: tuple[UnaryExpression[Any], ...] = (
    ImageCandidate.elo.desc(),
    ImageCandidate.votes.desc(),
    ImageCandidate.id.asc(),
)


def ranking_key(elo: float, votes: int, candidate_id: int) -> tuple[float, int, int]:
    """RANKING for ratings fitted in memory: sort by this key, best first."""
    return (-elo, -votes, candidate_id)


def expected_score(rating_a: float, rating_b: float) -> float:
    """Probability that A beats B: 1 / (1 + 10^((Rb − Ra)/400))."""
    return 1.0 / (1.0 + math.pow(10.0, (rating_b - rating_a) / 400.0))


def to_elo(theta: float) -> float:
    return BASE_RATING + ELO_PER_UNIT * theta


@dataclass(frozen=True)
class StepRatings:
    """The Bradley–Terry posterior of one step: the fitted strengths (θ, relative to the
    1000-rated reference) of the candidates that have votes, and their covariance (Laplace
    approximation at the fit). Candidates without votes sit at the prior: θ = 0, independent.
    """

    ids: tuple[int, ...]
    theta: NDArray[np.float64]
    cov: NDArray[np.float64]
    games: NDArray[np.float64]

    def elo(self, candidate_id: int) -> float:
        return to_elo(self.mean([candidate_id])[0])

    def elo_sd(self, candidate_id: int) -> float:
        return ELO_PER_UNIT * math.sqrt(self.covariance([candidate_id])[0, 0])

    def votes(self, candidate_id: int) -> int:
        index = self._index().get(candidate_id)
        return 0 if index is None else round(float(self.games[index]))

    def mean(self, ids: Sequence[int]) -> NDArray[np.float64]:
        """θ of these candidates, in the order given."""
        index = self._index()
        return np.array([self.theta[index[c]] if c in index else 0.0 for c in ids])

    def covariance(self, ids: Sequence[int]) -> NDArray[np.float64]:
        """Covariance of θ of these candidates, in the order given."""
        index = self._index()
        fitted = [i for i, c in enumerate(ids) if c in index]
        rows = [index[ids[i]] for i in fitted]
        out = np.diag(np.full(len(ids), 1.0 / (PRIOR_GAMES * 0.25)))
        out[np.ix_(fitted, fitted)] = self.cov[np.ix_(rows, rows)]
        return out

    def _index(self) -> dict[int, int]:
        return {cid: i for i, cid in enumerate(self.ids)}


def fit_ratings(results: Iterable[tuple[int, int, int]]) -> StepRatings:
    """Fit one step's ratings from `(winner_id, loser_id, times)` triples.

    The maximum a-posteriori strengths are choix's I-LSR fit of the votes plus each candidate's
    virtual games against the reference (an extra item whose θ is then subtracted). The
    uncertainty is the inverse of the Hessian of the negative log-posterior at that fit.
    Nothing depends on the order of the triples: the counts go into one matrix.
    """
    table = np.fromiter(itertools.chain.from_iterable(results), dtype=np.int64).reshape(-1, 3)
    ids_array, inverse = np.unique(table[:, :2], return_inverse=True)
    ids = tuple(int(c) for c in ids_array)
    n = len(ids)
    if n == 0:
        empty = np.zeros(0)
        return StepRatings(ids, empty, np.zeros((0, 0)), empty)
    pairs = inverse.reshape(-1, 2)
    wins = np.zeros((n + 1, n + 1))
    np.add.at(wins, (pairs[:, 0], pairs[:, 1]), table[:, 2])
    wins[:n, n] = wins[n, :n] = PRIOR_GAMES / 2  # the reference is item n
    params = choix.ilsr_pairwise_dense(wins, tol=_FIT_TOLERANCE, max_iter=_FIT_MAX_ITER)
    theta = params[:n] - params[n]

    games = wins[:n, :n] + wins[:n, :n].T
    p = expit(theta[:, None] - theta[None, :])
    info = games * p * (1.0 - p)
    q = expit(theta)
    hessian = np.diag(info.sum(axis=1) + PRIOR_GAMES * q * (1.0 - q)) - info
    cov = np.linalg.inv(hessian)
    return StepRatings(ids, theta, cov, games.sum(axis=1))


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


@dataclass(frozen=True)
class VoteResult:
    vote_id: int
    run_id: int
    step: int
    winner_id: int
    loser_id: int


@dataclass(frozen=True)
class _Side:
    id: int
    run_id: int
    step: int
    status: CandidateStatus
    run_status: RunStatus
    run_name: str


# Votes are the hottest write path: prebuilt Core statements, no ORM unit of work.
_PAIR = (
    select(
        ImageCandidate.id,
        ImageCandidate.run_id,
        ImageCandidate.step,
        ImageCandidate.status,
        PipelineRun.status,
        PipelineRun.name,
    )
    .join(PipelineRun, PipelineRun.id == ImageCandidate.run_id)
    .where(ImageCandidate.id.in_(bindparam("ids", expanding=True)))
    .order_by(ImageCandidate.id)
    .with_for_update(of=ImageCandidate)
)
_WINNER, _LOSER = aliased(ImageCandidate), aliased(ImageCandidate)
# The vote, inserted only when the pair may take it (one run, one step, both active, the run
# not completed); no row back means it may not, and `_load_pair` then says why. One round trip
# on the path every tap takes.
_INSERT_VOTE = (
    insert(Vote)
    .from_select(
        ["run_id", "step", "low_id", "high_id", "winner_id", "voter", "created_at"],
        select(
            _WINNER.run_id,
            _WINNER.step,
            bindparam("low_id"),
            bindparam("high_id"),
            _WINNER.id,
            bindparam("voter"),
            bindparam("created_at"),
        )
        .join(_LOSER, _LOSER.id == bindparam("loser_id"))
        .join(PipelineRun, PipelineRun.id == _WINNER.run_id)
        .where(
            _WINNER.id == bindparam("winner_id"),
            _WINNER.run_id == bindparam("run_id"),
            _LOSER.run_id == _WINNER.run_id,
            _LOSER.step == _WINNER.step,
            _WINNER.status == CandidateStatus.active,
            _LOSER.status == CandidateStatus.active,
            PipelineRun.status != RunStatus.completed,
        )
        .with_for_update(of=[_WINNER, _LOSER]),
    )
    .returning(Vote.id, Vote.step)
)
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


async def _load_pair(
    conn: AsyncConnection, run_id: int, first_id: int, second_id: int
) -> tuple[_Side, _Side]:
    """Both candidates, locked, with their run checked in the same round trip."""
    if first_id == second_id:
        raise InvalidInput(f"A vote needs two different candidates, got #{first_id} twice.")
    rows = await conn.execute(_PAIR, {"ids": [first_id, second_id]})
    found = {row[0]: _Side(*row) for row in rows}
    for cid in (first_id, second_id):
        if cid not in found:
            raise NotFound(f"There is no candidate #{cid}.")
        side = found[cid]
        if side.run_id != run_id:
            raise InvalidInput(
                f"Candidate #{cid} belongs to run #{side.run_id}, not run #{run_id}."
            )
        if side.run_status is RunStatus.completed:
            raise Conflict(
                f"Run #{run_id} “{side.run_name}” is completed; nothing can change in it."
            )
    first, second = found[first_id], found[second_id]
    if first.step != second.step:
        raise InvalidInput(
            f"Candidates #{first.id} (step {first.step}) and #{second.id} (step {second.step}) "
            "are at different steps; only candidates of one step are compared."
        )
    for side in (first, second):
        if side.status is CandidateStatus.rejected:
            raise Conflict(f"Candidate #{side.id} was rejected; it takes no more votes.")
    return first, second


async def record_vote(
    session: AsyncSession,
    run_id: int,
    winner_id: int,
    loser_id: int,
    voter: str,
) -> VoteResult:
    """One person's choice of `winner_id` over `loser_id`.

    The schema's unique (voter, pair) constraint is what refuses a second vote on a pair, so
    two taps racing each other are refused too. Only the vote is written; the step's ratings
    and vote counts are refitted from all its votes in the background a moment later
    (`REFIT_DELAY`), one fit per burst of votes, so a tap costs what an insert costs.
    `ratings_settled()` waits for that refit; decisions (pairs, /approve) fit afresh.
    """
    if winner_id == loser_id:
        raise InvalidInput(f"A vote needs two different candidates, got #{winner_id} twice.")
    conn = await session.connection()
    low, high = sorted((winner_id, loser_id))
    try:
        try:
            row = (await conn.execute(_INSERT_VOTE, {
                "run_id": run_id, "winner_id": winner_id, "loser_id": loser_id,
                "low_id": low, "high_id": high, "voter": voter, "created_at": utcnow(),
            })).first()
        except IntegrityError as err:
            raise DuplicateVote(
                f"You already voted on #{low} vs #{high}; your first vote stands."
            ) from err
        if row is None:
            await _load_pair(conn, run_id, winner_id, loser_id)  # raises the reason
            raise Conflict(f"#{winner_id} vs #{loser_id} cannot take a vote now.")
    except Exception:
        await session.rollback()
        raise
    await session.commit()
    vote_id, step = row
    engine = session.bind
    if isinstance(engine, AsyncEngine):
        _refits.schedule(engine, run_id, step)
    else:  # a session bound to one connection has no other to refit on: refit now
        await refit_step(session, run_id, step)
    return VoteResult(int(vote_id), run_id, int(step), winner_id, loser_id)


@dataclass(frozen=True)
class RejectResult:
    candidate_id: int
    run_id: int
    step: int


async def reject_candidate(
    session: AsyncSession, run_id: int, candidate_id: int, by: str
) -> RejectResult:
    """A rejected candidate never becomes a parent again and leaves the top-K."""
    await get_running_run(session, run_id)
    cand = await session.get(ImageCandidate, candidate_id, with_for_update=True)
    if cand is None:
        raise NotFound(f"There is no candidate #{candidate_id}.")
    if cand.run_id != run_id:
        raise InvalidInput(
            f"Candidate #{cand.id} belongs to run #{cand.run_id}, not run #{run_id}."
        )
    if cand.status is CandidateStatus.rejected:
        raise Conflict(f"Candidate #{cand.id} is already rejected.")
    mark_rejected(cand, by)
    await session.commit()
    return RejectResult(cand.id, cand.run_id, cand.step)
