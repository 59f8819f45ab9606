"""Which pair a person sees next, and how sure the top-k of a step is (docs/voting.md, "Which pair
you get" and "How sure the ranking is").

Every tap should tell us the most about the one question a curator has to answer: which k
candidates of a step should grow. So the policy first shows every candidate once (warm-up), then
the pair across the current top-k boundary whose order is least certain: the smallest rating
difference relative to the standard deviation of that difference, from the fit's covariance (two
candidates compared often with each other are known relative to each other much better than
their two spreads suggest). Once even that pair is fairly sure of its order, a direct vote
mostly confirms it; the pair whose vote would shrink the uncertainty of that difference the most
(often each of the two against a common opponent) comes instead. When the boundary is
confident — the estimated top k are the true top k with probability `SETTLED_AT`, which holds
only when every boundary pair is sure of its order at once — it says so instead of asking for
more taps.

Which step: the steps awaiting approval first (lowest first; with gates on, "/approve" is what
they wait for), then the other steps not yet approved (lowest first; the final step is never
approved, and its top-k is the run's result), and last step 1, which is approved at creation
without a filter, so its votes only steer which parents the raffle favours. A step approved with
/approve takes no more pairs: its decision is made. k is the run's `top_k`.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ImageCandidate, PipelineRunStep, Vote
from orchestration.approvals import awaiting_approval, decided_by_approval
from orchestration.confidence import step_posterior, top_k_probability
from orchestration.runs import get_running_run
from orchestration.states import CandidateStatus

# The top k of a step are settled when they are the true top k with this probability (the
# figure the /approve preview shows). Checked after every vote, so it flatters itself a little;
# docs/performance.md shows how often the top k are right when the policy stops.
SETTLED_AT = 0.90

# While the least certain boundary pair is closer to a toss-up than this (z = 0.9: about 82 %
# sure of its order), it is asked directly. Past it, a direct vote mostly confirms what is
# known, and the pair whose vote most narrows that difference (often through a common
# opponent) settles the top k in fewer taps (docs/performance.md).
ASK_DIRECTLY_BELOW_Z = 0.9

_RNG = random.Random()


class Phase(enum.StrEnum):
    warm_up = "warm-up"  # a candidate nobody has compared yet
    boundary = "boundary"  # the least certain pair across the top-k boundary
    indirect = "indirect"  # the pair that most narrows the least certain boundary pair
    settled = "settled"  # every boundary pair is confident: no pair
    nothing = "nothing"  # no pair this person can usefully vote on


@dataclass(frozen=True)
class NextPair:
    run_id: int
    step: int | None  # the step the decision is about; None when no step has two candidates
    k: int
    phase: Phase
    pair: tuple[int, int] | None  # (A, B) in the order to show them; None: no tap wanted
    message: str  # why this pair (for logs), or what to tell the person when there is none


@dataclass(frozen=True)
class _Decision:
    phase: Phase
    pair: tuple[int, int] | None = None
    reason: str = ""


async def next_pair(
    session: AsyncSession,
    run_id: int,
    voter: str | None,
    *,
    exclude: Collection[tuple[int, int]] = (),
    rng: random.Random | None = None,
) -> NextPair:
    """The pair `voter` should judge next in this run, or why there is none.

    Never a pair this person already voted on, never a pair in `exclude` (e.g. pairs already
    waiting for an answer in the channel), never a rejected candidate. `voter` None: a pair for
    whoever answers first. Reads only.
    """
    run = await get_running_run(session, run_id)
    k = run.top_k
    steps, awaiting = await _steps_in_order(session, run_id)
    skip = {(min(a, b), max(a, b)) for a, b in exclude}
    note: NextPair | None = None
    for step in steps:
        decision = await _decide(session, run_id, step, k, voter, skip)
        if decision is None:
            continue
        if decision.pair is not None:
            a, b = decision.pair
            if (rng or _RNG).random() < 0.5:  # either side first: no position bias builds up
                a, b = b, a
            return NextPair(run_id, step, k, decision.phase, (a, b), decision.reason)
        if decision.phase is Phase.settled:
            if awaiting is None:
                awaiting = await awaiting_approval(session, run_id)
            settled = NextPair(run_id, step, k, Phase.settled, None, _settled(step, k, awaiting))
            if step in awaiting:
                return settled  # the next move is /approve, not more taps
            note = note or settled
        elif decision.phase is Phase.nothing:
            note = note or NextPair(run_id, step, k, Phase.nothing, None, decision.reason)
    if note is not None:
        return note
    return NextPair(
        run_id,
        None,
        k,
        Phase.nothing,
        None,
        f"Nothing to vote on in run #{run_id} yet: no step has two candidates to compare.",
    )


def _settled(step: int, k: int, awaiting: list[int]) -> str:
    if step in awaiting:
        return f"The top {k} of step {step} are settled — ready to /approve."
    return f"The top {k} of step {step} are settled for now."


async def _steps_in_order(
    session: AsyncSession, run_id: int
) -> tuple[list[int], list[int] | None]:
    """The steps that can take a pair, in the order above, and the steps awaiting approval —
    None when only one step can take a pair: then the order needs no approval check (the
    common case, and the slowest question here), and it is asked only if that step is settled.
    """
    active = func.count(ImageCandidate.id)
    rows = (
        await session.execute(
            select(PipelineRunStep.step, PipelineRunStep.approved, PipelineRunStep.top_k)
            .outerjoin(ImageCandidate, and_(
                ImageCandidate.run_id == PipelineRunStep.run_id,
                ImageCandidate.step == PipelineRunStep.step,
                ImageCandidate.status == CandidateStatus.active,
            ))
            .where(PipelineRunStep.run_id == run_id)
            .group_by(PipelineRunStep.step, PipelineRunStep.approved, PipelineRunStep.top_k)
            .having(active >= 2)
            .order_by(PipelineRunStep.step)
        )
    ).all()
    open_steps = [step for step, approved, _ in rows if not approved]
    unfiltered = [step for step, approved, top_k in rows
                  if approved and not decided_by_approval(approved, top_k)]
    if len(open_steps) + len(unfiltered) <= 1:
        return [*open_steps, *unfiltered], None
    awaiting = await awaiting_approval(session, run_id)
    open_steps = [step for step in open_steps if step not in awaiting]
    return [*awaiting, *open_steps, *unfiltered], awaiting  # awaiting: never approved


async def _decide(
    session: AsyncSession,
    run_id: int,
    step: int,
    k: int,
    voter: str | None,
    skip: set[tuple[int, int]],
) -> _Decision | None:
    """The policy at one step: warm-up, then the least certain boundary pair; None when the
    step has fewer than two active candidates."""
    fit, ids = await step_posterior(session, run_id, step)
    mean, cov = fit.mean(ids), fit.covariance(ids)
    games = np.array([fit.votes(c) for c in ids], dtype=np.float64)
    n = len(ids)
    if n < 2:
        return None
    voted = skip | await _voted_pairs(session, run_id, step, voter)

    def fresh(i: int, j: int) -> bool:
        return (min(ids[i], ids[j]), max(ids[i], ids[j])) not in voted

    z = _z_matrix(mean, cov)
    unseen = [i for i in range(n) if games[i] == 0]
    for a in unseen:
        # Another unseen candidate first (one tap shows two), else the closest seen one.
        others = [i for i in unseen if i != a and fresh(a, i)] or [
            i for i in range(n) if i != a and fresh(a, i)
        ]
        if others:
            b = min(others, key=lambda i: (abs(z[a, i]), i))
            return _Decision(
                Phase.warm_up,
                (ids[a], ids[b]),
                f"step {step}: #{ids[a]} has not been compared yet",
            )
    if n <= k:
        return _Decision(Phase.settled)

    if top_k_probability(fit, ids, k) >= SETTLED_AT:
        return _Decision(Phase.settled)
    top, rest = np.arange(k), np.arange(k, n)  # ids are in ranking order
    boundary = z[np.ix_(top, rest)]
    flat = np.argsort(boundary, axis=None, kind="stable")
    open_pairs = [(int(top[f // len(rest)]), int(rest[f % len(rest)])) for f in flat]
    for i, j in open_pairs:
        if z[i, j] >= ASK_DIRECTLY_BELOW_Z:
            break  # even the least certain pair this person may see is fairly sure: narrow it
        if fresh(i, j):
            return _Decision(
                Phase.boundary,
                (ids[i], ids[j]),
                f"step {step}: #{ids[i]} (top {k}) vs #{ids[j]} is the least certain boundary "
                f"pair you have not voted on (z = {z[i, j]:.2f})",
            )
    # The least certain boundary pair is fairly sure of its order already, or this person voted
    # on every open one: show the pair whose vote would most narrow the least certain one —
    # itself, or a comparison through a common opponent.
    i, j = open_pairs[0]
    unvoted = [(a, b) for a in range(n) for b in range(a + 1, n) if fresh(a, b)]
    helper = _best_helper(mean, cov, i, j, unvoted)
    if helper is None:
        return _Decision(
            Phase.nothing,
            reason=f"You have voted on every pair that would still help at step {step}; "
            "other curators' votes can settle it.",
        )
    a, b = helper
    return _Decision(
        Phase.indirect,
        (ids[a], ids[b]),
        f"step {step}: #{ids[a]} vs #{ids[b]} best narrows the least certain boundary pair, "
        f"#{ids[i]} vs #{ids[j]} (z = {z[i, j]:.2f})",
    )


def _z_matrix(mean: NDArray[np.float64], cov: NDArray[np.float64]) -> NDArray[np.float64]:
    """z[i, j] = (θi − θj) / sd(θi − θj), the sd from the covariance of the difference."""
    var = np.diag(cov)
    diff_var = var[:, None] + var[None, :] - 2.0 * cov
    np.fill_diagonal(diff_var, 1.0)
    z: NDArray[np.float64] = (mean[:, None] - mean[None, :]) / np.sqrt(np.maximum(diff_var, 1e-12))
    return z


def _best_helper(
    mean: NDArray[np.float64],
    cov: NDArray[np.float64],
    i: int,
    j: int,
    candidates: list[tuple[int, int]],
) -> tuple[int, int] | None:
    """The pair whose vote would shrink the variance of θi − θj the most (one more logistic
    observation, Laplace update), among `candidates`; None when none would."""
    if not candidates:
        return None
    c = np.zeros(len(mean))
    c[i], c[j] = 1.0, -1.0
    sc = cov @ c
    a = np.array([p[0] for p in candidates])
    b = np.array([p[1] for p in candidates])
    p = 1.0 / (1.0 + np.exp(-(mean[a] - mean[b])))
    w = p * (1.0 - p)
    uu = cov[a, a] + cov[b, b] - 2.0 * cov[a, b]
    gain = (sc[a] - sc[b]) ** 2 * w / (1.0 + w * uu)
    best = int(np.argmax(gain))
    if gain[best] <= 1e-9:
        return None
    return candidates[best]


async def _voted_pairs(
    session: AsyncSession, run_id: int, step: int, voter: str | None
) -> set[tuple[int, int]]:
    if voter is None:
        return set()
    rows = await session.execute(
        select(Vote.low_id, Vote.high_id).where(
            Vote.voter == voter, Vote.run_id == run_id, Vote.step == step
        )
    )
    return {(low, high) for low, high in rows.tuples()}
