"""The input/, output/ and temp/ folders, as ComfyUI's folder_paths, /view and /upload/image."""
from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image
from PIL.PngImagePlugin import PngInfo

FOLDER_TYPES = ("input", "output", "temp")
_ANNOTATED = re.compile(r"^(?P<name>.*) \[(?P<type>input|output|temp)\]$")


class Folders:
    """A ComfyUI install's file folders under `root`; saved files can be reported renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rename: Callable[[str], str] | None = None
        self._renamed: dict[tuple[str, str, str], Path] = {}  # reported name -> real file

    def create(self) -> None:
        for folder in FOLDER_TYPES:
            (self.root / folder).mkdir(parents=True, exist_ok=True)

    def input_path(self, name: str) -> Path | None:
        """The file an input name (`name`, or `name [output]` etc.) refers to, if it exists."""
        folder_type = "input"
        annotated = _ANNOTATED.match(name)
        if annotated:
            name, folder_type = annotated.group("name"), annotated.group("type")
        base = (self.root / folder_type).resolve()
        path = (base / name).resolve()
        return path if path.is_relative_to(base) and path.is_file() else None

    def input_files(self) -> list[str]:
        base = self.root / "input"
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())

    def save(
        self, prompt: dict[str, Any], images: list[Image.Image], filename_prefix: str,
        folder_type: str,
    ) -> list[dict[str, str]]:
        """Write PNGs named like ComfyUI (`<prefix>_00001_.png`, counting on from the folder)."""
        base = (self.root / folder_type).resolve()
        normalized = posixpath.normpath(filename_prefix)
        subfolder, prefix = posixpath.split(normalized)
        folder = (base / subfolder).resolve()
        if not folder.is_relative_to(base):
            raise ValueError("**** ERROR: Saving image outside the output folder is not allowed."
                             f"\n full_output_folder: {folder}")
        folder.mkdir(parents=True, exist_ok=True)
        pattern = re.compile(re.escape(prefix) + r"_(\d+)_")
        counters = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))]
        counter = max(counters, default=0) + 1
        info = PngInfo()
        info.add_text("prompt", json.dumps(prompt))
        written = []
        for image in images:
            name = f"{prefix}_{counter:05}_.png"
            image.save(folder / name, pnginfo=info, compress_level=4)
            if self.rename is not None:
                reported = self.rename(name)
                self._renamed[(folder_type, subfolder, reported)] = folder / name
                name = reported
            written.append({"filename": name, "subfolder": subfolder, "type": folder_type})
            counter += 1
        return written

    async def view(self, request: web.Request) -> web.StreamResponse:
        filename = request.query.get("filename")
        if not filename:
            return web.Response(status=404)
        folder_type = request.query.get("type", "output")
        annotated = _ANNOTATED.match(filename)
        if annotated:
            filename, folder_type = annotated.group("name"), annotated.group("type")
        if not filename or filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        if folder_type not in FOLDER_TYPES:
            return web.Response(status=400)
        renamed = self._renamed.get((folder_type, request.query.get("subfolder", ""), filename))
        if renamed is not None:
            return web.FileResponse(renamed)
        base = (self.root / folder_type).resolve()
        folder = (base / request.query.get("subfolder", "")).resolve()
        if not folder.is_relative_to(base):
            return web.Response(status=403)
        path = folder / posixpath.basename(filename)
        if not path.is_file():
            return web.Response(status=404)
        return web.FileResponse(path, headers={"Content-Disposition": f'filename="{path.name}"'})

    async def upload(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        if not isinstance(image, web.FileField) or not image.filename:
            return web.Response(status=400)
        folder_type = str(post.get("type") or "input")
        if folder_type not in FOLDER_TYPES:
            folder_type = "input"
        subfolder = str(post.get("subfolder") or "")
        overwrite = str(post.get("overwrite") or "") in ("true", "1")
        base = (self.root / folder_type).resolve()
        folder = (base / posixpath.normpath(subfolder)).resolve() if subfolder else base
        target = (folder / image.filename).resolve()
        if not target.is_relative_to(base) or target.parent != folder:
            return web.Response(status=400)
        data = image.file.read()
        name = image.filename
        if not overwrite:
            stem, dot, ext = name.rpartition(".")
            stem, ext = (stem, dot + ext) if dot else (name, "")
            counter = 1
            while target.exists() and target.read_bytes() != data:
                name = f"{stem} ({counter}){ext}"
                target = folder / name
                counter += 1
        folder.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return web.json_response({"name": name, "subfolder": subfolder, "type": folder_type})
