"""The pipelines that ship with comfy-curator, as package data, so an install that is not a
clone (`pip install .`, pipx) has them too: `cpu-demo` (the demo's) and `sdxl-refine-upscale`."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def shipped(name: str) -> Path:
    """The folder of a shipped pipeline, e.g. `shipped("cpu-demo")`."""
    return Path(str(files(__name__) / name))
