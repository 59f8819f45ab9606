"""Another program holding the database: recognising it, and retrying a write within bounds.

SQLite lets one writer at a time, and the bot opens every transaction with `BEGIN IMMEDIATE`,
so a `sqlite3` shell left inside a write transaction stops reads and writes alike. Each statement
waits `db.engine.BUSY_TIMEOUT`, then fails with "database is locked". A command shows the
person one line about it (the error boundary, `bot.app.report_error`); a vote, which nobody
should have to tap twice for a passing lock, is tried again for `WRITE_RETRY_SECONDS` first
(`retry_while_busy`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import SessionFactory
from orchestration.errors import DatabaseBusy

T = TypeVar("T")

# How long a write is tried again while the database is held, counted from the first attempt;
# the last attempt may add one BUSY_TIMEOUT. Far inside Discord's 15 minutes for a follow-up.
WRITE_RETRY_SECONDS = 15.0
# The pause between attempts, in which other work can have the bot's one connection.
RETRY_PAUSE = 0.25

_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
BUSY = "The database is busy (another program is holding it)"

log = logging.getLogger(__name__)


def is_busy(error: BaseException) -> bool:
    """Whether `error` is SQLite's "database is locked" (SQLITE_BUSY or SQLITE_LOCKED), however
    SQLAlchemy wrapped it."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.OperationalError):
            code = getattr(current, "sqlite_errorcode", None)
            if code is not None:
                return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
            return "database is locked" in str(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


def busy_refusal(outcome: str) -> DatabaseBusy:
    """The one line a person sees, e.g. `busy_refusal("your vote was not recorded. Tap again
    in a minute")`; `outcome` must be true of what was committed."""
    return DatabaseBusy(f"{BUSY}, so {outcome}.")


async def retry_while_busy(
    sessions: SessionFactory,
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    refusal: str,
    what: str,
) -> T:
    """`work` in a fresh session, tried again while the database is held, for at most
    `WRITE_RETRY_SECONDS`; then `busy_refusal(refusal)`. `work` must be one transaction, so a
    busy error means it committed nothing and trying again cannot do anything twice."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + WRITE_RETRY_SECONDS
    attempt = 1
    while True:
        try:
            async with sessions() as session:
                return await work(session)
        except Exception as err:
            if not is_busy(err):
                raise
            if loop.time() + RETRY_PAUSE >= deadline:
                log.warning("%s: the database stayed locked for %.1f s over %d attempt(s); "
                            "given up", what, loop.time() - started, attempt)
                raise busy_refusal(refusal) from err
            log.info("%s: the database is locked by another program; trying again (attempt %d)",
                     what, attempt)
        attempt += 1
        await asyncio.sleep(RETRY_PAUSE)
