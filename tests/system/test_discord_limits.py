"""Every command as Discord registers it, and the longest input each option lets through,
stay within Discord's limits (the fakes in tests/helpers.py refuse the rest)."""

from __future__ import annotations

from typing import Any

import discord
import pytest
from sqlalchemy import func, select

from bot.app import CuratorBot
from cogs.approvals import Approvals
from cogs.gallery import Gallery
from cogs.notifications import Notifications
from cogs.pipelines import Pipelines
from cogs.runs import Runs
from cogs.voting import Voting
from db.models import PipelineRun
from tests import discord_rules as rules
from tests.factories import make_pipeline
from tests.helpers import created_channels, fake_interaction, invoke, make_bot, replies

COGS = (Runs, Approvals, Pipelines, Gallery, Notifications, Voting)


def registered(bot: CuratorBot) -> list[dict[str, Any]]:
    """The command payloads Discord is sent at start-up."""
    for cog in COGS:
        for command in cog(bot).__cog_app_commands__:
            bot.tree.add_command(command, override=True)
    return [c.to_dict(bot.tree) for c in bot.tree.get_commands()]


def options(payload: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    for option in payload.get("options", []):
        where = f"{path}/{payload['name']}"
        if option["type"] in (1, 2):  # a subcommand or a group
            found += options(option, where)
        else:
            found.append((f"{where} {option['name']}", option))
    return found


def test_every_string_option_has_a_max_length_within_discords(tmp_path):
    bot = make_bot(None, tmp_path)  # type: ignore[arg-type]
    strings = [
        (where, o)
        for payload in registered(bot)
        for where, o in options(payload)
        if o["type"] == discord.AppCommandOptionType.string.value and not o.get("choices")
    ]
    assert strings
    for where, option in strings:
        assert 1 <= option.get("max_length", 0) <= rules.STRING_OPTION_MAX, where


def test_commands_fit_discords_definition_limits(tmp_path):
    bot = make_bot(None, tmp_path)  # type: ignore[arg-type]
    for payload in registered(bot):
        assert 1 <= len(payload["name"]) <= rules.COMMAND_NAME_MAX
        assert 1 <= len(payload["description"]) <= rules.DESCRIPTION_MAX
        assert len(payload.get("options", [])) <= rules.OPTIONS_MAX
        for where, option in options(payload):
            assert 1 <= len(option["name"]) <= rules.COMMAND_NAME_MAX, where
            assert 1 <= len(option["description"]) <= rules.DESCRIPTION_MAX, where


def longest(option: str) -> int:
    return next(
        o["max_length"]
        for payload in registered(make_bot(None, "."))  # type: ignore[arg-type]
        for where, o in options(payload)
        if where == f"/run/start {option}"
    )


@pytest.fixture
async def cog(session_factory, tmp_path):
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=3)
    return Runs(make_bot(session_factory, tmp_path / "data"))


async def test_run_start_with_the_longest_values_discord_lets_through(cog, session_factory):
    interaction = fake_interaction(cog.bot)
    await invoke(
        Runs.start, cog, interaction,
        pipeline="test-pipeline",
        name="N" * longest("name"),
        prompt="p" * longest("prompt"),
        negative_prompt="q" * longest("negative_prompt"),
        variables="style=" + "s" * (longest("variables") - len("style=")),
    )
    [channel] = created_channels(interaction)  # its topic fits, so the channel was made
    assert "Started run #1" in replies(interaction)[-1]
    async with session_factory() as s:
        assert (await s.scalar(select(PipelineRun.channel_id))) == channel.id


async def test_a_name_longer_than_the_option_allows_is_refused_and_starts_nothing(
    cog, session_factory
):
    interaction = fake_interaction(cog.bot)
    await invoke(
        Runs.start, cog, interaction, pipeline="test-pipeline", name="N" * 1950, prompt="p"
    )
    [reply] = replies(interaction)
    assert "at most 100 characters" in reply and len(reply) < 300
    async with session_factory() as s:
        assert await s.scalar(select(func.count()).select_from(PipelineRun)) == 0


async def test_a_long_bad_variable_is_quoted_short(cog, session_factory):
    interaction = fake_interaction(cog.bot)
    await invoke(
        Runs.start, cog, interaction,
        pipeline="test-pipeline", name="x", prompt="p", variables="v" * 1000,
    )
    [reply] = replies(interaction)
    assert "is not name=value" in reply and len(reply) < 300


async def test_runs_with_the_longest_names_fit_one_embed(session_factory, tmp_path):
    from tests.committed import hold_run, import_pipeline
    from tests.factories import make_run, write_pipeline

    folder = write_pipeline(tmp_path / "long", name="P" * 100,
                            step_names=[str(i) * 100 for i in range(1, 7)])
    async with session_factory() as s:
        await import_pipeline(s, folder)
        for i in range(10):
            run_id = await make_run(s, "P" * 100, name=f"{i}" * 100)
            await hold_run(s, run_id, "a reason that is long " * 20)
        await s.commit()
    cog = Runs(make_bot(session_factory, tmp_path / "data"))
    interaction = fake_interaction(cog.bot)
    await invoke(Runs.runs, cog, interaction)
    [embed] = [c.kwargs["embed"] for c in interaction.followup.send.await_args_list]
    assert len(embed.fields) == 10  # every run of the page is listed, none dropped


async def test_run_choices_fit_discords_autocomplete(session_factory, tmp_path):
    from cogs.common import running_run_choices
    from tests.factories import make_run

    async with session_factory() as s:
        await make_pipeline(s, tmp_path)
        for i in range(30):
            await make_run(s, name=f"{i:02d}" * 50)
    bot = make_bot(session_factory, tmp_path / "data")
    choices = await running_run_choices(bot, "")
    assert len(choices) == rules.CHOICES_MAX and not rules.choice_problems(choices)
