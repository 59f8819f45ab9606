"""Deleting a run (its rows, its files, its prompts' history on ComfyUI) or a pipeline, and
what the runs take on disk.

The rows go in one transaction; the run's folder is removed only after it is committed, so a
stop in between leaves files without rows, never a row naming a file that is gone. Such a
leftover folder is listed by `disk_use` and removed by deleting the run again.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.context import App, RunRef
from app.transaction import look, retry_while_busy, transaction
from comfy.client import ComfyClient
from comfy.errors import ComfyError
from orchestration import deletion
from orchestration.deletion import PipelineDeleted, RunContents, WorkerFiles
from orchestration.errors import NotFound
from orchestration.overview import run_in_question
from orchestration.runs import RUN_FOLDERS, run_folder_prefix
from orchestration.states import RunStatus
from scheduler.storage import (
    FolderUse,
    folder_use,
    folders_starting,
    is_plain_folder_name,
    remove_folder,
)

# ComfyUI is asked briefly: a worker that does not answer only keeps its history entries.
_COMFY_OPTIONS: dict[str, Any] = {"retry_attempts": 2, "retry_wait": 0.25, "request_timeout": 10.0,
                  "connect_timeout": 3.0}


@dataclass(frozen=True)
class RunDeletion:
    """What deleting run `run_id` removes: its rows (`contents`; None when the run is gone and
    only folders of it are left) and its folders under DATA_DIR."""

    run_id: int
    contents: RunContents | None
    folders: tuple[FolderUse, ...]

    @property
    def files(self) -> int:
        return sum(f.files for f in self.folders)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.folders)


@dataclass(frozen=True)
class WorkerForgot:
    """A ComfyUI asked to forget the run's prompts: how many, and why it could not."""

    url: str
    prompts: int
    error: str | None = None


@dataclass(frozen=True)
class RunDeleted:
    deletion: RunDeletion
    problems: tuple[str, ...]  # files that could not be removed, one line each
    workers: tuple[WorkerForgot, ...]


def _folders(data_dir: Path, run_id: int, contents: RunContents | None) -> tuple[FolderUse, ...]:
    """The run's own folder, or (for a run that is gone) every folder left with its number."""
    if contents is None:
        names = folders_starting(data_dir, run_folder_prefix(run_id))
    else:
        names = [contents.folder] if is_plain_folder_name(contents.folder) else []
    return tuple(folder_use(data_dir, name) for name in names)


async def _deletion(data_dir: Path, run_id: int, contents: RunContents | None) -> RunDeletion:
    folders = await asyncio.to_thread(_folders, data_dir, run_id, contents)
    if contents is None and not folders:
        raise NotFound(f"There is no run #{run_id}.")
    return RunDeletion(run_id, contents, folders)


async def plan_run_deletion(app: App, ref: RunRef, data_dir: Path) -> RunDeletion:
    """What `delete_run` would remove, for the person to confirm; refused as it would be."""
    async with look(app) as session:
        run_id = await run_in_question(session, ref.run_id, ref.channel_id)
        try:
            await deletion.ensure_deletable(session, run_id)
            contents: RunContents | None = await deletion.run_contents(session, run_id)
        except NotFound:
            contents = None
    return await _deletion(data_dir, run_id, contents)


async def _forget(worker: WorkerFiles) -> WorkerForgot:
    try:
        async with ComfyClient(worker.url, **_COMFY_OPTIONS) as client:
            await client.delete_history(worker.prompt_ids)
    except (ComfyError, ValueError) as err:
        return WorkerForgot(worker.url, len(worker.prompt_ids), str(err))
    return WorkerForgot(worker.url, len(worker.prompt_ids))


async def delete_run(app: App, run_id: int, data_dir: Path) -> RunDeleted:
    """Delete the run's rows in one transaction (tried again while another program holds the
    database); after the commit its folder, then its prompts' history on each ComfyUI that
    ran them. A run already gone has its leftover folders removed."""
    try:
        contents: RunContents | None = await retry_while_busy(
            app, functools.partial(deletion.delete_run, run_id=run_id),
            refusal="the run was not deleted. Try again in a minute",
            what=f"deleting run {run_id}",
        )
    except NotFound:
        contents = None
    done = await _deletion(data_dir, run_id, contents)
    problems: list[str] = []
    for folder in done.folders:
        problems += await asyncio.to_thread(remove_folder, data_dir, folder.name)
    workers = contents.workers if contents is not None else ()
    forgot = await asyncio.gather(*(_forget(w) for w in workers if w.prompt_ids))
    return RunDeleted(done, tuple(problems), tuple(forgot))


async def delete_pipeline(app: App, name_or_id: str | int) -> PipelineDeleted:
    async with transaction(app) as session:
        return await deletion.delete_pipeline(session, name_or_id)


@dataclass(frozen=True)
class RunDisk:
    run_id: int
    name: str
    status: RunStatus
    images: int  # candidates in the database
    folder: FolderUse  # what is on disk: images and thumbnails


@dataclass(frozen=True)
class DiskUse:
    runs: tuple[RunDisk, ...]
    leftovers: tuple[FolderUse, ...]  # run folders with no run in the database

    @property
    def bytes(self) -> int:
        return sum(r.folder.bytes for r in self.runs) + sum(f.bytes for f in self.leftovers)


def _measure(data_dir: Path, runs: list[deletion.StoredRun]) -> DiskUse:
    known = {r.folder for r in runs}
    return DiskUse(
        tuple(RunDisk(r.run_id, r.name, r.status, r.images,
                      folder_use(data_dir, r.folder) if is_plain_folder_name(r.folder)
                      else FolderUse(r.folder, 0, 0))
              for r in runs),
        tuple(folder_use(data_dir, name) for name in folders_starting(data_dir, RUN_FOLDERS)
              if name not in known),
    )


async def disk_use(app: App, data_dir: Path) -> DiskUse:
    """Each run's images and bytes under DATA_DIR, and the run folders no run owns."""
    async with look(app) as session:
        runs = await deletion.stored_runs(session)
    return await asyncio.to_thread(_measure, data_dir, runs)
