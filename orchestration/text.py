"""Small text helpers shared by the domain."""

from __future__ import annotations

import re
import unicodedata


def slugify(text: str, *, fallback: str = "item", max_length: int = 40) -> str:
    """A lowercase ASCII slug for folder names: 'Morning Gym Shoot!' -> 'morning-gym-shoot'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or fallback


def plural(count: int, noun: str) -> str:
    """'1 vote', '2 votes', '0 votes'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# Names of runs, pipelines and steps show up in channel names, menu choices and headers, which
# Discord limits to 100 characters.
NAME_MAX = 100


def caption(candidate_id: int, elo: float, votes: int) -> str:
    """How a candidate is named under its picture: "#12 · Elo 1034 · 3 votes"."""
    return f"#{candidate_id} · Elo {elo:.0f} · {plural(votes, 'vote')}"


def quoted(text: str, limit: int = 60) -> str:
    """Someone's input inside a message, cut so the message stays short: “abc…”."""
    text = " ".join(text.split())
    return f"“{text if len(text) <= limit else text[: limit - 1] + '…'}”"


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, marked with … when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def person(by: str) -> str:
    """Who did something, as Discord shows it: a user id becomes a mention, the scheduler
    "the scheduler: <why>"; other names (the demo, the command line) stay as they are."""
    if by.startswith(SCHEDULER):
        return f"the {by}"
    return f"<@{by}>" if by.isdigit() else by


SCHEDULER = "scheduler: "  # how the scheduler signs what it did, with its reason after


def byte_size(count: int) -> str:
    """A size as people read it, in powers of 1000: '812 bytes', '34.5 kB', '1.2 MB'."""
    if count < 1000:
        return plural(count, "byte")
    size = float(count)
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if round(size, 1) < 1000:
            return f"{size:.1f} {unit}"
    return f"{size / 1000:.1f} TB"
