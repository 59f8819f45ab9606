"""Helpers shared by the benchmark scripts: a fresh migrated SQLite file and timing figures."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
from pathlib import Path

from db.migrate import upgrade_database


def fresh_database(name: str) -> tuple[Path, str]:
    """A new, migrated database file in a temp folder; returns its path and async URL."""
    path = Path(tempfile.mkdtemp(prefix=f"bench-{name}-")) / "bench.db"
    url = f"sqlite+aiosqlite:///{path}"
    asyncio.run(upgrade_database(url))
    return path, url


async def fresh_database_async(name: str) -> tuple[Path, str]:
    path = Path(tempfile.mkdtemp(prefix=f"bench-{name}-")) / "bench.db"
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_database(url)
    return path, url


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100) by the inclusive method."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]
