"""The run option's autocomplete: what each command may be used on."""

from __future__ import annotations

from cogs.common import running_run_choices
from orchestration.runs import complete_run
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
