"""Bring a database to the newest schema; called at every start so old files upgrade themselves.

On SQLite the whole upgrade of one start is a single `BEGIN IMMEDIATE` transaction (DDL
included, as SQLite allows): a start that is killed or fails leaves the file exactly at the
revision it had. Files left half-upgraded by releases that committed each statement on its own
are repaired first when that loses nothing, and refused with one line when it might.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from db.base import Base
from db.engine import create_engine, ensure_sqlite_folder, is_sqlite

MIGRATIONS = Path(__file__).with_name("migrations")
BATCH_COPY_PREFIX = "_alembic_tmp_"
WRITTEN_BY_MIGRATIONS = {"scheduler_state": "id = 1 AND last_run_id IS NULL"}
"""Rows a migration inserts itself: a table holding only these holds nothing of a user's."""

log = logging.getLogger(__name__)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


class MigrationError(RuntimeError):
    pass


async def upgrade_database(url: str, revision: str = "head") -> None:
    """Upgrade with a connection of its own: batch migrations on SQLite need foreign keys off.

    The connection is already in its transaction when alembic gets it, so alembic runs every
    revision inside it and commits nothing itself."""
    try:
        ensure_sqlite_folder(url)
    except OSError as err:
        raise MigrationError(_unopenable(url, err.strerror or str(err))) from err
    cfg = alembic_config(url)
    engine = create_engine(url, foreign_keys=False)
    try:
        async with engine.begin() as conn:
            if is_sqlite(url):
                await conn.run_sync(_repair_interrupted_upgrade, _where(url))
            await conn.run_sync(_upgrade, cfg, revision)
            if is_sqlite(url):
                broken = (await conn.execute(text("PRAGMA foreign_key_check"))).all()
                if broken:
                    raise MigrationError(f"migration left dangling references: {broken[:5]}")
    except OperationalError as err:
        if "unable to open database file" not in str(err):
            raise
        raise MigrationError(_unopenable(url, "unable to open the file")) from err
    finally:
        await engine.dispose()


def _unopenable(url: str, why: str) -> str:
    return (f"DATABASE_URL: cannot create or open {make_url(url).database} ({why}); make its "
            "folder writable, or point DATABASE_URL (or DATA_DIR) elsewhere.")


def _where(url: str) -> str:
    return f"database {make_url(url).database}"


def _repair_interrupted_upgrade(connection: Connection, where: str) -> None:
    """Undo what an upgrade cut short by an older release left committed, never a user's row.

    A batch copy `_alembic_tmp_<table>` next to its table never got as far as replacing it:
    the table holds every row and the copy goes. Tables without a stamped revision are from a
    first start cut short: built again if they hold nothing, else the start is refused."""
    names = set(connection.scalars(text(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")))
    for copy in sorted(name for name in names if name.startswith(BATCH_COPY_PREFIX)):
        original = copy.removeprefix(BATCH_COPY_PREFIX)
        if original not in names:
            raise MigrationError(
                f"{where}: an interrupted upgrade left table {copy} without its original "
                f"{original}, so some rows may be only in the copy; restore the file from a "
                "backup (nothing was changed)."
            )
        log.warning("%s: dropping %s, the copy of %s an interrupted upgrade began",
                    where, copy, original)
        connection.execute(text(f'DROP TABLE "{copy}"'))
        names.discard(copy)

    tables = names - {"alembic_version"}
    if not tables or MigrationContext.configure(connection).get_current_revision() is not None:
        return
    unknown = sorted(tables - set(Base.metadata.tables))
    holding = [name for name in sorted(tables - set(unknown)) if _holds_rows(connection, name)]
    if unknown or holding:
        raise MigrationError(
            f"{where} has tables but no schema revision ("
            + (f"{', '.join(unknown[:3])} are not comfy-curator's" if unknown
               else f"{', '.join(holding[:3])} hold rows")
            + "); point DATABASE_URL at another file, or restore a backup (nothing was changed)."
        )
    log.warning("%s: a first start was cut short; building the empty schema again", where)
    for name in tables | names & {"alembic_version"}:
        connection.execute(text(f'DROP TABLE "{name}"'))


def _holds_rows(connection: Connection, table: str) -> bool:
    ours = WRITTEN_BY_MIGRATIONS.get(table)
    condition = f" WHERE NOT ({ours})" if ours else ""
    return bool(connection.scalar(text(f'SELECT EXISTS (SELECT 1 FROM "{table}"{condition})')))


def _upgrade(connection: Connection, cfg: Config, revision: str) -> None:
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(url: str) -> str | None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision()
            )
    finally:
        await engine.dispose()
