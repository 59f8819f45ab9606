"""Sheet thumbnails: a small JPEG beside each candidate's image, made when the candidate
arrives, so that a contact sheet decodes small JPEGs instead of full-size PNGs.

Everything here is synchronous and CPU-bound: call it via ``asyncio.to_thread``.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Final

from PIL import Image

from scheduler.storage import write_atomically

__all__ = [
    "PANEL",
    "THUMB_SIDE",
    "is_current",
    "load_fitted",
    "make_thumbnail",
    "remake_thumbnail",
    "save_thumbnail",
    "scale_to_fit",
    "thumbnail_path",
    "to_rgb",
]

logger = logging.getLogger(__name__)

# A contact sheet tile is never bigger than this, so a thumbnail this size serves every sheet.
THUMB_SIDE: Final = 400
_THUMB_QUALITY: Final = 90
# What transparency is flattened onto: the panel colour of the bot's pictures, so a
# transparent image looks the same in a thumbnail as around it.
PANEL: Final = (43, 45, 49)


def thumbnail_path(path: Path) -> Path:
    """`<folder>/.thumbs/<name>.jpg`: beside the image, so it moves and goes with it."""
    return path.parent / ".thumbs" / f"{path.name}.jpg"


def make_thumbnail(path: Path) -> Path | None:
    """Write the sheet thumbnail of an image unless a current one exists; None if the image
    cannot be read or the thumbnail not written."""
    thumb = thumbnail_path(path)
    if not is_current(thumb, path):
        remake_thumbnail(path, thumb)
    return thumb if is_current(thumb, path) else None


def remake_thumbnail(path: Path, thumb: Path) -> Image.Image | None:
    """The image scaled to fit a thumbnail, written to `thumb` on the way."""
    im = load_fitted(path, (THUMB_SIDE, THUMB_SIDE))
    if im is not None:
        save_thumbnail(im, thumb)
    return im


def is_current(thumb: Path, source: Path) -> bool:
    """A thumbnail is current when it is not older than its image."""
    try:
        return thumb.stat().st_mtime_ns >= source.stat().st_mtime_ns
    except OSError:
        return False


def save_thumbnail(im: Image.Image, thumb: Path) -> None:
    """Whole or absent; not synced, since a lost one is only made again. A data folder we
    cannot write to only costs speed."""
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=_THUMB_QUALITY)
    try:
        write_atomically(thumb.parent, thumb.name, buf.getvalue(), durable=False)
    except OSError as exc:
        logger.warning("cannot write thumbnail %s: %s", thumb, exc)


def load_fitted(path: Path, box: tuple[int, int]) -> Image.Image | None:
    """Decode path scaled to fit box (aspect kept); None means "draw a placeholder"."""
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                # DCT scaling decodes at 1/2..1/8 size directly: several times faster.
                im.draft("RGB", box)
            im.load()
            rgb = to_rgb(im)
    except Exception as exc:  # any decoder failure just means "unreadable"
        logger.warning("cannot read image %s: %s", path, exc)
        return None
    return scale_to_fit(rgb, box)


def to_rgb(im: Image.Image) -> Image.Image:
    """The image as plain RGB: transparency flattened onto the panel colour, 16-bit grey
    scaled rather than clipped."""
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, PANEL)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if im.mode == "I" or im.mode.startswith("I;16"):
        # 16-bit greyscale: a plain convert would clip everything above 255 to white.
        return im.convert("I").point(lambda v: v / 256).convert("RGB")
    return im.convert("RGB")


def scale_to_fit(im: Image.Image, box: tuple[int, int]) -> Image.Image:
    """The image scaled, up or down, to the largest size inside box with its aspect kept."""
    scale = min(box[0] / im.width, box[1] / im.height)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    if size == im.size:
        return im
    if scale > 1:
        return im.resize(size, Image.Resampling.BICUBIC)
    # HAMMING: as cheap as BILINEAR but sharper. reducing_gap lets big downscales
    # start with a fast integer box reduction (e.g. 1024 -> 341 -> 305).
    return im.resize(size, Image.Resampling.HAMMING, reducing_gap=1.0)
