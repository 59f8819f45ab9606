"""Another program holding the database, as a `sqlite3` shell left open in a transaction does.

    python -m tests.procs.sqlite_holder DB_FILE [--exclusive]

Takes the write lock (`BEGIN IMMEDIATE` and a write; in WAL mode `BEGIN EXCLUSIVE` is the same
lock, and plain reads still go on beside it) and prints "held". With --exclusive it first sets
`PRAGMA locking_mode=EXCLUSIVE`, which in WAL mode shuts out readers as well (it gets the file
only while no other connection has it open). A line on standard input rolls back, prints
"released" and exits.
"""

from __future__ import annotations

import sqlite3
import sys


def main(path: str, exclusive: bool) -> int:
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")  # as the bot leaves its database
    if exclusive:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE pipelines SET name = name")
    print("held", flush=True)
    sys.stdin.readline()
    conn.execute("ROLLBACK")
    conn.close()
    print("released", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], "--exclusive" in sys.argv[2:]))
