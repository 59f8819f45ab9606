"""Alembic environment: online, async, URL from the caller or from DATABASE_URL.

The connection is in its transaction before alembic sees it (`db.migrate.upgrade_database`
passes one, the `alembic` command gets one below), so alembic runs every revision inside that
one transaction and SQLite applies them all or none."""

import asyncio
import os

from alembic import context
from sqlalchemy import Connection

import db.models  # noqa: F401 - registers the tables on the metadata
from db.base import Base
from db.engine import DEFAULT_DATABASE_URL, create_engine

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return (
        config.get_main_option("sqlalchemy.url")
        or os.environ.get("DATABASE_URL")
        or DEFAULT_DATABASE_URL
    )


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(_url(), foreign_keys=False)
    async with engine.begin() as connection:
        await connection.run_sync(_configure_and_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    shared = config.attributes.get("connection")
    if shared is not None:
        _configure_and_run(shared)
    else:
        asyncio.run(_run_async())
