"""Where a run's images live under DATA_DIR, and writing them so a crash leaves no half file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def image_relpath(run_folder: str, step_slug: str, job_id: int, index: int, suffix: str) -> str:
    """`<run folder>/<step slug>/job-000123-0.png`, relative to DATA_DIR."""
    return f"{run_folder}/{step_slug}/job-{job_id:06d}-{index}{suffix}"


def write_atomically(data_dir: Path, relpath: str, data: bytes) -> Path:
    """Write to a temp file in the same folder, then rename: the file is whole or absent."""
    target = data_dir / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
