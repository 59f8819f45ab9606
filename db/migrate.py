"""Bring a database to the newest schema; called at every start so old files upgrade themselves."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from db.engine import ensure_sqlite_folder, is_sqlite

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


class MigrationError(RuntimeError):
    pass


async def upgrade_database(url: str, revision: str = "head") -> None:
    """Upgrade with a connection of its own: batch migrations on SQLite need foreign keys off."""
    ensure_sqlite_folder(url)
    cfg = alembic_config(url)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, cfg, revision)
            if is_sqlite(url):
                broken = (await conn.execute(text("PRAGMA foreign_key_check"))).all()
                if broken:
                    raise MigrationError(f"migration left dangling references: {broken[:5]}")
    finally:
        await engine.dispose()


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
