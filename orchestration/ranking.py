"""How candidates of a step are ranked everywhere: rating, then more votes, then older first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import UnaryExpression

from db.models import ImageCandidate

RANKING: tuple[UnaryExpression[Any], ...] = (
    ImageCandidate.elo.desc(),
    ImageCandidate.votes.desc(),
    ImageCandidate.id.asc(),
)


def ranking_key(elo: float, votes: int, candidate_id: int) -> tuple[float, int, int]:
    """RANKING for ratings fitted in memory: sort by this key, best first."""
    return (-elo, -votes, candidate_id)
