"""What a person reads before and after deleting a run, the same in Discord and on the
command line: what goes from the database, from DATA_DIR and from ComfyUI, and what stays."""

from __future__ import annotations

import shlex
from pathlib import Path

from app.deletion import RunDeleted, RunDeletion
from orchestration.deletion import RunContents, WorkerFiles
from orchestration.states import RunStatus
from orchestration.text import byte_size, plural, quoted


def _on_disk(data_dir: Path, deletion: RunDeletion) -> str:
    if not deletion.folders:
        return f"no files under {data_dir}"
    where = ", ".join(str(data_dir / f.name) for f in deletion.folders)
    return (f"{plural(deletion.files, 'file')} ({byte_size(deletion.bytes)}) in {where}: "
            "its images and thumbnails")


def comfy_files(contents: RunContents, worker: WorkerFiles) -> str:
    """What stays on a ComfyUI, which its API cannot delete, and the command that removes it
    on that machine."""
    files = [f"output/{contents.folder}"] + [f"input/{name}" for name in worker.uploads]
    parents = (f" and {plural(len(worker.uploads), 'uploaded parent image')} in "
               "input/comfy-curator/" if worker.uploads else "")
    return (f"ComfyUI at {worker.url} keeps its own copies of the images in "
            f"output/{contents.folder}/{parents}: its API cannot delete files. On that machine, "
            f"in ComfyUI's folder: rm -r {' '.join(shlex.quote(f) for f in files)}")


def deletion_text(data_dir: Path, deletion: RunDeletion) -> str:
    """The question before a deletion."""
    contents = deletion.contents
    if contents is None:
        return (f"There is no run #{deletion.run_id} in the database, but files of it are left "
                f"from an earlier deletion. Delete {_on_disk(data_dir, deletion)}?")
    state = ("on hold" if contents.held and contents.status is RunStatus.running
             else contents.status.value)
    lines = [
        f"Delete run #{contents.run_id} {quoted(contents.name)} ({contents.pipeline}, {state}) "
        "for good? This cannot be undone.",
        f"• from the database: {contents.rows}",
        f"• from disk: {_on_disk(data_dir, deletion)}",
    ]
    for worker in contents.workers:
        lines.append(f"• from ComfyUI at {worker.url}: the history of "
                     f"{plural(len(worker.prompt_ids), 'prompt')}")
    lines += [f"• stays: {comfy_files(contents, worker)}" for worker in contents.workers]
    if contents.channel_id is not None:
        lines.append("• stays: its Discord channel (delete it in Discord if you no longer "
                     "want it)")
    return "\n".join(lines)


def deleted_text(data_dir: Path, done: RunDeleted) -> str:
    """What was deleted, and what could not be."""
    deletion, contents = done.deletion, done.deletion.contents
    if contents is None:
        lines = [f"Deleted what was left of run #{deletion.run_id}: "
                 f"{_on_disk(data_dir, deletion)}."]
    else:
        lines = [f"Deleted run #{contents.run_id} {quoted(contents.name)}: {contents.rows}; "
                 f"{_on_disk(data_dir, deletion)}."]
    if done.problems:
        lines.append(f"Could not remove {plural(len(done.problems), 'file or folder')} (delete "
                     f"the run again, or by hand): {done.problems[0]}")
    for forgot in done.workers:
        if forgot.error is None:
            lines.append(f"ComfyUI at {forgot.url} forgot {plural(forgot.prompts, 'prompt')}.")
        else:
            lines.append(f"ComfyUI at {forgot.url} kept the history of "
                         f"{plural(forgot.prompts, 'prompt')} ({forgot.error}); nothing of "
                         "ours needs it.")
    if contents is not None:
        lines += [comfy_files(contents, worker) for worker in contents.workers]
    return "\n".join(lines)
