"""Benchmark bot.render on realistic inputs: ComfyUI-like 1024x1024 PNGs.

Run from the repo root: ``.venv/bin/python benchmarks/render.py``. The inputs are
seeded smooth "photographic" gradients plus sensor-like noise, so they compress
(and decode) like real generations (~1.7 MB each) instead of like flat colour.
The pair is rendered from the full-size PNGs. The sheet is measured twice: without
thumbnails (a tile decodes its PNG, as on the very first view) and as the bot renders it,
from the thumbnails it makes when each candidate arrives; the last line has the latter.
The last line is machine-readable:
``pair_median_ms=<n> pair_bytes=<n> sheet_median_ms=<n> sheet_bytes=<n>``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import numpy as np
from PIL import Image, PngImagePlugin

from bot.render import (
    Badge,
    Rendered,
    SheetItem,
    render_contact_sheet,
    render_pair,
)
from scheduler.thumbnails import make_thumbnail

SEED = 20240611
SIZE = 1024
PAIR_RUNS = 30
SHEET_RUNS = 10
SHEET_ITEMS = 24
BADGES: tuple[Badge, ...] = get_args(Badge)


def make_image(rng: np.random.Generator, size: int = SIZE) -> Image.Image:
    """Low-frequency colour fields + soft blobs + Gaussian noise (sigma 4)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.zeros((size, size, 3), np.float32)
    for c in range(3):
        a, b, phase = rng.uniform(-1.0, 1.0, 3)
        img[..., c] = 128 + 60 * np.sin(2 * np.pi * (a * x + b * y) + 3 * phase)
    for _ in range(12):
        cx, cy = rng.uniform(0.0, 1.0, 2)
        radius = rng.uniform(0.05, 0.3)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius * radius))
        img += blob[..., None] * rng.uniform(-80.0, 80.0, 3).astype(np.float32)
    img += rng.normal(0.0, 4.0, img.shape).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def save_like_comfyui(img: Image.Image, path: Path, seed: int) -> None:
    """ComfyUI's SaveImage: compress_level=4 plus a workflow text chunk."""
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps({"3": {"class_type": "KSampler", "inputs": {"seed": seed}}}))
    img.save(path, format="PNG", pnginfo=info, compress_level=4)


def timed(fn: Callable[[], Rendered], runs: int) -> tuple[list[float], Rendered]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return times, result


def main() -> int:
    rng = np.random.default_rng(SEED)
    with tempfile.TemporaryDirectory(prefix="render-bench-") as tmp:
        root = Path(tmp)
        pair = [root / "a.png", root / "b.png"]
        for i, path in enumerate(pair):
            save_like_comfyui(make_image(rng), path, SEED + i)
        sizes = [p.stat().st_size for p in pair]
        print(f"inputs: 2 x {SIZE}x{SIZE} PNG, {sizes[0]:,} and {sizes[1]:,} bytes")

        # 24 distinct files (copies of the two): nothing is cached in memory,
        # so each one is decoded from scratch exactly like a distinct generation.
        sheet_paths = []
        for i in range(SHEET_ITEMS):
            path = root / f"cand{i:02d}.png"
            shutil.copyfile(pair[i % 2], path)
            sheet_paths.append(path)
        items = [
            SheetItem(
                path,
                rank=i + 1,
                caption=f"Elo {1100 - 9 * i} · {4 + i % 3} votes",
                badge=BADGES[min(3, i // 6)],
            )
            for i, path in enumerate(sheet_paths)
        ]

        def do_pair() -> Rendered:
            return render_pair(
                pair[0],
                pair[1],
                label_a="#87 · step 2 · Elo 1032 · 4 votes",
                label_b="#91 · step 2 · Elo 1017 · 4 votes",
                header="Tree #12 · round 3 · which is better?",
            )

        def do_sheet() -> Rendered:
            return render_contact_sheet(items, title="Tree #12 · step 3 · 24 candidates")

        thumbs = root / ".thumbs"

        def do_cold_sheet() -> Rendered:
            shutil.rmtree(thumbs, ignore_errors=True)  # every tile from its full-size PNG
            return do_sheet()

        do_pair(), do_cold_sheet()  # warm-up: font loading, thread pool start-up
        pair_times, pair_out = timed(do_pair, PAIR_RUNS)
        cold_times, _ = timed(do_cold_sheet, SHEET_RUNS)
        # What the bot does when a candidate arrives (cogs.gallery), then the sheet /gallery
        # renders from those thumbnails.
        shutil.rmtree(thumbs, ignore_errors=True)
        thumb_times = []
        for path in sheet_paths:
            start = time.perf_counter()
            make_thumbnail(path)
            thumb_times.append((time.perf_counter() - start) * 1000)
        sheet_times, sheet_out = timed(do_sheet, SHEET_RUNS)

    pair_ms, sheet_ms = statistics.median(pair_times), statistics.median(sheet_times)
    print(
        f"pair:  {pair_out.width}x{pair_out.height} {pair_out.format}, "
        f"median {pair_ms:.1f} ms (min {min(pair_times):.1f}, max {max(pair_times):.1f}) "
        f"over {PAIR_RUNS} runs; target < 80 ms"
    )
    print(
        f"sheet without thumbnails (first view, every tile decoded from its PNG): median "
        f"{statistics.median(cold_times):.1f} ms (min {min(cold_times):.1f}, "
        f"max {max(cold_times):.1f}) over {SHEET_RUNS} runs"
    )
    print(
        f"thumbnail made when a candidate arrives: median {statistics.median(thumb_times):.1f} ms "
        f"each, off the GPU's path"
    )
    print(
        f"sheet: {sheet_out.width}x{sheet_out.height} {sheet_out.format}, from thumbnails, "
        f"median {sheet_ms:.1f} ms (min {min(sheet_times):.1f}, max {max(sheet_times):.1f}) "
        f"over {SHEET_RUNS} runs; target < 400 ms"
    )
    print(
        f"pair_median_ms={pair_ms:.1f} pair_bytes={len(pair_out.data)} "
        f"sheet_median_ms={sheet_ms:.1f} sheet_bytes={len(sheet_out.data)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
