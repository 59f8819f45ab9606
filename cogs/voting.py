"""Vote buttons under a pair picture: they carry the run and both candidates in their custom
ids, so they keep working after a restart (discord.py DynamicItem, registered at start-up)."""

from __future__ import annotations

import re
from typing import Any, Literal

import discord

from bot.app import CuratorBot, reply_ephemeral
from bot.permissions import ensure_curator
from orchestration.errors import DomainError
from orchestration.ratings import record_vote, reject_candidate

Action = Literal["a", "b", "s", "ra", "rb"]
LABELS: dict[Action, tuple[str, discord.ButtonStyle]] = {
    "a": ("A better", discord.ButtonStyle.primary),
    "b": ("B better", discord.ButtonStyle.primary),
    "s": ("Skip", discord.ButtonStyle.secondary),
    "ra": ("Reject A", discord.ButtonStyle.danger),
    "rb": ("Reject B", discord.ButtonStyle.danger),
}


def custom_id(action: Action, run_id: int, a: int, b: int) -> str:
    return f"cc:vote:{action}:{run_id}:{a}:{b}"


class VoteButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"cc:vote:(?P<action>a|b|s|ra|rb):(?P<run>\d+):(?P<a>\d+):(?P<b>\d+)",
):
    def __init__(self, action: Action, run_id: int, a: int, b: int) -> None:
        label, style = LABELS[action]
        super().__init__(
            discord.ui.Button(label=label, style=style, custom_id=custom_id(action, run_id, a, b))
        )
        self.action, self.run_id, self.a, self.b = action, run_id, a, b

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> VoteButton:
        action: Action = match["action"]  # type: ignore[assignment]
        return cls(action, int(match["run"]), int(match["a"]), int(match["b"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot: CuratorBot = interaction.client
        try:
            ensure_curator(interaction, int(bot.settings.curator_role_id or 0))
            outcome = await self._apply(bot, str(interaction.user.id))
        except (DomainError, discord.app_commands.CheckFailure) as err:
            await reply_ephemeral(interaction, str(err))
            return
        bot.scheduler.wake()
        await interaction.response.edit_message(
            content=f"{outcome} — {interaction.user.display_name}", view=None
        )

    async def _apply(self, bot: CuratorBot, voter: str) -> str:
        """One orchestration call per button; returns the outcome line for the message."""
        async with bot.sessions() as session:
            if self.action == "a":
                await record_vote(
                    session, self.run_id, self.a, self.b, voter, k_factor=bot.settings.elo_k_factor
                )
                return f"A (#{self.a}) is better than B (#{self.b})"
            if self.action == "b":
                await record_vote(
                    session, self.run_id, self.b, self.a, voter, k_factor=bot.settings.elo_k_factor
                )
                return f"B (#{self.b}) is better than A (#{self.a})"
            if self.action == "ra":
                await reject_candidate(session, self.run_id, self.a, voter)
                return f"A (#{self.a}) rejected"
            if self.action == "rb":
                await reject_candidate(session, self.run_id, self.b, voter)
                return f"B (#{self.b}) rejected"
        return f"Skipped #{self.a} vs #{self.b}"


def vote_view(run_id: int, a: int, b: int) -> discord.ui.View:
    """The five buttons under a pair; `timeout=None` because they must outlive the process."""
    view = discord.ui.View(timeout=None)
    for action in LABELS:
        view.add_item(VoteButton(action, run_id, a, b))
    return view


async def setup(bot: CuratorBot) -> None:
    bot.add_dynamic_items(VoteButton)
