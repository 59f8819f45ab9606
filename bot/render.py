"""Pillow rendering of vote pairs and contact sheets for Discord, sized for a phone.

Everything here is synchronous and CPU-bound: call it via ``asyncio.to_thread``.
Image decoding fans out over a small private thread pool (Pillow releases the GIL
while decoding and resampling), so a render uses every core without the caller
having to care.

Text uses Pillow's embedded Aileron font (``ImageFont.load_default(size=...)``),
so output is pixel-identical on any machine and needs no system fonts. That font
covers ASCII plus a few typographic marks only; other characters are folded to
ASCII or replaced with "?" rather than drawn as empty boxes.
"""

from __future__ import annotations

import io
import logging
import math
import os
import threading
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from PIL import Image, ImageDraw, ImageFont

from scheduler.thumbnails import (
    PANEL,
    THUMB_SIDE,
    is_current,
    load_fitted,
    remake_thumbnail,
    scale_to_fit,
    thumbnail_path,
    to_rgb,
)

__all__ = [
    "PAIR_MAX_BYTES",
    "SHEET_MAX_BYTES",
    "Badge",
    "RenderTooLargeError",
    "Rendered",
    "SheetItem",
    "encode",
    "render_contact_sheet",
    "render_pair",
    "to_rgb",
]

logger = logging.getLogger(__name__)

Badge = Literal["advancing", "not_advancing", "rejected", "pending"]

PAIR_MAX_BYTES: Final = 1_000_000
SHEET_MAX_BYTES: Final = 2_000_000

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Rendered:
    """An encoded picture ready to upload as a Discord attachment."""

    data: bytes
    filename: str
    width: int
    height: int
    format: str  # "JPEG" or "PNG"; matches the filename's extension


@dataclass(frozen=True, slots=True)
class SheetItem:
    """One candidate on a contact sheet."""

    path: Path
    rank: int
    caption: str
    badge: Badge


class RenderTooLargeError(ValueError):
    """Even the smallest, lowest-quality encoding is over the byte limit."""


# --- look -------------------------------------------------------------------------

_BG: Final[RGB] = (30, 31, 34)  # close to Discord's dark theme, so the picture blends in
_PANEL: Final[RGB] = PANEL  # letterbox around images that don't fill their box
_PLACEHOLDER: Final[RGB] = (92, 94, 100)
_TEXT: Final[RGB] = (242, 243, 245)
_MUTED: Final[RGB] = (181, 186, 193)
_WHITE: Final[RGB] = (255, 255, 255)
# Blue vs orange stays distinguishable for the common colour-vision deficiencies.
_A_COLOUR: Final[RGB] = (37, 99, 235)
_B_COLOUR: Final[RGB] = (234, 88, 12)

# The words for each badge, on a sheet and in the gallery's legend alike.
BADGE_WORDS: Final[dict[Badge, str]] = {
    "advancing": "advancing",
    "not_advancing": "not advancing",
    "rejected": "rejected",
    "pending": "not decided yet",
}
_BADGE_COLOURS: Final[dict[Badge, RGB]] = {
    "advancing": (34, 197, 94),
    "not_advancing": (156, 163, 175),
    "rejected": (239, 68, 68),
    "pending": (96, 165, 250),
}
_BADGE_STYLE: Final[dict[str, tuple[str, RGB]]] = {
    badge: (BADGE_WORDS[badge], colour) for badge, colour in _BADGE_COLOURS.items()
}

_MAX_WIDTH: Final = 1280  # Discord shows wider images scaled down anyway
_PAD: Final = 16
_SHEET_MIN_WIDTH: Final = 640  # keeps the title legible for 1-2 item sheets
_SHEET_MAX_TILE: Final = THUMB_SIDE  # bigger tiles only make the sheet taller
_ASPECT_RANGE: Final = (0.5, 1.5)  # pair image box height / width

# --- encoding ---------------------------------------------------------------------

