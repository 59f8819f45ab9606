"""bot.render with real images written by Pillow: layout, limits, and failure modes."""

from __future__ import annotations

import asyncio
import io
import logging
import os
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from PIL import Image, ImageFont

from bot import render
from bot.render import (
    PAIR_MAX_BYTES,
    SHEET_MAX_BYTES,
    Badge,
    Rendered,
    RenderTooLargeError,
    SheetItem,
    encode,
    render_contact_sheet,
    render_pair,
    to_rgb,
)
from scheduler.thumbnails import THUMB_SIDE, thumbnail_path

RED = (220, 30, 30)
BLUE = (30, 30, 220)
GREEN = (30, 200, 30)


def solid(path: Path, colour: tuple[int, int, int], size=(1024, 1024), **save) -> Path:
    Image.new("RGB", size, colour).save(path, **save)
    return path


def noise(path: Path, size: int = 512, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def decode(out: Rendered) -> Image.Image:
    """Decode and check the metadata agrees with the bytes."""
    im = Image.open(io.BytesIO(out.data))
    im.load()
    assert im.format == out.format
    assert im.size == (out.width, out.height)
    assert out.filename.endswith({"JPEG": ".jpg", "PNG": ".png"}[out.format])
    return im.convert("RGB")


def near(pixel, colour, tol: int = 40) -> bool:
    return all(abs(int(p) - c) <= tol for p, c in zip(pixel, colour, strict=True))


def pair(a: Path, b: Path, **kw) -> Rendered:
    return render_pair(
        a,
        b,
        label_a="#87 · step 2 · Elo 1032 · 4 votes",
        label_b="#91 · step 2 · Elo 998 · 4 votes",
        header="Which is better?",
        **kw,
    )


# --- pair -------------------------------------------------------------------------


def test_pair_a_left_b_right(tmp_path):
    out = pair(solid(tmp_path / "a.png", RED), solid(tmp_path / "b.png", BLUE))
    im = decode(out)
    assert out.filename.startswith("pair.")
    assert len(out.data) <= PAIR_MAX_BYTES
    assert 1000 <= out.width <= 1280
    mid = out.height // 2
    assert near(im.getpixel((out.width // 4, mid)), RED)
    assert near(im.getpixel((3 * out.width // 4, mid)), BLUE)


def test_pair_badges_are_drawn(tmp_path):
    # Same grey image on both sides: the top-left corner of each panel must differ
    # from the image and from each other (blue A badge vs orange B badge).
    grey = solid(tmp_path / "g.png", (128, 128, 128))
    im = decode(pair(grey, grey))
    half = im.width // 2
    corner = np.asarray(im.crop((0, 60, 140, 200)), dtype=int)
    corner_b = np.asarray(im.crop((half, 60, half + 140, 200)), dtype=int)
    assert (np.abs(corner - 128).sum(axis=2) > 120).mean() > 0.2
    assert np.abs(corner.mean(axis=(0, 1)) - corner_b.mean(axis=(0, 1))).max() > 40


def bbox_ratio(im: Image.Image, colour, x0: int, x1: int) -> float:
    arr = np.asarray(im, dtype=int)[:, x0:x1]
    mask = (np.abs(arr - np.array(colour)) < 50).all(axis=2)
    ys, xs = np.nonzero(mask)
    return float((xs.max() - xs.min() + 1) / (ys.max() - ys.min() + 1))


def test_pair_non_square_inputs_keep_aspect(tmp_path):
    wide = solid(tmp_path / "wide.png", RED, size=(1200, 400))
    tall = solid(tmp_path / "tall.jpg", BLUE, size=(300, 900), quality=95)
    out = pair(wide, tall)
    im = decode(out)
    assert out.width <= 1280
    half = out.width // 2
    assert bbox_ratio(im, RED, 0, half) == pytest.approx(3.0, rel=0.05)
    assert bbox_ratio(im, BLUE, half, out.width) == pytest.approx(1 / 3, rel=0.05)


def test_pair_small_and_large_jpeg_inputs(tmp_path):
    small = solid(tmp_path / "small.png", RED, size=(96, 64))
    big = solid(tmp_path / "big.jpg", BLUE, size=(3000, 2000), quality=90)  # draft path
    out = pair(small, big)
    im = decode(out)
    mid = out.height // 2
    assert near(im.getpixel((out.width // 4, mid)), RED)
    assert near(im.getpixel((3 * out.width // 4, mid)), BLUE)


def test_pair_transparent_and_palette_inputs(tmp_path):
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (512, 512), (*RED, 255)).save(rgba)
    pal = tmp_path / "pal.gif"
    Image.new("RGB", (512, 512), BLUE).convert("P").save(pal)
    out = pair(rgba, pal)
    im = decode(out)
    mid = out.height // 2
    assert near(im.getpixel((out.width // 4, mid)), RED)
    assert near(im.getpixel((3 * out.width // 4, mid)), BLUE)


def test_pair_sixteen_bit_greyscale_is_not_blown_out(tmp_path):
    g16 = tmp_path / "g16.png"
    Image.fromarray(np.full((300, 300), 128 * 256, dtype=np.uint16)).save(g16)
    out = pair(g16, g16)
    im = decode(out)
    assert near(im.getpixel((out.width // 4, out.height // 2)), (128, 128, 128), tol=8)


def test_pair_missing_and_corrupt_files_become_placeholders(tmp_path, caplog):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 100)
    with caplog.at_level(logging.WARNING, logger="scheduler.thumbnails"):
        out = pair(tmp_path / "does-not-exist.png", corrupt)
    im = decode(out)
    below_text = out.height // 2 + 100
    for x in (out.width // 4, 3 * out.width // 4):
        assert near(im.getpixel((x, below_text)), render._PLACEHOLDER, tol=12)
    assert "does-not-exist.png" in caplog.text
    assert "corrupt.png" in caplog.text


def test_pair_odd_text_is_fitted_not_boxed(tmp_path):
    a = solid(tmp_path / "a.png", RED)
    out = render_pair(a, a, label_a="café — 🌲 " * 20, label_b="", header="x" * 500)
    decode(out)


# --- contact sheet ----------------------------------------------------------------


def sheet_cell_centre(out: Rendered, index: int, cols: int, rows: int) -> tuple[int, int]:
    """Approximate centre of a thumbnail: tolerant to small layout changes."""
    pitch_x = out.width / cols
    pitch_y = (out.height - 64) / rows
    return (
        int(pitch_x * (index % cols + 0.5)),
        int(64 + pitch_y * (index // cols) + pitch_x * 0.45),
    )


def test_sheet_single_item(tmp_path):
    out = render_contact_sheet(
        [SheetItem(solid(tmp_path / "a.png", RED), 1, "Elo 1032 · 4 votes", "advancing")],
        title="Tree #1 · step 1",
    )
    im = decode(out)
    assert out.filename.startswith("sheet.")
    assert out.width <= 1280
    assert len(out.data) <= SHEET_MAX_BYTES
    assert near(im.getpixel((out.width // 2, out.height // 2 - 20)), RED)


def test_sheet_24_items_in_rank_order(tmp_path):
    red, green, blue = (
        solid(tmp_path / f"{n}.png", c) for n, c in (("r", RED), ("g", GREEN), ("b", BLUE))
    )
    badges: tuple[Badge, ...] = get_args(Badge)
    items = [
        SheetItem(
            red if i == 0 else blue if i == 23 else green,
            i + 1,
            f"Elo {1100 - i} · {i % 5} votes",
            badges[i % 4],
        )
        for i in range(24)
    ]
    out = render_contact_sheet(items, title="Tree #12 · 24 candidates")
    im = decode(out)
    assert out.width <= 1280
    assert out.height > out.width  # 4 columns x 6 rows
    assert len(out.data) <= SHEET_MAX_BYTES
    assert near(im.getpixel(sheet_cell_centre(out, 0, 4, 6)), RED)
    assert near(im.getpixel(sheet_cell_centre(out, 5, 4, 6)), GREEN)
    assert near(im.getpixel(sheet_cell_centre(out, 23, 4, 6)), BLUE)


def test_sheet_missing_file_is_grey_placeholder(tmp_path):
    a = solid(tmp_path / "a.png", RED)
    items = [
        SheetItem(a, 1, "Elo 1", "advancing"),
        SheetItem(tmp_path / "gone.png", 2, "Elo 2", "pending"),
        SheetItem(a, 3, "Elo 3", "rejected"),
        SheetItem(a, 4, "Elo 4", "not_advancing"),
    ]
    out = render_contact_sheet(items, title="t", columns=4)
    im = decode(out)
    x, y = sheet_cell_centre(out, 1, 4, 1)
    assert near(im.getpixel((x, y + 60)), render._PLACEHOLDER, tol=12)  # below the word
    assert near(im.getpixel(sheet_cell_centre(out, 2, 4, 1)), RED)


def test_sheet_columns_override(tmp_path):
    a = solid(tmp_path / "a.png", RED, size=(256, 256))
    items = [SheetItem(a, i + 1, "c", "pending") for i in range(12)]
    six = decode(render_contact_sheet(items, title="t", columns=6))
    two = decode(render_contact_sheet(items, title="t", columns=2))
    assert six.width <= 1280
    assert six.height < six.width  # 2 rows
    assert two.height > 2 * two.width  # 6 rows


def test_sheet_empty_is_small_png(tmp_path):
    out = render_contact_sheet([], title="Nothing yet")
    decode(out)
    assert out.format == "PNG"  # flat art: lossless and tiny
    assert out.filename == "sheet.png"


def test_every_badge_has_a_style():
    assert set(render._BADGE_STYLE) == set(get_args(Badge))


def test_sheet_rejects_bad_arguments(tmp_path):
    a = solid(tmp_path / "a.png", RED, size=(64, 64))
    with pytest.raises(ValueError, match="badge"):
        render_contact_sheet([SheetItem(a, 1, "c", "winner")], title="t")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="columns"):
        render_contact_sheet([SheetItem(a, 1, "c", "pending")], title="t", columns=0)


# --- byte limits ------------------------------------------------------------------


def test_worst_case_noise_stays_under_default_limits(tmp_path):
    n = noise(tmp_path / "n.png")
    out = pair(n, n)
    assert (out.format, out.filename) == ("JPEG", "pair.jpg")  # photographic content
    assert len(out.data) <= PAIR_MAX_BYTES
    items = [SheetItem(n, i + 1, "Elo 1000 · 0 votes", "pending") for i in range(24)]
    out = render_contact_sheet(items, title="noise")
    assert (out.format, out.filename) == ("JPEG", "sheet.jpg")
    assert len(out.data) <= SHEET_MAX_BYTES


def test_quality_drops_before_size(tmp_path):
    n = noise(tmp_path / "n.png")
    items = [SheetItem(n, i + 1, "c", "pending") for i in range(24)]
    full = render_contact_sheet(items, title="noise")
    limit = int(len(full.data) * 0.7)
    out = render_contact_sheet(items, title="noise", max_bytes=limit)
    decode(out)
    assert len(out.data) <= limit
    assert (out.width, out.height) == (full.width, full.height)


def test_shrinks_when_quality_is_not_enough(tmp_path):
    n = noise(tmp_path / "n.png")
    full = pair(n, n)
    out = pair(n, n, max_bytes=100_000)
    decode(out)
    assert len(out.data) <= 100_000
    assert out.width < full.width
    assert out.width / out.height == pytest.approx(full.width / full.height, rel=0.02)


def test_impossible_limit_raises_clear_error(tmp_path):
    n = noise(tmp_path / "n.png")
    with pytest.raises(RenderTooLargeError, match="under 1000 bytes"):
        pair(n, n, max_bytes=1000)
    assert issubclass(RenderTooLargeError, ValueError)


def test_encode_and_to_rgb_are_public_for_other_senders():
    """The gallery's full-size re-encode uses the same two helpers as the sheets."""
    assert {"encode", "to_rgb"} <= set(render.__all__)
    flat = encode(Image.new("RGB", (400, 300), RED), "flat", 1_000_000)
    assert (flat.format, flat.filename, flat.width, flat.height) == ("PNG", "flat.png", 400, 300)
    rng = np.random.default_rng(1)
    photo = Image.fromarray(rng.integers(0, 256, (400, 400, 3), dtype=np.uint8))
    small = encode(photo, "photo", 60_000)
    assert small.filename == "photo.jpg" and len(small.data) <= 60_000
    decode(small)
    clear = to_rgb(Image.new("RGBA", (8, 8), (*RED, 0)))
    assert clear.mode == "RGB" and not near(clear.getpixel((4, 4)), RED)  # on the panel
    grey = to_rgb(Image.fromarray(np.full((8, 8), 128 * 256, dtype=np.uint16)))
    assert grey.mode == "RGB" and near(grey.getpixel((4, 4)), (128, 128, 128), tol=2)


# --- text and threading -------------------------------------------------------------


def test_every_declared_glyph_exists_in_the_font():
    # Guards the hard-coded glyph list against a Pillow upgrade changing the font.
    font = ImageFont.load_default(size=20)
    notdef = bytes(font.getmask("\uffff"))
    missing = [ch for ch in render._GLYPHS if ch != " " and bytes(font.getmask(ch)) == notdef]
    assert missing == []


def test_printable_folds_unsupported_characters():
    assert render._printable("café — naïve\t🌲 漢") == "cafe - naive ?"
    assert render._printable("Round 12 🌲👍🏽 go") == "Round 12 go"
    assert render._printable("#87 · Elo 1032 · “ok” …") == "#87 · Elo 1032 · “ok” …"


def test_fit_text_shrinks_then_ellipsizes():
    font, text = render._fit_text("Elo 1032 · 4 votes", 10_000, 40, 20)
    assert (font.size, text) == (40, "Elo 1032 · 4 votes")
    font, text = render._fit_text("Elo 1032 · 4 votes", 250, 40, 20)
    assert 20 <= font.size < 40 and text == "Elo 1032 · 4 votes"
    assert font.getlength(text) <= 250
    font, text = render._fit_text("word " * 100, 300, 40, 20)
    assert font.size == 20 and text.endswith("…") and font.getlength(text) <= 300


async def test_concurrent_renders_from_threads_are_identical(tmp_path):
    a, b = solid(tmp_path / "a.png", RED), noise(tmp_path / "b.png")
    outs = await asyncio.gather(*(asyncio.to_thread(pair, a, b) for _ in range(6)))
    assert len({o.data for o in outs}) == 1
    decode(outs[0])


# --- thumbnails ------------------------------------------------------------------------------


def tile_centre(sheet: Rendered) -> tuple[int, int, int]:
    """The middle of the only tile of a one-item sheet (tiles sit under a 64 px title)."""
    with Image.open(io.BytesIO(sheet.data)) as im:
        rgb = im.convert("RGB")
        return rgb.getpixel((rgb.width // 2, 64 + THUMB_SIDE // 2))


def test_a_sheet_uses_a_current_thumbnail_and_remakes_a_stale_one(tmp_path):
    source = solid(tmp_path / "a.png", RED)
    item = [SheetItem(source, 1, "Elo 1000", "advancing")]
    assert near(tile_centre(render_contact_sheet(item, title="t")), RED)
    thumb = thumbnail_path(source)
    assert thumb.exists()  # the first sheet left it for the next

    solid(thumb, BLUE, size=(400, 400), format="JPEG")  # newer than the source: current
    assert near(tile_centre(render_contact_sheet(item, title="t")), BLUE)

    later = thumb.stat().st_mtime + 10
    os.utime(source, (later, later))  # the image changed after its thumbnail was made
    assert near(tile_centre(render_contact_sheet(item, title="t")), RED)
    with Image.open(thumb) as im:
        assert near(im.convert("RGB").getpixel((200, 200)), RED)  # remade


def test_a_folder_that_takes_no_thumbnail_still_gets_its_sheet(tmp_path, caplog):
    source = solid(tmp_path / "a.png", GREEN)
    (tmp_path / ".thumbs").write_text("a file where the folder would go")
    with caplog.at_level(logging.WARNING, logger="scheduler.thumbnails"):
        sheet = render_contact_sheet([SheetItem(source, 1, "x", "pending")], title="t")
    assert near(tile_centre(sheet), GREEN)
    assert "cannot write thumbnail" in caplog.text


def test_a_badge_has_the_same_words_on_a_sheet_and_in_the_legend():
    from bot.render import _BADGE_STYLE
    from cogs.gallery import MARKERS

    assert _BADGE_STYLE["pending"][0] == "not decided yet"
    for badge, (words, _) in _BADGE_STYLE.items():
        assert MARKERS[badge].endswith(f" {words}")  # type: ignore[index]
