"""The Bradley–Terry fit of one step's votes (docs/voting.md, "Ratings").

A step's ratings are a Bradley–Terry fit of all its votes (`choix`), not a running sum of
per-vote nudges: the same votes give the same ratings whatever their order, and every rating
comes with an uncertainty. The prior is weak: each candidate starts with half a virtual game
against a reference player rated 1000, a quarter won and a quarter lost, so a candidate without
votes is at 1000 and one vote moves it a long way. Ratings are shown on the Elo scale,
1000 + 400·θ/ln 10, where the chance that A beats B is 1 / (1 + 10^((Rb − Ra)/400)).
Pure: no database here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

BASE_RATING = 1000.0
ELO_PER_UNIT = 400.0 / math.log(10.0)  # Elo points per unit of θ (natural log-odds)
# Virtual games each candidate plays against the 1000-rated reference (half won, half lost).
PRIOR_GAMES = 0.5
# A candidate's uncertainty before any vote: the prior's standard deviation, in Elo points.
PRIOR_ELO_SD = ELO_PER_UNIT / math.sqrt(PRIOR_GAMES * 0.25)
_FIT_TOLERANCE = 1e-6  # successive iterates' L1 distance: ratings good to ~0.001 Elo
_FIT_MAX_ITER = 100_000

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
    import choix  # here: it loads scipy.stats (a second), which no command needs to start

    params = choix.ilsr_pairwise_dense(wins, tol=_FIT_TOLERANCE, max_iter=_FIT_MAX_ITER)
    theta = params[:n] - params[n]

    games = wins[:n, :n] + wins[:n, :n].T
    p = expit(theta[:, None] - theta[None, :])
    info = games * p * (1.0 - p)
    q = expit(theta)
    hessian = np.diag(info.sum(axis=1) + PRIOR_GAMES * q * (1.0 - q)) - info
    cov = np.linalg.inv(hessian)
    return StepRatings(ids, theta, cov, games.sum(axis=1))
