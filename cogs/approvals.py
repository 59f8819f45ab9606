"""/approve step k: a preview of the top-k, then a confirm button."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from app.approvals import approve, preview_approval
from bot.app import CuratorBot, changed
from bot.news import show_news
from bot.permissions import curator_only
from bot.questions import Question
from bot.render import SheetItem, render_contact_sheet
from cogs.common import RunOption, run_ref
from orchestration.approvals import ApprovalPreview
from orchestration.text import caption


def preview_text(run_id: int, step: int, preview: ApprovalPreview) -> str:
    top, confidence = preview.top, preview.confidence
    text = (
        f"Approve step {step} of run #{run_id}: these {len(top)} advance, every other "
        f"candidate of the step stops growing. This cannot be undone.\n"
        f"That this is the true top {len(top)}: {confidence.label}."
    )
    if confidence.few_votes_warning:
        text += f"\n⚠️ {confidence.few_votes_warning}"
    return text


class Approvals(commands.Cog):
    def __init__(self, bot: CuratorBot) -> None:
        self.bot = bot

    @app_commands.command(name="approve", description="Let the best k of a step grow further")
    @app_commands.describe(
        step="The step to approve (2 or later, not the last)",
        k="How many advance (default: the run's k)",
        run="The run (default: this channel's run)",
    )
    @curator_only()
    async def approve(
        self,
        interaction: discord.Interaction[Any],
        step: int,
        k: int | None = None,
        run: RunOption | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        shown = await preview_approval(self.bot.app, run_ref(interaction, run), step, k)
        run_id, preview = shown.run_id, shown.preview  # refused before any of this
        k = preview.k
        top = preview.top
        items = [
            SheetItem(
                self.bot.settings.data_dir / c.image_path,
                rank,
                caption(c.id, c.elo, c.votes),
                "advancing",
            )
            for rank, c in enumerate(top, start=1)
        ]
        question = Question("approve", interaction.user.id)
        text = preview_text(run_id, step, preview)
        sheet = await asyncio.to_thread(
            render_contact_sheet, items, title=f"Step {step}: the top {len(top)}"
        )
        await interaction.followup.send(
            text,
            view=question.view(),
            ephemeral=True,
            file=discord.File(io.BytesIO(sheet.data), filename=sheet.filename),
        )
        if not await question.answer():
            await interaction.edit_original_response(
                content="Not approved.", view=None, attachments=[]
            )
            return
        approved = await approve(
            self.bot.app, run_id, step, k, str(interaction.user.id), self.bot.can_post
        )
        result = approved.result
        changed(interaction, f"step {step} of run #{run_id} was approved")
        ids = ", ".join(f"#{c.id}" for c in result.advancing)
        await interaction.edit_original_response(
            content=f"Step {step} approved: {ids} advance, {result.not_advancing} do not.",
            view=None,
        )
        await show_news(self.bot, approved.news)  # pairs of the approved step say they are done



async def setup(bot: CuratorBot) -> None:
    await bot.add_cog(Approvals(bot))
