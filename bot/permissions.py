"""Who may change things: members holding the curator role."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import discord
from discord import app_commands

T = TypeVar("T")


class NotCurator(app_commands.CheckFailure):
    """Shown as it is, ephemerally: the person lacks the role."""

    def __init__(self, role_id: int) -> None:
        super().__init__(
            f"Only members with the <@&{role_id}> role may do this; ask an admin for the role."
        )


def is_curator(member: discord.abc.User | discord.Member, role_id: int) -> bool:
    return isinstance(member, discord.Member) and any(r.id == role_id for r in member.roles)


def ensure_curator(interaction: discord.Interaction[Any], role_id: int) -> None:
    if not is_curator(interaction.user, role_id):
        raise NotCurator(role_id)


def curator_only() -> Callable[[T], T]:
    """A command check reading the role from the bot's settings."""

    async def predicate(interaction: discord.Interaction[Any]) -> bool:
        role_id = interaction.client.settings.curator_role_id
        ensure_curator(interaction, int(role_id))
        return True

    return app_commands.check(predicate)
