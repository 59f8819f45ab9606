"""/approve: refusals before any preview; a preview, then confirm; the top k advance."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from cogs.approvals import Approvals
from db.models import ImageCandidate, PipelineRunStep
from tests.committed import complete_run, record_vote
from tests.factories import add_candidate, make_pipeline, make_run
from tests.helpers import (
    fake_interaction,
    fake_member,
    followed_up,
    invoke,
    make_bot,
    press,
    question_message,
    replies,
)


@pytest.fixture
async def setup(session_factory, tmp_path):
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=3)
        run = await make_run(s)
        p = await add_candidate(s, run, 1)
        ids = [await add_candidate(s, run, 2, p) for _ in range(3)]
        for voter, (w, lo) in enumerate([(0, 1), (0, 2)]):
            await record_vote(s, run, ids[w], ids[lo], f"v{voter}")
    bot = make_bot(session_factory, tmp_path)
    return Approvals(bot), run, ids


async def approved(session_factory, run) -> bool:
    async with session_factory() as s:
        return (await s.get_one(PipelineRunStep, (run, 2))).approved


async def test_preview_then_confirm(setup, session_factory):
    cog, run, ids = setup
    interaction = fake_interaction(cog.bot)
    task = asyncio.create_task(invoke(Approvals.approve, cog, interaction, step=2, k=2, run=run))
    await followed_up(interaction)
    preview = interaction.followup.send.await_args
    assert "these 2 advance" in preview.args[0]
    assert "That this is the true top 2: " in preview.args[0]
    assert "Few votes so far: this top 2 is only" in preview.args[0]
    assert preview.kwargs["file"].filename.startswith("sheet")
    assert not await approved(session_factory, run)  # nothing before the confirm
    await press(cog.bot, preview.kwargs["view"], "Confirm", interaction.user,
                question_message(preview))
    await task
    assert await approved(session_factory, run)
    async with session_factory() as s:
        advancing = set(await s.scalars(select(ImageCandidate.id).where(
            ImageCandidate.advancing.is_(True), ImageCandidate.step == 2)))
    assert advancing == {ids[0], ids[1]}
    assert "approved" in interaction.edit_original_response.await_args.kwargs["content"]


@pytest.mark.parametrize(("step", "k", "words"), [
    (1, 3, "approved when the run starts"), (3, 3, "final step"), (9, 3, "no step 9"),
    (2, 0, "at least 1"),
])
async def test_refused_before_any_preview(setup, session_factory, step, k, words):
    cog, run, _ = setup
    interaction = fake_interaction(cog.bot)
    await invoke(Approvals.approve, cog, interaction, step=step, k=k, run=run)
    assert words in replies(interaction)[-1]
    assert interaction.followup.send.await_args.kwargs == {"ephemeral": True}
    assert not await approved(session_factory, run)


async def test_no_role_and_completed_run(setup, session_factory):
    cog, run, _ = setup
    stranger = fake_interaction(cog.bot, user=fake_member(curator=False))
    await invoke(Approvals.approve, cog, stranger, step=2, k=2, run=run)
    assert "role" in replies(stranger)[0]
    async with session_factory() as s:
        await complete_run(s, run)
    late = fake_interaction(cog.bot)
    await invoke(Approvals.approve, cog, late, step=2, k=2, run=run)
    assert "completed" in replies(late)[-1]
