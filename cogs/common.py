"""Shared pieces of the cogs: the `run` option and which run an interaction is about."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from app.context import RunRef
from app.overview import run_choices
from orchestration.text import clip

CHOICE_NAME_MAX = 100  # Discord's limit on an autocomplete choice's name

if TYPE_CHECKING:
    from bot.app import CuratorBot


def run_ref(interaction: discord.Interaction[Any], run: int | None) -> RunRef:
    """The `run` option when given, else the run whose channel this is."""
    return RunRef(run, interaction.channel_id)


async def running_run_choices(
    bot: CuratorBot, current: str, *, completed: bool = False
) -> list[app_commands.Choice[int]]:
    """Runs whose `#id name` contains what was typed: running ones, and with `completed` also
    those a person may still look at."""
    found = await run_choices(bot.app, current, completed=completed)
    return [app_commands.Choice(name=clip(label, CHOICE_NAME_MAX), value=i) for i, label in found]


class RunTransformer(app_commands.Transformer["CuratorBot"]):
    """The `run` option: a run id, autocompleted from the runs the command may be used on."""

    def __init__(self, *, completed: bool = False) -> None:
        self.completed = completed

    @property
    def type(self) -> discord.AppCommandOptionType:
        return discord.AppCommandOptionType.integer

    async def transform(self, interaction: discord.Interaction[CuratorBot], value: Any) -> int:
        return int(value)

    async def autocomplete(
        self, interaction: discord.Interaction[CuratorBot], value: int | float | str
    ) -> list[app_commands.Choice[int | float | str]]:
        bot = interaction.client
        choices = await running_run_choices(bot, str(value), completed=self.completed)
        return list(choices)  # type: ignore[arg-type]  # Choice is invariant; ids are ints


RunOption = app_commands.Transform[int, RunTransformer]
AnyRunOption = app_commands.Transform[int, RunTransformer(completed=True)]
