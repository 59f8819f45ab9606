"""The run option's autocomplete: what each command may be used on."""

from __future__ import annotations

from cogs.common import running_run_choices
from tests.committed import complete_run
from tests.factories import make_pipeline, make_run
from tests.helpers import make_bot


async def test_a_completed_run_is_offered_only_where_it_can_be_used(session_factory, tmp_path):
    async with session_factory() as s:
        await make_pipeline(s, tmp_path)
        done = await make_run(s, name="done")
        live = await make_run(s, name="live")
        await complete_run(s, done)
    bot = make_bot(session_factory, tmp_path)
    assert [c.value for c in await running_run_choices(bot, "")] == [live]
    assert sorted(c.value for c in await running_run_choices(bot, "", completed=True)) == [
        done, live
    ]


def test_every_run_option_is_one_autocompleted_integer(tmp_path):
    from tests.system.test_discord_limits import options, registered

    runs = [
        (where, o)
        for payload in registered(make_bot(None, tmp_path))  # type: ignore[arg-type]
        for where, o in options(payload)
        if o["name"] == "run"
    ]
    assert {where for where, _ in runs} == {
        "/approve run", "/complete run", "/resume run", "/vote run", "/gallery run",
        "/run/delete run",
    }
    for where, option in runs:
        assert option["type"] == 4 and option["autocomplete"] is True, where


async def test_the_run_option_completes_from_the_runs_its_command_takes(session_factory, tmp_path):
    from cogs.common import RunTransformer
    from tests.helpers import fake_interaction

    async with session_factory() as s:
        await make_pipeline(s, tmp_path)
        done = await make_run(s, name="done")
        await complete_run(s, done)
    interaction = fake_interaction(make_bot(session_factory, tmp_path))
    assert await RunTransformer().autocomplete(interaction, "") == []
    [choice] = await RunTransformer(completed=True).autocomplete(interaction, "don")
    assert choice.value == done and choice.name == f"#{done} done"


async def test_run_choices_match_any_case_and_take_wildcards_literally(session_factory, tmp_path):
    async with session_factory() as s:
        await make_pipeline(s, tmp_path)
        gym = await make_run(s, name="Morning Gym")
        await make_run(s, name="sofa")
        pct = await make_run(s, name="100% cotton")
    bot = make_bot(session_factory, tmp_path)
    assert [c.value for c in await running_run_choices(bot, "GYM")] == [gym]
    assert [c.value for c in await running_run_choices(bot, "0%")] == [pct]
    assert [c.value for c in await running_run_choices(bot, "_")] == []
    assert [c.name for c in await running_run_choices(bot, f"#{gym} m")] == [f"#{gym} Morning Gym"]
