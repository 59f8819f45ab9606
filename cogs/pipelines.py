"""/pipeline import and /pipeline list, and /status of the GPU box."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from app.overview import runs_with_work
from app.pipelines import import_pipeline, list_pipelines
from bot.app import MESSAGE_MAX, CuratorBot, changed
from bot.permissions import curator_only
from orchestration.errors import InvalidInput
from orchestration.text import clip, quoted

MAX_UPLOAD = 20 * 2**20
# A pipeline is a few workflows of at most 5 MB each: room for ten, and more files than any
# pipeline has, so a small zip cannot fill the disk.
MAX_UNPACKED = 50 * 2**20
MAX_ZIP_MEMBERS = 100


def unpack(data: bytes, filename: str, folder: Path) -> Path:
    """Write an uploaded pipeline where `import_pipeline` can read it; zips are checked for
    paths that would escape the folder."""
    name = Path(filename).name
    if name.lower().endswith(".zip"):
        target = folder / "pipeline"
        zip_path = folder / name
        zip_path.write_bytes(data)
        try:
            with zipfile.ZipFile(zip_path) as archive:
                members = archive.infolist()
                for member in members:
                    if not (target / member.filename).resolve().is_relative_to(target.resolve()):
                        raise InvalidInput(
                            f"{name}: the zip holds a path outside itself ({member.filename})."
                        )
                _check_size(name, members)
                for member in members:
                    _extract(archive, member, target)
        except zipfile.BadZipFile as err:
            raise InvalidInput(f"{name} is not a valid zip file.") from err
        entries = [p for p in target.iterdir() if not p.name.startswith(("__MACOSX", "."))]
        # A zip of a folder holds that folder: import what is inside it.
        return entries[0] if len(entries) == 1 and entries[0].is_dir() else target
    if name.lower().endswith((".yaml", ".yml", ".json")):
        path = folder / name
        path.write_bytes(data)
        return path
    raise InvalidInput(
        f"{name}: send a .zip of the pipeline folder, a pipeline .yaml whose workflows are "
        "inside it, or one workflow .json."
    )


def _check_size(name: str, members: list[zipfile.ZipInfo]) -> None:
    """Refuse, before anything is written, a zip that would unpack to too much."""
    if len(members) > MAX_ZIP_MEMBERS:
        raise InvalidInput(f"{name} holds {len(members)} files; a pipeline zip may hold at most "
                           f"{MAX_ZIP_MEMBERS}.")
    unpacked = sum(member.file_size for member in members)
    if unpacked > MAX_UNPACKED:
        raise InvalidInput(f"{name} unpacks to {unpacked / 2**20:.1f} MB; a pipeline zip may "
                           f"unpack to at most {MAX_UNPACKED // 2**20} MB.")


def _extract(archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path) -> None:
    """Copy one member in chunks, never more than it declared (zipfile stops reading there)."""
    path = target / member.filename
    if member.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(member) as source, path.open("wb") as sink:
        shutil.copyfileobj(source, sink, 2**16)


class Pipelines(commands.Cog):
    def __init__(self, bot: CuratorBot) -> None:
        self.bot = bot

    pipeline = app_commands.Group(name="pipeline", description="Pipelines")

    @pipeline.command(name="list", description="The pipelines runs can use")
    async def list_(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        pipelines = await list_pipelines(self.bot.app)
        lines = [
            f"**{p.name}**: {' → '.join(p.steps)} (variables: {p.variables_text})"
            for p in pipelines
        ]
        await interaction.followup.send(
            clip("\n".join(lines), MESSAGE_MAX) or "No pipelines yet: `/pipeline import` one.",
            ephemeral=True,
        )

    @pipeline.command(
        name="import", description="Import a pipeline: a zip of its folder, or a workflow JSON"
    )
    @app_commands.describe(file="A .zip of the pipeline folder, or one API-format workflow .json")
    @curator_only()
    async def import_(
        self, interaction: discord.Interaction[Any], file: discord.Attachment
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        if file.size > MAX_UPLOAD:
            raise InvalidInput(f"{file.filename} is larger than {MAX_UPLOAD // 2**20} MB.")
        data = await file.read()
        with tempfile.TemporaryDirectory(prefix="pipeline-") as tmp:
            path = await asyncio.to_thread(unpack, data, file.filename, Path(tmp))
            result = await import_pipeline(self.bot.app, path)
        if result.created:
            changed(interaction, f"pipeline {quoted(result.name)} was imported")
        verb = "Imported" if result.created else "Already imported, unchanged:"
        warnings = "".join(f"\n⚠️ {w}" for w in result.warnings)
        text = (
            f"{verb} **{result.name}**: {' → '.join(result.steps)}; run variables: "
            f"{result.variables_text}.{warnings}"
        )
        await interaction.followup.send(clip(text, MESSAGE_MAX), ephemeral=True)

    @app_commands.command(name="status", description="Workers, the job in flight, runs with work")
    async def status(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True)
        scheduler = self.bot.scheduler
        lines = []
        for url in scheduler.workers:
            state = {True: "up", False: "DOWN", None: "not checked yet"}[scheduler.up.get(url)]
            if scheduler.up.get(url) and scheduler.unhealthy.get(url):
                state = f"UNHEALTHY ({scheduler.unhealthy[url]})"
            job = scheduler.progress.get(url)
            if job is None:
                lines.append(f"**{url}**: {state}, idle")
            else:
                lines.append(
                    f"**{url}**: {state}, run #{job.run_id} job {job.job_id} at step "
                    f"{job.step}: {job.fraction:.0%} "
                    f"({time.monotonic() - job.started:.0f} s)"
                )
        runs = await runs_with_work(self.bot.app)
        queue = ", ".join(f"#{r.id} {r.name}" for r in runs) or "none"
        lines.append(f"Runs with work: {queue}")
        lines.append(f"Jobs done since start: {scheduler.jobs_done}")
        await interaction.followup.send(clip("\n".join(lines), MESSAGE_MAX), ephemeral=True)


async def setup(bot: CuratorBot) -> None:
    await bot.add_cog(Pipelines(bot))
