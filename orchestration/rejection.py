"""Rejecting a candidate: the one rule, for a person's reject button and for a parent whose
image file is gone alike."""

from __future__ import annotations

from db.models import ImageCandidate
from orchestration.states import CandidateStatus


def mark_rejected(candidate: ImageCandidate, by: str) -> None:
    """A rejected candidate never becomes a parent again and leaves the top-K."""
    candidate.status = CandidateStatus.rejected
    candidate.advancing = False
    candidate.rejected_by = by[:100]  # the column's width
