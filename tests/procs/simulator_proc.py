"""A simulated ComfyUI in a process of its own, for the kill tests.

    python -m tests.procs.simulator_proc PORT ROOT RECORD INSTANCE DURATION

Every prompt that ends is appended to RECORD (one JSON line, flushed and fsynced) before its
history entry exists, so a line is on disk before any client can learn that the prompt ended,
and survives this process being killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from comfy.simulator import SimulatedComfy


class _RecordedHistory(dict[str, dict[str, Any]]):
    def __init__(self, record: Path, instance: int) -> None:
        super().__init__()
        self.record = record
        self.instance = instance

    def __setitem__(self, prompt_id: str, entry: dict[str, Any]) -> None:
        images = [image for output in entry["outputs"].values()
                  for image in output.get("images", []) if image.get("type") == "output"]
        line = {"instance": self.instance, "prompt_id": prompt_id,
                "status": entry["status"]["status_str"], "images": len(images)}
        with self.record.open("a") as handle:
            handle.write(json.dumps(line) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        super().__setitem__(prompt_id, entry)


async def main(port: int, root: Path, record: Path, instance: int, duration: float) -> None:
    sim = SimulatedComfy(port=port, root=root, duration=duration, seed=instance)
    sim._history = _RecordedHistory(record, instance)
    async with sim:
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    port, root, record, instance, duration = sys.argv[1:6]
    asyncio.run(main(int(port), Path(root), Path(record), int(instance), float(duration)))