_JPEG_QUALITIES: Final = (85, 75, 65, 55, 45)
_SHRINK: Final = 0.75
_MIN_ENCODE_WIDTH: Final = 320  # below this a phone can't read the labels anymore
# Flat art (placeholders, text, flat-colour inputs) has few colours even with
# anti-aliased text; PNG keeps it crisp and small. Photos blow past this at once.
_PNG_MAX_COLOURS: Final = 4096


def encode(img: Image.Image, stem: str, max_bytes: int) -> Rendered:
    """Encode under max_bytes, giving up quality before size (size costs legibility)."""
    # getcolors gives up as soon as it sees too many colours: ~0.5 ms for photos.
    if img.getcolors(_PNG_MAX_COLOURS) is not None:
        data = _save(img, "PNG")
        if len(data) <= max_bytes:
            return Rendered(data, f"{stem}.png", img.width, img.height, "PNG")
    current = img
    while True:
        for quality in _JPEG_QUALITIES:
            data = _save(current, "JPEG", quality=quality)
            if len(data) <= max_bytes:
                return Rendered(data, f"{stem}.jpg", current.width, current.height, "JPEG")
        if current.width <= _MIN_ENCODE_WIDTH:
            raise RenderTooLargeError(
                f"{stem}: cannot encode under {max_bytes} bytes (smallest attempt "
                f"{current.width}x{current.height} JPEG q{_JPEG_QUALITIES[-1]} "
                f"was {len(data)} bytes)"
            )
        width = max(_MIN_ENCODE_WIDTH, round(current.width * _SHRINK))
        height = max(1, round(img.height * width / img.width))
        logger.debug(
            "%s over %d bytes at q%d; shrinking to %d px",
            stem,
            max_bytes,
            _JPEG_QUALITIES[-1],
            width,
        )
        current = img.resize((width, height), Image.Resampling.HAMMING)


