"""Where a run's images live under DATA_DIR, writing files so a crash leaves no half file, and
what a run's folder holds and its removal."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_SAFE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")


def image_suffix(filename: str) -> str:
    """The suffix of a file ComfyUI named, if it is a plain one (`.png`, `.webp`); else
    `.png`. The name comes from the server, so it may hold anything (a NUL, 300 letters)."""
    suffix = PurePosixPath(filename.replace("\0", "")).suffix
    return suffix.lower() if _SAFE_SUFFIX.fullmatch(suffix) else ".png"


def image_relpath(run_folder: str, step_slug: str, job_id: int, index: int, suffix: str) -> str:
    """`<run folder>/<step slug>/job-000123-0.png`, relative to DATA_DIR."""
    return f"{run_folder}/{step_slug}/job-{job_id:06d}-{index}{suffix}"


PART_PREFIX = ".part-"


def remove_partial_files(data_dir: Path) -> int:
    """Delete the temp files of writes a killed process never finished; returns how many."""
    removed = 0
    for path in data_dir.rglob(f"{PART_PREFIX}*") if data_dir.is_dir() else ():
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def write_atomically(data_dir: Path, relpath: str, data: bytes, *, durable: bool = True) -> Path:
    """Write to a temp file in the same folder, then rename: the file is whole or absent.

    When `durable`, the bytes are synced before the rename and the folder after it (and the
    parent of each folder this write made), so once this returns the file survives a power cut
    too; a file that can be made again (a thumbnail) skips the syncs."""
    target = data_dir / relpath
    made = [folder for folder in (target.parent, *target.parent.parents) if not folder.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=PART_PREFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        for folder in (target.parent, *(made_one.parent for made_one in made)):
            sync_folder(folder)
    return target


def sync_folder(folder: Path) -> None:
    """Put a folder's entries (a rename, a new file or folder) on disk. Skipped where a folder
    cannot be opened or synced (Windows, some network file systems): there is nothing more to
    ask of them."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


@dataclass(frozen=True)
class FolderUse:
    """A folder under DATA_DIR (its name there) and the files and bytes it holds."""

    name: str
    files: int
    bytes: int


def folder_use(data_dir: Path, name: str) -> FolderUse:
    """Every file under the folder, thumbnails included, counted by its size on disk; an
    absent folder holds nothing. Links are counted, never followed."""
    files = size = 0
    for root, _dirs, names in os.walk(data_dir / name):
        for file in names:
            with contextlib.suppress(FileNotFoundError):  # removed while counting
                size += os.lstat(os.path.join(root, file)).st_size
                files += 1
    return FolderUse(name, files, size)


def is_plain_folder_name(name: str) -> bool:
    """A name that is one folder right under DATA_DIR: never DATA_DIR itself or outside it."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def folders_starting(data_dir: Path, prefix: str) -> list[str]:
    """The folders right under DATA_DIR whose names start with `prefix`, sorted."""
    if not data_dir.is_dir():
        return []
    return sorted(p.name for p in data_dir.iterdir()
                  if p.name.startswith(prefix) and p.is_dir() and not p.is_symlink())


def remove_folder(data_dir: Path, name: str) -> list[str]:
    """Delete the folder and everything in it; what could not be removed, one line each."""
    if not is_plain_folder_name(name):
        raise ValueError(f"not a folder right under DATA_DIR: {name!r}")
    problems: list[str] = []
    target = data_dir / name
    if target.is_symlink() or target.is_file():
        target.unlink()
        return problems
    if not target.exists():
        return problems

    def unremovable(_how: object, path: str, caught: tuple[type, BaseException, object]) -> None:
        err = caught[1]
        if not isinstance(err, FileNotFoundError):  # gone meanwhile is as good as removed
            problems.append(f"{path}: {getattr(err, 'strerror', None) or err}")

    shutil.rmtree(target, onerror=unremovable)  # links inside are removed, never followed
    sync_folder(data_dir)
    return problems
