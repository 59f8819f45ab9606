"""Errors a person can cause. Each message is written to be shown to them as it is."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every user-facing refusal; the Discord and CLI layers show `str(err)`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    """A run, step, pipeline or candidate that does not exist."""


class InvalidInput(DomainError):
    """A value out of range or a malformed file."""


class Conflict(DomainError):
    """The request is valid but the state forbids it (already approved, completed run, …)."""


class DuplicateVote(Conflict):
    """The same person already voted on this pair; nothing changed."""


class MissingVariables(InvalidInput):
    """A run lacks variables its pipeline's workflows need."""


class DatabaseBusy(DomainError):
    """Another program held the database longer than the bot waits (orchestration.busy)."""
