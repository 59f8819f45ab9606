"""Shared fixtures: a real, migrated SQLite file per test."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from db.engine import SessionFactory, create_engine, create_session_factory
from db.migrate import upgrade_database


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrate once per test session; each test gets a copy of the file (fast, still real)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    asyncio.run(upgrade_database(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
def db_url(tmp_path: Path, migrated_template: Path) -> str:
    target = tmp_path / "curator.db"
    shutil.copyfile(migrated_template, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


@pytest.fixture
def session_factory(engine: AsyncEngine) -> SessionFactory:
    return create_session_factory(engine)


@pytest.fixture
async def session(session_factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    async with session_factory() as s:
        yield s


@pytest.fixture(autouse=True)
def discord_rules() -> Iterator[None]:
    """Fail a test whose bot asked Discord for something Discord refuses (tests/discord_rules)."""
    from tests.discord_rules import BREACHES

    BREACHES.clear()
    yield
    breaches = [str(b) for b in BREACHES]
    BREACHES.clear()
    assert not breaches, "the bot broke Discord's rules:\n" + "\n".join(breaches)
