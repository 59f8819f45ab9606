"""docs/pictures.py: the pictures and texts of docs/discord.md, made by the bot's own code from a
simulated run. The script is not a package; it is loaded by its path."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

from PIL import Image

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "pictures.py"


def load_script():
    name = "docs_pictures"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file loads
    spec.loader.exec_module(module)
    return module


async def test_the_script_writes_every_picture_and_text(tmp_path):
    pictures = load_script()
    started = time.monotonic()
    written = await pictures.build(tmp_path)
    assert time.monotonic() - started < 60

    names = {p.name for p in written}
    assert names == {p.name for p in tmp_path.iterdir()}
    for stem in ("pair", "gallery", "approve", "candidate"):
        [path] = [p for p in written if p.stem == stem]
        assert path.suffix in (".jpg", ".png")
        assert path.stat().st_size <= pictures.PICTURE_MAX_BYTES
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.format == ("JPEG" if path.suffix == ".jpg" else "PNG")
            if stem == "candidate":
                assert max(im.size) <= pictures.CANDIDATE_MAX_SIDE
            else:
                assert im.width >= 320  # a composite or sheet, not a thumbnail

    text = (tmp_path / "messages.md").read_text(encoding="utf-8")
    for stem in ("pair", "gallery", "approve", "candidate"):
        [path] = [p for p in written if p.stem == stem]
        assert f"]({path.name})" in text  # each picture is shown with its texts
    for expected in (
        "Which is better? Step 2:",
        "[A better] [B better] [Skip] [Reject A] [Reject B]",
        "is better than",
        "rejected — carol",
        "This pair is out of date: step 2 was approved meanwhile. Nothing recorded.",
        "Step 2 is ready for review: 9 candidates",
        "/approve step:2 k:3",
        "This run is on hold: 3 jobs in a row failed at step 3",
        "has no work left",
        "Top 3: likely",
        "Approve step 2 of run #1: these 3 advance",
        "Step 2 approved:",
        "Lineage: step 1 #",
        "Started run #1 “Morning gym” on cpu-demo (3 steps) in #run-0001-morning-gym",
        "Imported **cpu-demo**: base → refine → upscale",
        "Runs with work: none",
        "awaiting approval · 33% done",
        "no work left · 100% done",
        "Run #1 “Morning gym” resumed.",
        "was completed by @carol.",
    ):
        assert expected in text, expected
    assert "<#" not in text and "<@" not in text  # mentions shown as Discord shows them
    assert "127.0.0.1:8188" in text  # not the simulator's passing port
