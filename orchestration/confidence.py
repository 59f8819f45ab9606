"""How sure the ranking is that a step's top k are the true top k (docs/voting.md, "How sure the
ranking is").

One figure serves every place a person decides: the /approve preview, /gallery, the few-votes
warning, and the pair policy's "settled". It is the probability, under the Bradley–Terry fit of
the step's votes and its uncertainty, that the k candidates ranked first are exactly the k best.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ImageCandidate
from orchestration.errors import InvalidInput
from orchestration.fit import StepRatings
from orchestration.ranking import ranking_key
from orchestration.refits import step_ratings
from orchestration.states import CandidateStatus

# Draws from the ratings' posterior that estimate the chance; seeded, so a figure is stable.
CONFIDENCE_DRAWS = 4000
# Below this chance of being the true top k, the preview warns that votes are few.
FEW_VOTES_BELOW = 0.80


@dataclass(frozen=True)
class Confidence:
    """How sure the ranking is that its top k of a step are the true top k."""

    k: int
    top_ids: tuple[int, ...]  # the top k as the ranking has them now
    probability: float  # that these are the true top k, under the ratings' uncertainty
    label: str  # e.g. "likely (82 %)"
    few_votes_warning: str | None  # set when the probability is below FEW_VOTES_BELOW


async def step_posterior(
    session: AsyncSession, run_id: int, step: int
) -> tuple[StepRatings, list[int]]:
    """A fit of all the step's votes (fresh, not the stored ratings) and the step's active
    candidates in ranking order by that fit."""
    fit = await step_ratings(session, run_id, step)
    rows = await session.scalars(
        select(ImageCandidate.id).where(
            ImageCandidate.run_id == run_id,
            ImageCandidate.step == step,
            ImageCandidate.status == CandidateStatus.active,
        )
    )
    ranked = sorted(rows, key=lambda c: ranking_key(fit.elo(c), fit.votes(c), c))
    return fit, ranked


def check_k(k: int) -> None:
    if k < 1:
        raise InvalidInput(f"k must be at least 1 (it is how many candidates advance), got {k}.")


async def top_k_confidence(session: AsyncSession, run_id: int, step: int, k: int) -> Confidence:
    """The chance that the top k of `step` are the true top k, in numbers and in words."""
    check_k(k)
    fit, ranked = await step_posterior(session, run_id, step)
    return confidence_of(fit, ranked, k)


def confidence_of(fit: StepRatings, ranked: Sequence[int], k: int) -> Confidence:
    """The confidence of the first k of `ranked`, with its label and warning."""
    top = tuple(ranked[:k])
    if not ranked:
        return Confidence(k, top, 0.0, "no candidates yet", None)
    if len(ranked) <= k:
        return Confidence(k, top, 1.0, f"certain (all {len(ranked)} are in the top {k})", None)
    probability = top_k_probability(fit, ranked, k)
    percent = max(1, min(99, round(100 * probability)))
    label = f"{_words(probability)} ({percent} %)"
    warning = None
    if probability < FEW_VOTES_BELOW:
        warning = (
            f"Few votes so far: this top {k} is only {percent} % likely to be the true top {k}. "
            "More votes would make it surer."
        )
    return Confidence(k, top, probability, label, warning)


def top_k_probability(fit: StepRatings, ranked: Sequence[int], k: int) -> float:
    """The chance that the first k of `ranked` (the estimated top k, best first) are the true
    top k: the share of draws from the ratings' posterior whose best k are exactly those.

    The posterior is the Laplace approximation of the fit (a Gaussian with the fit's
    covariance), so candidates compared often with each other are known relative to each other
    better than their own spreads suggest. It is cautious where one candidate has won every
    comparison with another: there the Gaussian keeps a little doubt the votes do not.
    """
    if len(ranked) <= k:
        return 1.0
    ids = list(ranked)
    n = len(ids)
    chol = np.linalg.cholesky(fit.covariance(ids) + 1e-12 * np.eye(n))
    samples = _normal_draws(n) @ chol.T
    samples += fit.mean(ids)
    # The first k are the best k exactly when the weakest of them beats the best of the rest.
    return float((samples[:, :k].min(axis=1) > samples[:, k:].max(axis=1)).mean())


@functools.lru_cache(maxsize=8)
def _normal_draws(n: int) -> NDArray[np.float64]:
    """The same standard-normal draws for every call at n candidates: a figure does not
    wobble between two looks at the same votes, and drawing them is most of the cost."""
    draws = np.random.default_rng(0).standard_normal((CONFIDENCE_DRAWS, n))
    draws.flags.writeable = False
    return draws


def _words(probability: float) -> str:
    if probability >= 0.95:
        return "very likely"
    if probability >= 0.80:
        return "likely"
    if probability >= 0.50:
        return "more likely than not"
    if probability >= 0.20:
        return "uncertain"
    return "a guess so far"
