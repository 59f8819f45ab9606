"""/gallery: a contact sheet of one step, best first, with badges and how sure its top k is,
and a menu under it that opens one candidate full size with its lineage (persistent, so it
works after a restart)."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from pathlib import Path
from typing import Any, Final

import discord
from discord import app_commands
from discord.ext import commands
from PIL import Image

from app.overview import candidate, gallery
from bot.app import CuratorBot, component_boundary, defer_public
from bot.render import (
    BADGE_WORDS,
    Badge,
    SheetItem,
    encode,  # the one "JPEG or PNG under a byte limit" rule, shared with the sheets
    render_contact_sheet,
    to_rgb,
)
from cogs.common import AnyRunOption, run_ref
from orchestration.overview import (
    CandidateDetail,
    GalleryItem,
    GalleryPage,
)
from orchestration.states import CandidateStatus
from orchestration.text import caption, person, plural

log = logging.getLogger(__name__)

# Discord's upload limit in a server without boosts (8 MB at its smallest); stay under it.
UPLOAD_MAX_BYTES: Final = 8_000_000
_SYMBOLS: Final[dict[Badge, str]] = {
    "advancing": "▲", "not_advancing": "●", "rejected": "✕", "pending": "○",
}
MARKERS: Final[dict[Badge, str]] = {b: f"{_SYMBOLS[b]} {BADGE_WORDS[b]}" for b in _SYMBOLS}


def badge(item: GalleryItem | CandidateDetail) -> Badge:
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
            caption(item.id, item.elo, item.votes),
            badge(item),
        )
        for item in page.items
    ]


def confidence_text(page: GalleryPage) -> str | None:
    """How sure the ranking is of the step's top k, with the few-votes warning; None when the
    step has fewer than two active candidates."""
    confidence = page.confidence
    if confidence is None:
        return None
    k = confidence.k
    if page.active > k:
        text = f"Top {k}: {confidence.label} to be the true top {k}."
    else:
        text = f"Top {k}: {confidence.label}."  # every active candidate is in it
    if confidence.few_votes_warning:
        text += f"\n⚠️ {confidence.few_votes_warning}"
    return text


def option_label(item: GalleryItem) -> str:
    return f"#{item.id} · rank {item.rank} · Elo {item.elo:.0f}"


def select_id(run_id: int) -> str:
    return f"cc:gal:{run_id}"


class CandidateSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=r"cc:gal:(?P<run>\d+)",
):
    """The menu under a contact sheet. Its id carries only the run: the options (candidate ids)
    travel with the message, so a restarted bot answers from the chosen value alone."""

    def __init__(self, run_id: int, options: list[discord.SelectOption] | None = None) -> None:
        super().__init__(
            discord.ui.Select(
                custom_id=select_id(run_id),
                placeholder="Open a candidate full size",
                options=options or [],
            )
        )
        self.run_id = run_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> CandidateSelect:
        options = list(item.options) if isinstance(item, discord.ui.Select) else None
        return cls(int(match["run"]), options)

    @component_boundary
    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Anyone may look: nothing changes, so no role is needed."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        text, file = await self._open(interaction.client, int(self.item.values[0]))
        if file is None:
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.followup.send(text, file=file, ephemeral=True)

    async def _open(self, bot: CuratorBot, candidate_id: int) -> tuple[str, discord.File | None]:
        """The text to show and the picture, or no picture and why not."""
        detail = await candidate(bot.app, self.run_id, candidate_id)
        text = detail_text(detail)
        path = bot.settings.data_dir / detail.image_path
        try:
            data, filename = await asyncio.to_thread(full_size, path, UPLOAD_MAX_BYTES)
        except FileNotFoundError:
            return f"{text}\nThe image file of #{detail.id} is missing ({detail.image_path}).", None
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            log.warning("cannot send the image of candidate #%s (%s): %s", detail.id, path, err)
            return f"{text}\nThe image file of #{detail.id} cannot be read or sent.", None
        return text, discord.File(io.BytesIO(data), filename=filename)


def detail_text(detail: CandidateDetail) -> str:
    head = (
        f"#{detail.id} · step {detail.step} · rank {detail.rank} · Elo {detail.elo:.0f} · "
        f"{plural(detail.votes, 'vote')} · {MARKERS[badge(detail)]}"
    )
    line = " → ".join(
        f"step {g.step} #{g.id} (seed {g.seed}, Elo {g.elo:.0f})" for g in detail.chain
    )
    rejected = f"\nRejected by {person(detail.rejected_by)}." if detail.rejected_by else ""
    return f"{head}{rejected}\nLineage: {line}"


def full_size(path: Path, max_bytes: int) -> tuple[bytes, str]:
    """The file as it is when Discord takes it; re-encoded under the limit only when too big,
    because re-encoding loses detail and costs seconds. Blocking: call it in a thread."""
    data = path.read_bytes()
    if len(data) <= max_bytes:
        return data, path.name
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        rendered = encode(to_rgb(im), path.stem, max_bytes)
    return rendered.data, rendered.filename


def gallery_view(page: GalleryPage) -> discord.ui.View:
    """The menu of the page's candidates; `timeout=None` because it must outlive the process."""
    view = discord.ui.View(timeout=None)
    options = [
        discord.SelectOption(label=option_label(item), value=str(item.id))
        for item in page.items[:25]  # Discord's most options in one menu
    ]
    view.add_item(CandidateSelect(page.run_id, options))
    return view


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
        run: AnyRunOption | None = None,
    ) -> None:
        await defer_public(interaction)
        found = (await gallery(self.bot.app, run_ref(interaction, run), step, page)).page
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
        text = " · ".join((title, *MARKERS.values()))
        if (sure := confidence_text(found)) is not None:
            text += f"\n{sure}"
        await interaction.followup.send(
            text,
            file=discord.File(io.BytesIO(sheet.data), filename=sheet.filename),
            view=gallery_view(found),
        )


async def setup(bot: CuratorBot) -> None:
    await bot.add_cog(Gallery(bot))
    bot.add_dynamic_items(CandidateSelect)
