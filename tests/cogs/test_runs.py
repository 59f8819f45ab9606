"""/runs, /run start, /complete, /resume through faked interactions and a real database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from unittest.mock import AsyncMock, MagicMock

import discord
import pytest
from sqlalchemy import select

from bot.questions import ConfirmButton, Question
from cogs.runs import Runs, parse_variables
from comfy.capabilities import fetch_capabilities
from comfy.client import ComfyClient
from comfy.simulator import SimulatedComfy
from db.models import PipelineRun
from orchestration.errors import InvalidInput
from orchestration.states import RunStatus
from tests.committed import hold_run, import_pipeline
from tests.factories import make_pipeline, make_run
from tests.helpers import (
    confirmed,
    created_channels,
    fake_interaction,
    fake_member,
    fake_message,
    fake_text_channel,
    followed_up,
    invoke,
    make_bot,
    replies,
    tap,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def cog(session_factory, tmp_path):
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=3)
    bot = make_bot(session_factory, tmp_path / "data")
    return Runs(bot)


async def start(cog, **kwargs):
    interaction = fake_interaction(
        cog.bot, **({"user": kwargs.pop("user")} if "user" in kwargs else {})
    )
    args = {"pipeline": "test-pipeline", "name": "Morning gym", "prompt": "a gym"} | kwargs
    await invoke(Runs.start, cog, interaction, **args)
    return interaction


async def test_run_start_creates_run_and_channel(cog, session_factory):
    interaction = await start(cog, n=2)
    assert interaction.response.deferred  # answered within Discord's 3 s before slow work
    [channel] = created_channels(interaction)
    assert channel.name == "run-0001-morning-gym"
    async with session_factory() as s:
        run = (await s.scalars(select(PipelineRun))).one()
    assert run.channel_id == channel.id and run.max_children == 2
    assert run.variables == {"prompt": "a gym"}
    assert f"in {channel.mention}" in replies(interaction)[-1]


async def test_run_start_without_channel_permission_keeps_the_run_and_says_why(
    cog, session_factory
):
    interaction = fake_interaction(cog.bot)
    response = MagicMock(status=403, reason="Forbidden")
    interaction.guild.create_text_channel = AsyncMock(
        side_effect=discord.Forbidden(response, {"code": 50013, "message": "Missing Permissions"})
    )
    await invoke(Runs.start, cog, interaction, pipeline="test-pipeline", name="Sofa", prompt="p")
    text = replies(interaction)[-1]
    assert text.startswith("Started run #1 “Sofa”")
    assert "could not create the run's channel (Missing Permissions)" in text
    assert "Manage Channels" in text and "/vote run:1" in text
    async with session_factory() as s:
        run = (await s.scalars(select(PipelineRun))).one()
    assert run.channel_id is None


async def test_run_start_refusals_change_nothing(cog, session_factory):
    no_role = await start(cog, user=fake_member(curator=False))
    assert "Only members with the <@&4242> role" in replies(no_role)[0]
    assert no_role.response.sent[0]["ephemeral"] is True
    unknown = await start(cog, pipeline="nope")
    assert "no pipeline “nope”" in replies(unknown)[-1]
    bad_vars = await start(cog, variables="style golden")
    assert "is not name=value" in replies(bad_vars)[-1]
    async with session_factory() as s:
        assert (await s.scalars(select(PipelineRun))).all() == []
    for i in (no_role, unknown, bad_vars):
        assert i.guild.create_text_channel.await_count == 0
    for i in (unknown, bad_vars):  # deferred publicly; refused privately
        i.delete_original_response.assert_awaited_once()
        assert i.followup.send.await_args.kwargs["ephemeral"] is True


def test_parse_variables():
    assert parse_variables("style=golden hour; lens = 85mm;") == {
        "style": "golden hour",
        "lens": "85mm",
    }
    assert parse_variables(None) == {}
    with pytest.raises(InvalidInput):
        parse_variables("=x")


async def test_runs_lists_every_run(cog):
    await start(cog, name="A")
    await start(cog, name="B")
    interaction = fake_interaction(cog.bot)
    await invoke(Runs.runs, cog, interaction)
    embed = interaction.followup.send.await_args.kwargs["embed"]
    names = [f.name for f in embed.fields]
    assert names == ["#2 B (test-pipeline)", "#1 A (test-pipeline)"]
    assert "1 step 1: 0 ✅" in embed.fields[0].value
    assert "0 votes" in embed.fields[0].value


async def test_complete_in_the_runs_channel_after_confirming(cog, session_factory):
    started = await start(cog)
    [channel] = created_channels(started)
    interaction = fake_interaction(cog.bot, channel_id=channel.id)
    await confirmed(interaction, invoke(Runs.complete, cog, interaction))
    assert interaction.response.deferred
    async with session_factory() as s:
        run = (await s.scalars(select(PipelineRun))).one()
    assert run.status is RunStatus.completed
    assert "is completed" in interaction.edit_original_response.await_args.kwargs["content"]


async def test_complete_when_its_channel_cannot_be_renamed(cog, session_factory):
    started = await start(cog)
    [channel] = created_channels(started)
    cog.bot.get_channel = {channel.id: channel}.get
    refused = {"code": 50013, "message": "Missing Permissions"}
    channel.edit = AsyncMock(side_effect=discord.Forbidden(
        MagicMock(status=403, reason="Forbidden"), refused))
    interaction = fake_interaction(cog.bot, channel_id=channel.id)
    await confirmed(interaction, invoke(Runs.complete, cog, interaction))
    async with session_factory() as s:
        assert (await s.scalars(select(PipelineRun))).one().status is RunStatus.completed
    said = interaction.edit_original_response.await_args.kwargs["content"]
    assert said == ("Run #1 “Morning gym” is completed, but I could not mark its channel done "
                    "(Missing Permissions).")


async def test_complete_elsewhere_needs_the_run_option(cog):
    await start(cog)
    interaction = fake_interaction(cog.bot, channel_id=999)
    await invoke(Runs.complete, cog, interaction)
    assert "Use this in a run's channel" in replies(interaction)[0]


async def test_resume(cog, session_factory):
    await start(cog)
    async with session_factory() as s:
        await hold_run(s, 1, "checkpoint missing")
        await s.commit()
    interaction = fake_interaction(cog.bot)
    await invoke(Runs.resume, cog, interaction, run=1)
    assert replies(interaction) == ["Run #1 “Morning gym” resumed."]
    again = fake_interaction(cog.bot)
    await invoke(Runs.resume, cog, again, run=1)
    assert "is not on hold" in replies(again)[0]
    assert again.response.deferred_with["ephemeral"] is True


async def test_run_start_is_refused_when_no_worker_has_what_it_needs(session_factory, tmp_path):
    async with session_factory() as s:
        await import_pipeline(s, REPO / "pipelines" / "sdxl-refine-upscale")
    bot = make_bot(session_factory, tmp_path / "data")
    cog = Runs(bot)
    models = {"checkpoints": ["juggernaut_xl.safetensors"]}
    async with (SimulatedComfy(duration=0.01, root=tmp_path / "comfy", models=models) as sim,
                ComfyClient(sim.url) as client):
        bot.scheduler.capabilities[sim.url] = await fetch_capabilities(client)
    args = {"pipeline": "sdxl-refine-upscale", "name": "Sea", "prompt": "a lighthouse"}
    refused = fake_interaction(bot)
    await invoke(Runs.start, cog, refused, **args,
                 variables="checkpoint=sd_xl_base_1.0.safetensors")
    lacks = (f"needs checkpoint 'sd_xl_base_1.0.safetensors'; ComfyUI at {sim.url} has: "
             "juggernaut_xl.safetensors")
    assert replies(refused)[-1] == (
        "No ComfyUI can run “sdxl-refine-upscale” with these values, so no run was started:\n"
        f"• step 1 (base) {lacks}\n• step 2 (refine) {lacks}\n• step 3 (upscale) {lacks}")
    assert refused.followup.send.await_args.kwargs["ephemeral"] is True
    assert refused.guild.create_text_channel.await_count == 0
    async with session_factory() as s:
        assert (await s.scalars(select(PipelineRun))).all() == []

    started = fake_interaction(bot)
    await invoke(Runs.start, cog, started, **args, variables="checkpoint=juggernaut_xl.safetensors")
    assert replies(started)[-1].startswith("Started run #1 “Sea”")


async def test_an_error_after_the_run_started_never_says_nothing_was_changed(cog, session_factory):
    interaction = fake_interaction(cog.bot)
    send = interaction.followup.send.side_effect
    failed = []

    async def discord_down_once(*args, **kwargs):
        if not failed:
            failed.append(True)
            raise discord.HTTPException(MagicMock(status=503, reason="Unavailable"), "try later")
        return await send(*args, **kwargs)

    interaction.followup.send.side_effect = discord_down_once
    await invoke(Runs.start, cog, interaction, pipeline="test-pipeline", name="Gym", prompt="p")
    [said] = replies(interaction)[1:]
    assert "Nothing was changed" not in said
    assert "run #1 “Gym” was started" in said
    async with session_factory() as s:
        assert (await s.scalar(select(PipelineRun.status))) is RunStatus.running


async def test_a_confirm_from_before_a_restart_says_the_question_expired(cog, session_factory):
    async with session_factory() as s:
        await make_run(s)
    asker = fake_member()
    gone = discord.ui.View()  # posted by a bot process that is gone now, with its question
    gone.add_item(ConfirmButton("complete", "0123456789abcdef", "yes"))
    gone.add_item(ConfirmButton("complete", "0123456789abcdef", "no"))
    message = fake_message(fake_text_channel(), content="Complete run #1?", ephemeral=True,
                           view=gone)
    confirm = next(c.custom_id for c in gone.children if c.item.label == "Confirm")
    restarted = make_bot(session_factory, cog.bot.settings.data_dir)
    pressed = await tap(restarted, message, confirm, user=asker)
    assert pressed.response.is_done()
    assert "expired" in message.content and "Run `/complete` again" in message.content
    assert message.components == []
    async with session_factory() as s:
        assert (await s.scalar(select(PipelineRun.status))) is RunStatus.running


async def test_only_the_asker_answers_a_question(cog, session_factory):
    async with session_factory() as s:
        await make_run(s)
    asker = fake_member()
    interaction = fake_interaction(cog.bot, user=asker)
    task = asyncio.create_task(invoke(Runs.complete, cog, interaction, run=1))
    await followed_up(interaction)
    [message] = interaction.followup.send.messages
    confirm = buttons_of(message)["Confirm"]
    other = await tap(cog.bot, message, confirm, user=fake_member(name="mallory"))
    assert replies(other) == ["This question is not yours."]
    await tap(cog.bot, message, confirm, user=asker)
    await task
    async with session_factory() as s:
        assert (await s.scalar(select(PipelineRun.status))) is RunStatus.completed


def buttons_of(message) -> dict[str, str]:
    return {c.label: c.custom_id for row in message.components for c in row.children}


async def test_a_confirm_tapped_as_soon_as_the_question_shows_counts(cog):
    """The message is on the phone before the command starts waiting for its answer."""
    asker = fake_member()
    question = Question("complete", asker.id)
    view = question.view()
    message = fake_message(fake_text_channel(), content="Complete run #1?", ephemeral=True,
                           view=view)
    confirm = next(c.custom_id for c in view.children if c.item.label == "Confirm")
    await tap(cog.bot, message, confirm, user=asker)
    assert await question.answer() is True
