"""Vote buttons: one tap, one orchestration call; they survive a restart."""

from __future__ import annotations

from sqlalchemy import select

from cogs.voting import VoteButton, custom_id, vote_view
from db.models import CandidateStatus, ImageCandidate, Vote
from tests.factories import add_candidate, make_pipeline, make_run
from tests.helpers import fake_interaction, fake_member, make_bot, replies


async def pair(session_factory, tmp_path) -> tuple[int, int, int]:
    async with session_factory() as s:
        await make_pipeline(s, tmp_path)
        run = await make_run(s)
        return run, await add_candidate(s, run, 1), await add_candidate(s, run, 1)


async def press(bot, cid: str, user=None):
    """What discord.py does when a button of a message arrives: parse its id, then call it."""
    match = VoteButton.__discord_ui_compiled_template__.fullmatch(cid)
    assert match is not None
    interaction = fake_interaction(bot, user=user)
    item = await VoteButton.from_custom_id(interaction, None, match)  # type: ignore[arg-type]
    await item.callback(interaction)
    return interaction


async def test_view_has_five_persistent_buttons(session_factory, tmp_path):
    run, a, b = await pair(session_factory, tmp_path)
    view = vote_view(run, a, b)
    assert view.timeout is None and view.is_persistent()
    labels = [c.item.label for c in view.children]  # type: ignore[attr-defined]
    assert labels == ["A better", "B better", "Skip", "Reject A", "Reject B"]
    assert all(len(c.custom_id) <= 100 for c in view.children)  # type: ignore[attr-defined]


async def test_a_button_pressed_after_a_restart_records_the_vote(session_factory, tmp_path):
    run, a, b = await pair(session_factory, tmp_path)
    vote_view(run, a, b)  # posted by the bot before it stopped
    fresh_bot = make_bot(session_factory, tmp_path)  # a new process on the same database
    interaction = await press(fresh_bot, custom_id("b", run, a, b))
    assert interaction.response.sent[0]["view"] is None  # buttons gone, outcome shown
    assert f"B (#{b}) is better than A (#{a})" in interaction.response.sent[0]["content"]
    async with session_factory() as s:
        vote = (await s.scalars(select(Vote))).one()
    assert vote.winner_id == b


async def test_refusals_show_privately_and_change_nothing(session_factory, tmp_path):
    run, a, b = await pair(session_factory, tmp_path)
    bot = make_bot(session_factory, tmp_path)
    stranger = await press(bot, custom_id("a", run, a, b), user=fake_member(curator=False))
    assert "role" in replies(stranger)[0] and stranger.response.sent[0]["ephemeral"]
    alice = fake_member()
    await press(bot, custom_id("a", run, a, b), user=alice)
    twice = await press(bot, custom_id("b", run, a, b), user=alice)
    assert "already voted" in replies(twice)[0]
    await press(bot, custom_id("ra", run, a, b))
    late = await press(bot, custom_id("b", run, a, b))
    assert f"#{a} was rejected" in replies(late)[0]
    async with session_factory() as s:
        votes = (await s.scalars(select(Vote))).all()
        rejected = await s.get_one(ImageCandidate, a)
    assert len(votes) == 1 and rejected.status is CandidateStatus.rejected


async def test_skip_records_nothing(session_factory, tmp_path):
    run, a, b = await pair(session_factory, tmp_path)
    interaction = await press(make_bot(session_factory, tmp_path), custom_id("s", run, a, b))
    assert "Skipped" in interaction.response.sent[0]["content"]
    async with session_factory() as s:
        assert (await s.scalars(select(Vote))).all() == []
