"""An online copy of the SQLite database, safe while the bot runs.

SQLite's backup API reads the live file in one read transaction: in WAL the bot keeps writing
meanwhile, and the copy holds every transaction committed before it began, never half of one.
The copy is written under a temporary name beside PATH, checked, synced and then renamed, so
PATH is either a whole, checked database or absent.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from db.engine import SQLITE_PRAGMAS
from orchestration.errors import Conflict, InvalidInput, NotFound
from scheduler.storage import sync_folder


@dataclass(frozen=True)
class Backup:
    source: Path
    path: Path
    size: int


def database_file(url: str) -> Path:
    parsed = make_url(url)
    if parsed.database in (None, "", ":memory:"):
        raise InvalidInput("DATABASE_URL is an in-memory SQLite database: no file to copy.")
    source = Path(parsed.database).expanduser()
    if not source.is_file():
        raise NotFound(f"there is no database at {source}: check DATABASE_URL.")
    return source


def backup_database(url: str, path: Path) -> Backup:
    """Copy the live database at `url` into the new file `path`."""
    source = database_file(url)
    if path.exists():
        raise Conflict(f"{path} already exists: a backup never overwrites, give a new path.")
    if not path.parent.is_dir():
        raise NotFound(f"folder {path.parent} does not exist: create it first.")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.part-")
    os.close(fd)
    os.chmod(tmp, source.stat().st_mode & 0o777)  # readable by whom the database is
    try:
        with closing(sqlite3.connect(source, timeout=30)) as live, \
                closing(sqlite3.connect(tmp)) as copy:
            for pragma in SQLITE_PRAGMAS:
                live.execute(f"PRAGMA {pragma}")
            live.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            check = [row[0] for row in copy.execute("PRAGMA integrity_check")]
        if check != ["ok"]:
            raise Conflict(f"the copy of {source} failed its integrity check ({check[0]}); "
                           f"nothing was written to {path}.")
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except sqlite3.DatabaseError as err:
        Path(tmp).unlink(missing_ok=True)
        raise InvalidInput(f"{source} could not be copied as a SQLite database ({err}); "
                           f"nothing was written to {path}.") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sync_folder(path.parent)
    return Backup(source=source, path=path, size=path.stat().st_size)
