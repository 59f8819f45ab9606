"""scheduler.thumbnails with real images written by Pillow."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from scheduler.thumbnails import THUMB_SIDE, make_thumbnail

RED = (220, 30, 30)


def solid(path: Path, colour: tuple[int, int, int], size=(1024, 1024), **save) -> Path:
    Image.new("RGB", size, colour).save(path, **save)
    return path


def test_make_thumbnail_writes_a_small_jpeg_once(tmp_path):
    source = solid(tmp_path / "job-000001-0.png", RED, size=(1024, 768))
    thumb = make_thumbnail(source)
    assert thumb == tmp_path / ".thumbs" / "job-000001-0.png.jpg"
    with Image.open(thumb) as im:
        assert im.format == "JPEG" and im.size == (THUMB_SIDE, 300)
    written = thumb.stat().st_mtime_ns
    assert make_thumbnail(source) == thumb
    assert thumb.stat().st_mtime_ns == written  # a current thumbnail is left alone
    assert [p.name for p in thumb.parent.iterdir()] == [thumb.name]  # no temp file left


def test_make_thumbnail_of_an_unreadable_image(tmp_path, caplog):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert make_thumbnail(broken) is None
    assert not (tmp_path / ".thumbs").exists()

