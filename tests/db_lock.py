"""A database held by another process (tests/procs/sqlite_holder.py), for the busy tests."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.engine import make_url


@dataclass
class HeldLock:
    process: asyncio.subprocess.Process
    released: bool = False

    async def release(self) -> None:
        """Let go of the lock and wait until the other process says it has."""
        if self.released:
            return
        self.released = True
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(b"\n")
        await self.process.stdin.drain()
        async with asyncio.timeout(10):
            assert (await self.process.stdout.readline()).strip() == b"released"
            await self.process.wait()


@asynccontextmanager
async def held_lock(db_url: str, *, exclusive: bool = False) -> AsyncIterator[HeldLock]:
    """Another process holds the write lock (and with `exclusive`, shuts out readers too)
    until `release()` or the end of the block."""
    path = make_url(db_url).database
    assert path is not None
    args = [sys.executable, "-m", "tests.procs.sqlite_holder", path]
    process = await asyncio.create_subprocess_exec(
        *([*args, "--exclusive"] if exclusive else args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    holder = HeldLock(process)
    try:
        assert process.stdout is not None
        async with asyncio.timeout(10):
            assert (await process.stdout.readline()).strip() == b"held"
        yield holder
    finally:
        try:
            await holder.release()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
