"""The confidence of a step's top k (docs/voting.md, "How sure the ranking is")."""

from __future__ import annotations

import pytest

from orchestration.confidence import (
    FEW_VOTES_BELOW,
    confidence_of,
    top_k_confidence,
    top_k_probability,
)
from orchestration.errors import InvalidInput
from orchestration.fit import fit_ratings


async def test_k_below_one_is_refused(session):
    with pytest.raises(InvalidInput, match="at least 1"):
        await top_k_confidence(session, 1, 2, 0)


def test_labels_and_the_warning_follow_the_figure():
    unsure = confidence_of(fit_ratings([(1, 2, 1), (3, 4, 1)]), [1, 3, 2, 4], 2)
    assert unsure.probability < FEW_VOTES_BELOW
    assert unsure.few_votes_warning is not None
    assert f"only {round(100 * unsure.probability)} %" in unsure.few_votes_warning
    sure = confidence_of(fit_ratings([(1, 2, 30), (1, 3, 30), (2, 3, 30)]), [1, 2, 3], 1)
    assert sure.label.startswith("very likely") and sure.few_votes_warning is None
    assert confidence_of(fit_ratings([]), [7, 8], 2).label == "certain (all 2 are in the top 2)"
    assert confidence_of(fit_ratings([]), [], 2).label == "no candidates yet"


def test_top_k_probability_counts_the_set_not_the_order():
    # Two clearly best, never compared with each other: the set is certain, their order not.
    fit = fit_ratings(
        [(t, r, 10) for t in (1, 2) for r in (3, 4, 5, 6)]
        + [(r, t, 1) for t in (1, 2) for r in (3, 4, 5, 6)]
    )
    assert top_k_probability(fit, [1, 2, 3, 4, 5, 6], 2) > 0.95
    assert 0.35 < top_k_probability(fit, [1, 2, 3, 4, 5, 6], 1) < 0.65
    # Nothing known: any given 2 of 4 is a 1-in-6 chance.
    assert top_k_probability(fit_ratings([]), [1, 2, 3, 4], 2) == pytest.approx(1 / 6, abs=0.03)


def test_one_vote_is_not_enough_and_many_are():
    assert 0.55 < top_k_probability(fit_ratings([(1, 2, 1)]), [1, 2], 1) < 0.9
    assert top_k_probability(fit_ratings([(1, 2, 20), (2, 1, 4)]), [1, 2], 1) > 0.95
