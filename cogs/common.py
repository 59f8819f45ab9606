"""Shared pieces of the cogs: the `run` option and which run an interaction is about."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from orchestration.errors import InvalidInput
from orchestration.overview import run_choices, run_for_channel
from orchestration.text import clip

CHOICE_NAME_MAX = 100  # Discord's limit on an autocomplete choice's name

if TYPE_CHECKING:
    from bot.app import CuratorBot


async def resolve_run(
    bot: CuratorBot, interaction: discord.Interaction[Any], run: int | None
) -> int:
    """The `run` option when given, else the run whose channel this is."""
    if run is not None:
        return run
    if interaction.channel_id is not None:
        async with bot.sessions() as session:
            found = await run_for_channel(session, interaction.channel_id)
        if found is not None:
            return found
    raise InvalidInput("Use this in a run's channel, or pick the run with the `run` option.")


async def running_run_choices(
    bot: CuratorBot, current: str, *, completed: bool = False
) -> list[app_commands.Choice[int]]:
    """Runs whose `#id name` contains what was typed: running ones, and with `completed` also
    those a person may still look at."""
    async with bot.sessions() as session:
        found = await run_choices(session, current, completed=completed)
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
