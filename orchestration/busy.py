"""Another program holding the database: recognising it, and the line a person reads.

SQLite lets one writer at a time, and the bot opens every transaction with `BEGIN IMMEDIATE`,
so a `sqlite3` shell left inside a write transaction stops reads and writes alike (what is done
about it: `app.transaction`).
"""

from __future__ import annotations

import sqlite3

from orchestration.errors import DatabaseBusy

_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
BUSY = "The database is busy (another program is holding it)"


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
