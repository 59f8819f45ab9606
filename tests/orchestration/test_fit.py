"""The Bradley–Terry fit of a step's votes (docs/voting.md, "Ratings")."""

from __future__ import annotations

import ast
from pathlib import Path

import choix
import numpy as np
import pytest
from scipy.special import expit

from db.models import ImageCandidate
from orchestration.fit import ELO_PER_UNIT, PRIOR_ELO_SD, PRIOR_GAMES, fit_ratings

REPO = Path(__file__).resolve().parents[2]


def test_elo_scale_known_values():
    """On the fit's Elo scale the chance that A beats B is 1 / (1 + 10^((Rb − Ra)/400))."""

    def win(rating_a: float, rating_b: float) -> float:
        return float(expit((rating_a - rating_b) / ELO_PER_UNIT))

    assert win(1000, 1000) == pytest.approx(0.5)
    # 400 points apart: 10:1 odds.
    assert win(1400, 1000) == pytest.approx(10 / 11)
    assert win(1000, 1400) == pytest.approx(1 / 11)
    assert win(1200, 1000) == pytest.approx(0.7597469266)


def test_fit_is_the_posterior_mode_choix_finds():
    """Cross-check with choix's other fitter: four times the votes and four times the prior
    (whole virtual games against the reference, item 3) have the same mode."""
    results = [(10, 20, 2), (20, 10, 1), (20, 30, 3), (10, 30, 1)]
    fit = fit_ratings(results)
    index = {10: 0, 20: 1, 30: 2}
    data = [(index[w], index[lo]) for w, lo, t in results for _ in range(4 * t)]
    games = round(4 * PRIOR_GAMES / 2)
    data += [(i, 3) for i in range(3) for _ in range(games)]
    data += [(3, i) for i in range(3) for _ in range(games)]
    params = choix.opt_pairwise(4, data, alpha=1e-12, tol=1e-12)
    assert fit.ids == (10, 20, 30)
    assert fit.theta == pytest.approx(params[:3] - params[3], abs=1e-3)
    assert [fit.votes(c) for c in (10, 20, 30, 99)] == [4, 6, 4, 0]


def test_one_vote_and_no_votes():
    fit = fit_ratings([(1, 2, 1)])
    assert fit.elo(1) > 1000 > fit.elo(2)
    assert fit.elo(1) - 1000 == pytest.approx(1000 - fit.elo(2))
    assert fit.elo_sd(1) == pytest.approx(fit.elo_sd(2)) and fit.elo_sd(1) < PRIOR_ELO_SD
    # A candidate the votes never met sits at the prior, independent of the others.
    assert fit.elo(3) == 1000 and fit.elo_sd(3) == pytest.approx(PRIOR_ELO_SD)
    cov = fit.covariance([1, 3, 2])
    assert cov[0, 1] == cov[1, 2] == 0 and cov[0, 2] > 0  # 1 and 2 share the vote
    assert fit_ratings([]).ids == ()


def test_uncertainty_shrinks_with_votes():
    few = fit_ratings([(1, 2, 1), (2, 1, 1)])
    many = fit_ratings([(1, 2, 20), (2, 1, 20)])
    assert few.elo(1) == pytest.approx(1000) == many.elo(1)
    assert many.elo_sd(1) < few.elo_sd(1) < PRIOR_ELO_SD
    # The difference is known better than the two ratings alone suggest: they covary.
    cov = many.covariance([1, 2])
    assert cov[0, 1] > 0
    assert ELO_PER_UNIT * np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]) < 2 * many.elo_sd(1)


def test_model_default_is_the_prior_spread():
    column = ImageCandidate.__table__.c.elo_sd
    assert column.default.arg == pytest.approx(PRIOR_ELO_SD, abs=0.01)


def module_imports(module: str) -> set[str]:
    """The modules named by import statements in `module`, the packages above it and each of
    our modules those reach: what loading it can load, read from the source without paying
    for it. Third-party packages are not followed; imports only for type checking are left out.
    """
    seen: set[str] = set()
    named: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        path = REPO.joinpath(*parts)
        source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if not source.is_file():
            continue  # not one of ours
        package = parts if source.name == "__init__.py" else parts[:-1]
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []
        for node in ast.walk(tree):
            found: list[str] = []
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package[: len(package) - node.level + 1], base]).strip(".")
                found = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            named.update(found)
            todo.extend(found)
    return named


def test_the_fit_needs_no_database():
    """Benchmarks and notebooks fit votes without the bot's database layer."""
    reached = module_imports("orchestration.fit")
    assert "choix" in reached
    assert sorted(m for m in reached if m.split(".")[0] in ("db", "sqlalchemy")) == []
    # The same reading finds the database where it is used.
    assert "db.models" in module_imports("orchestration.votes")
