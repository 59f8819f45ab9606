"""Schema upgrades in processes of their own, for the kill test, without paying the imports of
a fresh interpreter for each (a second and more, mostly for the rating fit that a migration
uses): this process imports once, then forks one child per upgrade.

    python -m tests.procs.upgrade_forker

Prints `ready`, then for each database URL read from stdin forks a child that upgrades it to
the newest revision (exit 0, or 1 with the error on stderr) and prints the child's pid. The
child is reaped only once the next line (`reap`) comes, so until then its pid stays its own
and a kill cannot reach another process; then prints `ended <returncode>` (negative: killed
by that signal). Ends at EOF.
"""

from __future__ import annotations

import asyncio
import os
import sys
import traceback

import alembic.command  # noqa: F401 - what an upgrade loads, loaded once before the forks

import orchestration.fit  # noqa: F401 - loads choix, numpy and scipy, which migration 0002 fits with
from db.migrate import upgrade_database


def upgrade(url: str) -> int:
    try:
        asyncio.run(upgrade_database(url))
    except Exception:  # reported to the test through stderr and the exit code
        traceback.print_exc()
        return 1
    return 0


def main() -> None:
    print("ready", flush=True)
    while url := sys.stdin.readline().strip():
        pid = os.fork()
        if pid == 0:
            code = upgrade(url)
            sys.stderr.flush()
            os._exit(code)
        print(pid, flush=True)
        assert sys.stdin.readline().strip() == "reap"
        _, status = os.waitpid(pid, 0)
        print(f"ended {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()
