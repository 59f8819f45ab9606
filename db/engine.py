"""Async engine and session factory.

SQLite gets the settings a single-process bot wants: WAL (readers never block the writer),
`synchronous=FULL` (a commit is on disk before it returns, so an acknowledged vote survives a
power cut), foreign keys on, `BEGIN IMMEDIATE` so a transaction that will write takes the lock
up front instead of failing halfway, and a pool of one connection so concurrent tasks wait
their turn in asyncio rather than in SQLite's sleeping busy handler. Other databases keep their
defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

SessionFactory = async_sessionmaker[AsyncSession]

SQLITE_PRAGMAS: tuple[str, ...] = (
    "journal_mode=WAL",
    "synchronous=FULL",
)
"""Every SQLite connection of ours runs these, the migrations' too; foreign keys and the busy
timeout apart."""


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def ensure_sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite file so a fresh checkout needs no manual mkdir."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str, *, echo: bool = False, foreign_keys: bool = True) -> AsyncEngine:
    """`foreign_keys=False` is for migrations: a batch copy of a table would trip them."""
    ensure_sqlite_folder(url)
    if not is_sqlite(url):
        return create_async_engine(url, echo=echo, pool_pre_ping=True)

    engine = create_async_engine(
        url,
        echo=echo,
        pool_size=1,
        max_overflow=0,
        pool_timeout=60,
        connect_args={"timeout": BUSY_TIMEOUT},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let us issue BEGIN ourselves (below) instead of the driver's implicit deferred BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute(f"PRAGMA busy_timeout={round(BUSY_TIMEOUT * 1000)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)


DATABASE_FILE = "comfy-curator.db"  # under DATA_DIR, unless DATABASE_URL says otherwise
DEFAULT_DATABASE_URL = f"sqlite+aiosqlite:///data/{DATABASE_FILE}"

# Seconds a statement waits for another program's lock on the SQLite file before it fails with
# "database is locked" (orchestration.busy decides what then). Read as connections are made.
BUSY_TIMEOUT = 5.0
