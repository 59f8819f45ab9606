"""/gallery: a contact sheet of one step, best first, with badges."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import CuratorBot
from bot.render import Badge, SheetItem, render_contact_sheet
from cogs.common import resolve_run, running_run_choices
from db.models import CandidateStatus
from orchestration.overview import GalleryItem, GalleryPage, gallery_page


def badge(item: GalleryItem) -> Badge:
    if item.status is CandidateStatus.rejected:
        return "rejected"
    if item.advancing is None:
        return "pending"
    return "advancing" if item.advancing else "not_advancing"


def sheet_items(bot: CuratorBot, page: GalleryPage) -> list[SheetItem]:
    return [
        SheetItem(
            bot.settings.data_dir / item.image_path,
            item.rank,
            f"#{item.id} · Elo {item.elo:.0f} · {item.votes} votes",
            badge(item),
        )
        for item in page.items
    ]


class Gallery(commands.Cog):
    def __init__(self, bot: CuratorBot) -> None:
        self.bot = bot

    @app_commands.command(name="gallery", description="A step's candidates, best first")
    @app_commands.describe(
        step="The step (default: the latest with candidates)",
        page="Page (24 a page)",
        run="The run (default: this channel's run)",
    )
    async def gallery(
        self,
        interaction: discord.Interaction[Any],
        step: int | None = None,
        page: int = 1,
        run: int | None = None,
    ) -> None:
        await interaction.response.defer(thinking=True)
        run_id = await resolve_run(self.bot, interaction, run)
        async with self.bot.sessions() as session:
            found = await gallery_page(session, run_id, step, page)
        title = (
            f"{found.run_name}: step {found.step} ({found.step_name}), "
            f"page {found.page} of {found.pages}"
        )
        if not found.items:
            await interaction.followup.send(f"{title}: no candidates yet.")
            return
        sheet = await asyncio.to_thread(
            render_contact_sheet, sheet_items(self.bot, found), title=title
        )
        await interaction.followup.send(
            f"{title} · ▲ advancing · ● not advancing · ✕ rejected · ○ not decided yet",
            file=discord.File(io.BytesIO(sheet.data), filename=sheet.filename),
        )

    @gallery.autocomplete("run")
    async def _runs(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[int]]:
        return await running_run_choices(self.bot, current)


async def setup(bot: CuratorBot) -> None:
    await bot.add_cog(Gallery(bot))