def _save(img: Image.Image, fmt: str, **params: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


# --- text -------------------------------------------------------------------------

# Every character the embedded Aileron subset has a glyph for (checked by a test).
_GLYPHS: Final = frozenset(
    " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`"
    "abcdefghijklmnopqrstuvwxyz{|}~©«°±´·»‘’“”…‹›⁄™"
)
_FALLBACKS: Final = {"–": "-", "—": "-", "−": "-", "×": "x", "•": "·", "→": "->", "←": "<-"}

# Symbols (emoji), modifiers, marks, format characters (ZWJ, variation selectors).
_DROPPED_CATEGORIES: Final = frozenset({"So", "Sk", "Mn", "Me", "Cf", "Co", "Cs"})

_local = threading.local()


def _font(size: int) -> ImageFont.FreeTypeFont:
    """Per-thread font cache: FreeType faces must not be shared between threads."""
    cache: dict[int, ImageFont.FreeTypeFont] | None = getattr(_local, "fonts", None)
    if cache is None:
        cache = _local.fonts = {}
    font = cache.get(size)
    if font is None:
        loaded = ImageFont.load_default(size=size)
        if not isinstance(loaded, ImageFont.FreeTypeFont):
            raise RuntimeError("Pillow was built without FreeType; cannot render text")
        font = cache[size] = loaded
    return font


def _printable(text: str) -> str:
    """Map text onto the font's glyphs so nothing renders as a missing-glyph box."""
    out: list[str] = []
    for ch in text:
        if ch in _GLYPHS:
            out.append(ch)
        elif ch.isspace():
            out.append(" ")
        elif ch in _FALLBACKS:
            out.append(_FALLBACKS[ch])
        elif unicodedata.category(ch) in _DROPPED_CATEGORIES:
            continue  # emoji and friends: decoration, "?" would only add noise
        else:
            folded = "".join(c for c in unicodedata.normalize("NFKD", ch) if c in _GLYPHS)
            out.append(folded or "?")
    return " ".join("".join(out).split())


def _fit_text(
    text: str, max_width: int, size: int, min_size: int
) -> tuple[ImageFont.FreeTypeFont, str]:
    """Shrink the font to fit max_width, then ellipsize; a label must never overflow."""
    text = _printable(text)
    while True:
        font = _font(size)
        length = font.getlength(text)
        if length <= max_width:
            return font, text
        if size <= min_size:
            break
        size = max(min_size, min(size - 1, int(size * max_width / length)))
    lo, hi = 0, len(text)  # longest prefix that fits with an ellipsis
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if font.getlength(text[:mid].rstrip() + "…") <= max_width:
            lo = mid
        else:
            hi = mid - 1
    return font, text[:lo].rstrip() + "…"


def _draw_text(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    *,
    max_width: int,
    size: int,
    min_size: int,
    fill: RGB,
    anchor: str,
    bold: bool = False,
) -> None:
    """Draw text shrunk (then ellipsized) to fit max_width."""
    font, fitted = _fit_text(text, max_width, size, min_size)
    # The embedded font has no bold face; a same-colour stroke is a good stand-in.
    stroke = max(1, font.size // 28) if bold else 0
    draw.text(
        xy, fitted, font=font, fill=fill, anchor=anchor, stroke_width=stroke, stroke_fill=fill
    )


# --- images -----------------------------------------------------------------------

_POOL: Final = ThreadPoolExecutor(
    max_workers=max(2, min(4, os.cpu_count() or 2)), thread_name_prefix="render"
)


def _probe_aspect(path: Path) -> float | None:
    """Height/width from the header only (no pixel decode)."""
    try:
        with Image.open(path) as im:
            return im.height / im.width
    except Exception:
        return None  # load_fitted logs it


# --- thumbnails --------------------------------------------------------------------


def _load_tile_image(path: Path, box: tuple[int, int]) -> Image.Image | None:
    """A sheet tile's picture (a tile is never bigger than a thumbnail) from its thumbnail;
    the first time, from the image itself, leaving the thumbnail for the next sheet."""
    thumb = thumbnail_path(path)
    if is_current(thumb, path) and (im := load_fitted(thumb, box)) is not None:
        return im
    im = remake_thumbnail(path, thumb)
    return None if im is None else scale_to_fit(im, box)


def _paste_centered(canvas: Image.Image, im: Image.Image, box: Box) -> None:
    x0, y0, x1, y1 = box
    canvas.paste(im, (x0 + (x1 - x0 - im.width) // 2, y0 + (y1 - y0 - im.height) // 2))


def _placeholder(draw: ImageDraw.ImageDraw, box: Box) -> None:
    draw.rectangle(box, fill=_PLACEHOLDER)
    width = box[2] - box[0]
    _draw_text(
        draw,
        ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2),
        "missing",
        max_width=width - 16,
        size=max(14, width // 9),
        min_size=12,
        fill=_TEXT,
        anchor="mm",
        bold=True,
    )


# --- pair -------------------------------------------------------------------------


def render_pair(
    image_a: Path,
    image_b: Path,
    *,
    label_a: str,
    label_b: str,
    header: str,
    max_bytes: int = PAIR_MAX_BYTES,
) -> Rendered:
    """A and B side by side with big letter badges, so a phone voter can't mix them up.

    Inputs may be any size or aspect; each is fitted into its half. Unreadable
    inputs become a grey "missing" panel. Raises RenderTooLargeError only if no
    encoding fits max_bytes.
    """
    width = _MAX_WIDTH
    panel_w = (width - 3 * _PAD) // 2
    aspects = [a for a in (_probe_aspect(image_a), _probe_aspect(image_b)) if a is not None]
    aspect = min(max(max(aspects, default=1.0), _ASPECT_RANGE[0]), _ASPECT_RANGE[1])
    area_h = round(panel_w * aspect)
    jobs = [_POOL.submit(load_fitted, p, (panel_w, area_h)) for p in (image_a, image_b)]

    header_h, label_h = 70, 64
    height = header_h + area_h + label_h + _PAD
    canvas = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(canvas)
    _draw_text(
        draw,
        (width / 2, header_h / 2 + 2),
        header,
        max_width=width - 2 * _PAD,
        size=40,
        min_size=28,
        fill=_TEXT,
        anchor="mm",
        bold=True,
    )

    panels: list[Box] = []
    for i, (label, colour) in enumerate(((label_a, _A_COLOUR), (label_b, _B_COLOUR))):
        x0 = _PAD + i * (panel_w + _PAD)
        area: Box = (x0, header_h, x0 + panel_w, header_h + area_h)
        panels.append(area)
        draw.rectangle(area, fill=_PANEL)
        # Accent bar ties the label to its badge colour.
        draw.rectangle((x0, area[3], x0 + panel_w - 1, area[3] + 5), fill=colour)
        _draw_text(
            draw,
            (x0 + panel_w / 2, area[3] + 6 + (label_h - 6) / 2),
            label,
            max_width=panel_w - 8,
            size=40,
            min_size=28,
            fill=_TEXT,
            anchor="mm",
        )

    for job, area, letter, colour in zip(jobs, panels, "AB", (_A_COLOUR, _B_COLOUR), strict=True):
        im = job.result()
        if im is None:
            _placeholder(draw, area)
        else:
            _paste_centered(canvas, im, area)
        _letter_badge(draw, area, letter, colour)
    return encode(canvas, "pair", max_bytes)


def _letter_badge(draw: ImageDraw.ImageDraw, area: Box, letter: str, colour: RGB) -> None:
    side, inset = 88, 12
    x0, y0 = area[0] + inset, area[1] + inset
    box = (x0, y0, x0 + side, y0 + side)
    # White ring keeps the badge visible on images that share its colour.
    draw.rounded_rectangle(box, radius=18, fill=colour, outline=_WHITE, width=4)
    draw.text(
        (x0 + side / 2, y0 + side / 2 + 1),
        letter,
        font=_font(62),
        fill=_WHITE,
        anchor="mm",
        stroke_width=2,
        stroke_fill=_WHITE,
    )


# --- contact sheet ----------------------------------------------------------------


def _default_columns(count: int) -> int:
    if count <= 1:
        return 1
    if count <= 4:
        return 2
    if count <= 9:
        return 3
    return 4  # 24 items -> 6 rows: tall, but fits a phone held upright


def render_contact_sheet(
    items: Sequence[SheetItem],
    *,
    title: str,
    columns: int | None = None,
    max_bytes: int = SHEET_MAX_BYTES,
) -> Rendered:
    """A ranked thumbnail grid with status markers, readable on a phone.

    Meant for up to ~24 items (more just makes it taller). Missing or unreadable
    files become grey "missing" tiles. Raises ValueError for a bad badge or
    column count, RenderTooLargeError if no encoding fits max_bytes.
    """
    for item in items:
        if item.badge not in _BADGE_STYLE:
            raise ValueError(f"unknown badge {item.badge!r} for rank {item.rank}")
    cols = columns if columns is not None else _default_columns(len(items))
    if cols < 1:
        raise ValueError(f"columns must be >= 1, got {cols}")
    gap = 12
    tile = min(_SHEET_MAX_TILE, (_MAX_WIDTH - (cols + 1) * gap) // cols)
    style = _TileStyle(
        tile=tile,
        text_h=82,  # status line + caption line
        text_size=max(18, min(31, tile // 10)),
        rank_size=max(18, min(32, tile // 9)),
    )
    # Whole tiles (decode, scale, text) are built in the pool: decoding dominates,
    # and doing the rest there too keeps both cores busy to the end.
    jobs = [_POOL.submit(_render_tile, item, style) for item in items]

    grid_w = cols * tile + (cols + 1) * gap
    width = max(_SHEET_MIN_WIDTH, grid_w)
    left = (width - grid_w) // 2 + gap
    title_h = 64
    cell_h = tile + style.text_h
    rows = max(1, math.ceil(len(items) / cols))
    height = title_h + rows * cell_h + (rows - 1) * gap + gap
    canvas = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(canvas)
    _draw_text(
        draw,
        (width / 2, title_h / 2 + 2),
        title,
        max_width=width - 2 * _PAD,
        size=36,
        min_size=26,
        fill=_TEXT,
        anchor="mm",
        bold=True,
    )
    if not items:
        _draw_text(
            draw,
            (width / 2, title_h + cell_h / 2),
            "no candidates",
            max_width=width - 2 * _PAD,
            size=30,
            min_size=20,
            fill=_MUTED,
            anchor="mm",
        )
    for i, job in enumerate(jobs):
        canvas.paste(
            job.result(), (left + (i % cols) * (tile + gap), title_h + (i // cols) * (cell_h + gap))
        )
    return encode(canvas, "sheet", max_bytes)


@dataclass(frozen=True, slots=True)
class _TileStyle:
    tile: int
    text_h: int
    text_size: int
    rank_size: int


def _render_tile(item: SheetItem, style: _TileStyle) -> Image.Image:
    """One grid cell: thumbnail with rank pill, status line, caption."""
    tile = style.tile
    im = _load_tile_image(item.path, (tile, tile))
    cell = Image.new("RGB", (tile, tile + style.text_h), _BG)
    draw = ImageDraw.Draw(cell)
    thumb: Box = (0, 0, tile, tile)
    if im is None:
        _placeholder(draw, thumb)
    else:
        if im.size != (tile, tile):
            draw.rectangle(thumb, fill=_PANEL)
        _paste_centered(cell, im, thumb)
    _rank_pill(ImageDraw.Draw(cell, "RGBA"), thumb, item.rank, style.rank_size)

    label, colour = _BADGE_STYLE[item.badge]
    draw.rectangle((0, tile, tile - 1, tile + 4), fill=colour)
    line1_y = tile + 5 + (style.text_h - 5) * 0.27
    line2_y = tile + 5 + (style.text_h - 5) * 0.74
    marker = style.text_size * 0.7
    # "lm" centres on the font's full height; lowercase sits lower, so nudge the marker.
    marker_y = line1_y + style.text_size * 0.08
    _status_marker(draw, item.badge, (4 + marker / 2, marker_y), marker, colour)
    _draw_text(
        draw,
        (10 + marker, line1_y),
        label,
        max_width=int(tile - 10 - marker),
        size=style.text_size,
        min_size=style.text_size * 3 // 4,
        fill=colour,
        anchor="lm",
        bold=True,
    )
    _draw_text(
        draw,
        (4, line2_y),
        item.caption,
        max_width=tile - 8,
        size=style.text_size,
        min_size=style.text_size * 3 // 4,
        fill=_TEXT,
        anchor="lm",
    )
    return cell


def _status_marker(
    draw: ImageDraw.ImageDraw,
    badge: str,
    centre: tuple[float, float],
    size: float,
    colour: RGB,
) -> None:
    """A distinct shape per status, so colour isn't the only cue."""
    cx, cy = centre
    r = size / 2
    if badge == "advancing":
        draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=colour)
    elif badge == "rejected":
        w = max(2, round(size / 4))
        draw.line([(cx - r, cy - r), (cx + r, cy + r)], fill=colour, width=w)
        draw.line([(cx - r, cy + r), (cx + r, cy - r)], fill=colour, width=w)
    elif badge == "pending":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=max(2, round(r / 2.5)))
    else:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)


def _rank_pill(draw: ImageDraw.ImageDraw, thumb: Box, rank: int, size: int) -> None:
    text = f"#{rank}"
    font = _font(size)
    pad_x, pad_y = size // 3, size // 5
    x0, y0 = thumb[0] + 6, thumb[1] + 6
    w = font.getlength(text) + 2 * pad_x
    h = size + 2 * pad_y
    draw.rounded_rectangle((x0, y0, x0 + w, y0 + h), radius=h // 3, fill=(0, 0, 0, 185))
    draw.text(
        (x0 + w / 2, y0 + h / 2 + 1),
        text,
        font=font,
        fill=_WHITE,
        anchor="mm",
        stroke_width=1,
        stroke_fill=_WHITE,
    )
