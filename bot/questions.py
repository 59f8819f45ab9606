"""Confirm/Cancel questions that still get an answer after the bot restarted.

The buttons are dynamic items (their custom id carries the command and a key), so Discord's
tap always reaches a handler: the waiting command when it is still waiting, else a private line
that the question expired and what to run again. A bare `discord.ui.View` would leave the tap
unanswered ("This interaction failed") once the process that posted it is gone.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any

import discord

QUESTION_TIMEOUT = 120.0

_waiting: dict[str, Question] = {}


class Question:
    """One question to the person who ran `command` (e.g. "approve", "run-delete" for
    /run delete); `await answer()` is
    True for Confirm, False for Cancel or when nobody answered in time."""

    def __init__(self, command: str, owner_id: int, timeout: float = QUESTION_TIMEOUT) -> None:
        self.command = command
        self.owner_id = owner_id
        self.timeout = timeout
        self.key = secrets.token_hex(8)
        self._answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def view(self) -> discord.ui.View:
        """The buttons to post; from now on a tap counts, even one that comes before
        `answer()` is awaited."""
        _waiting[self.key] = self
        view = discord.ui.View(timeout=None)
        view.add_item(ConfirmButton(self.command, self.key, "yes"))
        view.add_item(ConfirmButton(self.command, self.key, "no"))
        return view

    async def answer(self) -> bool:
        try:
            return await asyncio.wait_for(asyncio.shield(self._answer), self.timeout)
        except TimeoutError:
            return False
        finally:
            _waiting.pop(self.key, None)

    def resolve(self, yes: bool) -> None:
        if not self._answer.done():
            self._answer.set_result(yes)


def expired_text(command: str) -> str:
    return (
        "This question has expired (the bot restarted, or nobody answered within "
        f"{QUESTION_TIMEOUT / 60:.0f} minutes), so nothing was done. Run "
        f"`/{command.replace('-', ' ')}` again."
    )


class ConfirmButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"cc:ask:(?P<command>[a-z]+(?:-[a-z]+)?):(?P<key>[0-9a-f]{16}):(?P<answer>yes|no)",
):
    def __init__(self, command: str, key: str, answer: str) -> None:
        yes = answer == "yes"
        super().__init__(
            discord.ui.Button(
                label="Confirm" if yes else "Cancel",
                style=discord.ButtonStyle.danger if yes else discord.ButtonStyle.secondary,
                custom_id=f"cc:ask:{command}:{key}:{answer}",
            )
        )
        self.command, self.key, self.yes = command, key, yes

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ConfirmButton:
        return cls(match["command"], match["key"], match["answer"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        question = _waiting.get(self.key)
        if question is None:
            await interaction.response.edit_message(
                content=expired_text(self.command), view=None, attachments=[]
            )
            return
        if interaction.user.id != question.owner_id:
            await interaction.response.send_message("This question is not yours.", ephemeral=True)
            return
        await interaction.response.defer()
        question.resolve(self.yes)
