"""What a power cut keeps: every SQLite connection of ours, the migrations' included, commits to
disk before it returns (WAL, synchronous=FULL), and an image is on disk, name and bytes, once
its write returns."""

from __future__ import annotations

import os

from sqlalchemy import Connection, text

import db.migrate
from db.engine import create_engine
from db.migrate import upgrade_database
from scheduler.storage import write_atomically

FULL = 2
PRAGMAS = ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")


def read_pragmas(connection: Connection) -> dict[str, object]:
    return {name: connection.execute(text(f"PRAGMA {name}")).scalar() for name in PRAGMAS}


async def test_app_and_migration_connections_run_the_same_pragmas(tmp_path, monkeypatch):
    url = f"sqlite+aiosqlite:///{tmp_path}/new.db"
    seen: list[dict[str, object]] = []
    upgrade = db.migrate._upgrade

    def upgrade_and_look(connection: Connection, *args: object) -> None:
        seen.append(read_pragmas(connection))
        upgrade(connection, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(db.migrate, "_upgrade", upgrade_and_look)
    await upgrade_database(url)  # a new file: nothing set on it before
    engine = create_engine(url)
    async with engine.connect() as conn:
        app = await conn.run_sync(read_pragmas)
    await engine.dispose()

    assert app == {"journal_mode": "wal", "synchronous": FULL, "busy_timeout": app["busy_timeout"],
                   "foreign_keys": 1}
    assert seen == [{**app, "foreign_keys": 0}]  # batch copies of tables need them off


def test_image_and_its_folder_are_synced_around_the_rename(tmp_path, monkeypatch):
    """The file's bytes before it takes its name, the folder's entry for it after; a folder
    the write created is recorded in its own parent too."""
    synced: list[str] = []
    fsync = os.fsync

    def record(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    replace = os.replace

    def rename(source: str, target: str) -> None:
        synced.append(f"rename to {target}")
        replace(source, target)

    monkeypatch.setattr(os, "fsync", record)
    monkeypatch.setattr(os, "replace", rename)
    (tmp_path / "run").mkdir()

    target = write_atomically(tmp_path, "run/01-base/job-000001-0.png", b"png")

    assert target.read_bytes() == b"png"
    folder = tmp_path / "run" / "01-base"
    assert len(synced) == 4 and synced[0].startswith(f"{folder}/.part-"), synced
    assert synced[1:] == [f"rename to {target}", str(folder), str(tmp_path / "run")]

    synced.clear()
    write_atomically(tmp_path, "run/01-base/job-000001-1.png", b"png")  # the folder is there
    assert synced[1:] == [f"rename to {folder / 'job-000001-1.png'}", str(folder)]
