"""Reading a parent's image before it is sent to ComfyUI: a file that is gone or broken makes
the candidate unfit to be a parent, not the job's error."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image


class ParentUnreadable(Exception):
    """The parent's file is gone or is not an image: the candidate cannot be a parent."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def read_parent(path: Path) -> bytes:
    """The bytes of a parent's file, once Pillow has checked they are an image."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError) as err:
        raise ParentUnreadable("missing") from err
    except IsADirectoryError as err:
        raise ParentUnreadable("not a readable image") from err
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception as err:  # Pillow raises many kinds for a broken file
        raise ParentUnreadable("not a readable image") from err
    return data

