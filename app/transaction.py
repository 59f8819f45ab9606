"""The one way a use case holds the database: a session in one transaction.

Another program may hold a SQLite file (a `sqlite3` shell left inside a write); each statement
then waits `db.engine.BUSY_TIMEOUT` and fails with "database is locked". A command shows the
person one line about it (`bot.app.report_error`); a vote, which nobody should have to tap twice
for a passing lock, is tried again for `WRITE_RETRY_SECONDS` first (`retry_while_busy`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.context import App
from orchestration.busy import busy_refusal, is_busy

T = TypeVar("T")

# How long a write is tried again while the database is held, counted from the first attempt;
# the last attempt may add one BUSY_TIMEOUT. Far inside Discord's 15 minutes for a follow-up.
WRITE_RETRY_SECONDS = 15.0
# The pause between attempts, in which other work can have the bot's one connection.
RETRY_PAUSE = 0.25

log = logging.getLogger(__name__)


@asynccontextmanager
async def transaction(app: App) -> AsyncIterator[AsyncSession]:
    """A session whose work is committed when the block ends, and rolled back if it raises."""
    async with app.sessions() as session, session.begin():
        yield session


@asynccontextmanager
async def look(app: App) -> AsyncIterator[AsyncSession]:
    """A session for a use case that changes nothing: whatever it wrote is rolled back."""
    async with app.sessions() as session, session.begin() as tx:
        yield session
        await tx.rollback()


async def retry_while_busy(
    app: App,
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    refusal: str,
    what: str,
) -> T:
    """`work` in one transaction, tried again while the database is held, for at most
    `WRITE_RETRY_SECONDS`; then `busy_refusal(refusal)`. A busy error means the transaction
    committed nothing, so trying again cannot do anything twice."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + WRITE_RETRY_SECONDS
    attempt = 1
    while True:
        try:
            async with transaction(app) as session:
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
