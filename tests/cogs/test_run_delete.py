"""/run delete through faked interactions, a real database and real files."""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import func, select

from bot.questions import expired_text
from cogs.runs import Runs
from db.models import PipelineRun
from tests.cogs.test_runs import start
from tests.factories import make_pipeline
from tests.helpers import (
    confirmed,
    created_channels,
    fake_interaction,
    fake_member,
    followed_up,
    invoke,
    make_bot,
    press,
    question_message,
    replies,
)
from tests.orchestration.test_deletion import claim


@pytest.fixture
async def cog(session_factory, tmp_path):
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=3)
    return Runs(make_bot(session_factory, tmp_path / "data"))


async def runs(session_factory) -> int:
    async with session_factory() as s:
        return int(await s.scalar(select(func.count()).select_from(PipelineRun)))


async def test_a_curator_deletes_the_run_of_this_channel_after_confirming(
    cog, session_factory, tmp_path
):
    started = await start(cog)
    [channel] = created_channels(started)
    cog.bot.get_channel = {channel.id: channel}.get
    image = tmp_path / "data" / "run-0001-morning-gym" / "01-step-1" / "job-000001-0.png"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"x" * 2500)
    interaction = fake_interaction(cog.bot, channel_id=channel.id)

    await confirmed(interaction, invoke(Runs.delete, cog, interaction))

    [question] = replies(interaction)
    assert question.startswith("Delete run #1 “Morning gym” (test-pipeline, running) for good?")
    assert "• from disk: 1 file (2.5 kB) in " in question
    assert "• stays: its Discord channel" in question
    said = interaction.edit_original_response.await_args.kwargs["content"]
    assert said.startswith("Deleted run #1 “Morning gym”: 0 candidates, 0 jobs")
    assert await runs(session_factory) == 0 and not image.parent.parent.exists()
    [note] = [m.content for m in channel.send.messages]
    assert note.startswith("🗑️ Run “Morning gym” was deleted by <@")
    assert "This channel stays" in note


async def test_cancel_keeps_the_run(cog, session_factory):
    await start(cog)
    interaction = fake_interaction(cog.bot)
    task = asyncio.create_task(invoke(Runs.delete, cog, interaction, run=1))
    await followed_up(interaction)
    sent = interaction.followup.send.await_args
    await press(cog.bot, sent.kwargs["view"], "Cancel", interaction.user, question_message(sent))
    await task
    assert interaction.edit_original_response.await_args.kwargs["content"] == "Not deleted."
    assert await runs(session_factory) == 1


async def test_refusals_ask_nothing_and_change_nothing(cog, session_factory):
    await start(cog)
    no_role = fake_interaction(cog.bot, user=fake_member(curator=False))
    await invoke(Runs.delete, cog, no_role, run=1)
    assert "Only members with the <@&4242> role" in replies(no_role)[0]

    async with session_factory() as s:
        await claim(s, random.Random(1), 1)
    busy = fake_interaction(cog.bot)
    await invoke(Runs.delete, cog, busy, run=1)
    [refusal] = replies(busy)
    assert "has 1 job in flight" in refusal and "Complete the run first" in refusal
    assert busy.followup.send.await_args.kwargs.get("view") is None
    assert await runs(session_factory) == 1


def test_an_expired_question_names_the_command_as_typed():
    assert "Run `/run delete` again." in expired_text("run-delete")
