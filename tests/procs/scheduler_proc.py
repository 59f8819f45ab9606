"""The scheduler in a process of its own, for the kill tests.

    python -m tests.procs.scheduler_proc DB_URL DATA_DIR COMFY_URL SEED [--until-idle]

Runs until killed; with --until-idle it stops once every worker has found no work, and exits
0 (1 if that takes longer than a minute).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from pathlib import Path

from db.engine import create_engine, create_session_factory
from scheduler.process import Scheduler

CLIENT = {"retry_attempts": 3, "retry_wait": 0.02, "retry_max_wait": 0.1,
          "request_timeout": 5.0, "connect_timeout": 1.0, "poll_interval": 0.05,
          "idle_poll_interval": 1.0, "history_grace": 1.0, "silence_after": 0.5}


async def main(db_url: str, data_dir: Path, url: str, seed: int, until_idle: bool) -> int:
    engine = create_engine(db_url)
    scheduler = Scheduler(create_session_factory(engine), [url], data_dir,
                          rng=random.Random(seed), tick_seconds=1.0, down_retry_seconds=0.05,
                          client_options=CLIENT)
    await scheduler.start()
    try:
        if not until_idle:
            await asyncio.Event().wait()
        try:
            async with asyncio.timeout(60):
                await scheduler.wait_idle()
        except TimeoutError:
            return 1
        return 0
    finally:
        await scheduler.stop()
        await engine.dispose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    db_url, data_dir, url, seed = sys.argv[1:5]
    sys.exit(asyncio.run(main(db_url, Path(data_dir), url, int(seed),
                              "--until-idle" in sys.argv[5:])))
