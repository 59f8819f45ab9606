"""The schema upgrade of a start, SIGKILLed at seeded random moments in a process of its own,
on a new file and on a file at revision 0001 holding rows: after each kill a normal start
reaches the newest revision and every row is still there. The processes are forked from one
that has done the imports already (tests/procs/upgrade_forker.py), so a kill lands while the
upgrade works on the file rather than while Python loads modules."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from db.migrate import current_revision, head_revision, upgrade_database
from tests.db.old_database import kept_rows, seed_0001, sql, tables

REPO = Path(__file__).resolve().parents[2]
KILLS_PER_KIND = 7


def url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def copy_database(source: Path, target: Path) -> None:
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


class Forker:
    """The process that forks one upgrade process per database."""

    def __init__(self, log: Path) -> None:
        self.log = log
        with log.open("w") as errors:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.procs.upgrade_forker"], cwd=REPO, text=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
        assert self.read() == "ready", self.log.read_text()

    def read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def write(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def start(self, path: Path) -> int:
        """The pid of a new process that upgrades this file, already at work."""
        self.write(url(path))
        return int(self.read())

    def ended(self) -> int:
        """The return code of the upgrade process, once it has ended."""
        self.write("reap")
        line = self.read()
        assert line.startswith("ended "), (line, self.log.read_text())
        return int(line.removeprefix("ended "))

    def upgrade_seconds(self, path: Path) -> float:
        """How long an upgrade of this file takes here, uninterrupted: the window to kill in."""
        self.start(path)
        began = time.monotonic()
        assert self.ended() == 0, self.log.read_text()
        return time.monotonic() - began

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture
def forker(tmp_path: Path) -> Iterator[Forker]:
    forker = Forker(tmp_path / "upgrades.log")
    yield forker
    forker.close()


async def broken_after_kill(path: Path, rows: dict[str, list[tuple[object, ...]]] | None,
                            head_tables: set[str]) -> str | None:
    """What is wrong with the file once a normal start has upgraded it, if anything."""
    try:
        await upgrade_database(url(path))
    except Exception as err:  # the finding of the experiment
        return f"the next start failed: {str(err).splitlines()[0]}"
    if await current_revision(url(path)) != head_revision():
        return f"the next start left revision {await current_revision(url(path))}"
    if tables(path) != head_tables:
        return f"tables differ from a new file's: {tables(path) ^ head_tables}"
    if rows is not None and kept_rows(path) != rows:
        return "rows were lost or changed"
    if sql(path, "PRAGMA integrity_check") != [("ok",)]:
        return "the file is corrupt"
    return None


def test_upgrade_killed_at_random_moments_never_bricks_the_database(tmp_path, forker):
    rng = random.Random(20261216)
    new_file = tmp_path / "head.db"
    window_new = forker.upgrade_seconds(new_file)
    head_tables = tables(new_file)
    old_file = tmp_path / "old.db"
    asyncio.run(upgrade_database(url(old_file), "0001"))
    seed_0001(old_file)
    rows = kept_rows(old_file)
    old_copy = tmp_path / "old-copy.db"
    copy_database(old_file, old_copy)
    window_old = forker.upgrade_seconds(old_copy)

    findings: list[str] = []
    killed = 0
    for kill in range(2 * KILLS_PER_KIND):
        path = tmp_path / f"kill-{kill}.db"
        from_old = kill % 2 == 1
        if from_old:
            copy_database(old_file, path)
        pid = forker.start(path)
        time.sleep(rng.uniform(0, window_old if from_old else window_new))  # the moment to kill
        os.kill(pid, signal.SIGKILL)  # not reaped yet: the pid is still the upgrade's
        killed += forker.ended() == -signal.SIGKILL
        found = asyncio.run(broken_after_kill(path, rows if from_old else None, head_tables))
        if found:
            findings.append(f"{'0001 file' if from_old else 'new file'}, kill {kill}: {found}")

    assert not findings, f"{len(findings)} of {2 * KILLS_PER_KIND} kills: " + "; ".join(findings)
    assert killed >= KILLS_PER_KIND, f"only {killed} kills came before the upgrade ended"
