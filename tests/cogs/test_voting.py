"""Pairs in the run's channel and their vote buttons: one tap, one orchestration call; they
survive a restart; at most three wait for an answer; out-of-date pairs say so; /vote."""

from __future__ import annotations

import asyncio

import discord
from sqlalchemy import select

from bot.pairs import VoteButton, custom_id, vote_view
from cogs.notifications import Notifications
from cogs.voting import Voting
from db.models import ImageCandidate, PairPost, Vote
from orchestration.pair_posts import OPEN_PAIRS_PER_RUN
from orchestration.states import CandidateStatus
from scheduler.events import SchedulerEvent
from tests.committed import approve_step, reject_candidate, set_run_channel
from tests.factories import add_candidate, make_pipeline, make_run
from tests.helpers import (
    fake_interaction,
    fake_member,
    fake_text_channel,
    invoke,
    make_bot,
    post_pairs,
    posted_with,
    replies,
    tap,
)


async def pair(session_factory, tmp_path) -> tuple[int, int, int]:
    async with session_factory() as s:
        await make_pipeline(s, tmp_path)
        run = await make_run(s)
        return run, await add_candidate(s, run, 1), await add_candidate(s, run, 1)


async def run_with_channel(session_factory, tmp_path, candidates: int = 5, step: int = 1):
    """A run whose channel the bot can see, with `candidates` at `step`."""
    bot = make_bot(session_factory, tmp_path)
    channel = fake_text_channel("run-1")
    async with session_factory() as s:
        await make_pipeline(s, tmp_path)
        run = await make_run(s)
        await set_run_channel(s, run, channel.id)
        parent = None
        if step == 2:
            parent = await add_candidate(s, run, 1)
        ids = [await add_candidate(s, run, step, parent) for _ in range(candidates)]
    bot.get_channel = {channel.id: channel}.get  # type: ignore[method-assign]
    return bot, channel, run, ids


def buttons(message) -> dict[str, str]:
    """Label → custom id of a posted pair's buttons."""
    return {c.item.label: c.custom_id for c in posted_with(message)["view"].children}


async def press(bot, cid: str, user=None, message=None):
    """What discord.py does when a button of a message arrives: parse its id, then call it."""
    match = VoteButton.__discord_ui_compiled_template__.fullmatch(cid)
    assert match is not None
    interaction = fake_interaction(bot, user=user, message=message)
    item = await VoteButton.from_custom_id(interaction, None, match)  # type: ignore[arg-type]
    await item.callback(interaction)
    return interaction


def edited(interaction) -> str:
    """The pair message's text after the tap."""
    call = interaction.edit_original_response.await_args
    assert call is not None and call.kwargs["view"] is None  # buttons gone
    return call.kwargs["content"]


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
    assert interaction.response.deferred  # answered before any database work
    assert f"B (#{b}) is better than A (#{a})" in edited(interaction)
    async with session_factory() as s:
        vote = (await s.scalars(select(Vote))).one()
    assert vote.winner_id == b


async def test_refusals_show_privately_and_change_nothing(session_factory, tmp_path):
    run, a, b = await pair(session_factory, tmp_path)
    bot = make_bot(session_factory, tmp_path)
    stranger = await press(bot, custom_id("a", run, a, b), user=fake_member(curator=False))
    assert "role" in replies(stranger)[0] and stranger.response.sent[0]["ephemeral"]
    stranger.edit_original_response.assert_not_awaited()
    alice = fake_member()
    await press(bot, custom_id("a", run, a, b), user=alice)
    twice = await press(bot, custom_id("b", run, a, b), user=alice)
    assert "already voted" in replies(twice)[0]
    twice.edit_original_response.assert_not_awaited()
    await press(bot, custom_id("ra", run, a, b))
    late = await press(bot, custom_id("b", run, a, b))
    assert f"out of date: #{a} was rejected" in edited(late)
    async with session_factory() as s:
        votes = (await s.scalars(select(Vote))).all()
        rejected = await s.get_one(ImageCandidate, a)
    assert len(votes) == 1 and rejected.status is CandidateStatus.rejected


async def test_skip_records_nothing(session_factory, tmp_path):
    run, a, b = await pair(session_factory, tmp_path)
    interaction = await press(make_bot(session_factory, tmp_path), custom_id("s", run, a, b))
    assert "Skipped" in edited(interaction)
    async with session_factory() as s:
        assert (await s.scalars(select(Vote))).all() == []


async def test_a_new_candidate_brings_pairs_at_most_three_open(session_factory, tmp_path):
    bot, channel, run, ids = await run_with_channel(session_factory, tmp_path)
    cog = Notifications(bot)  # the one subscriber to a job's arrival
    done = SchedulerEvent("job_succeeded", "job done", "http://gpu:8188", run_id=run)
    await cog.on_scheduler_event(done)
    await cog.on_scheduler_event(done)
    posted = channel.send.messages
    assert len(posted) == OPEN_PAIRS_PER_RUN == 3
    pairs = set()
    for message in posted:
        assert posted_with(message)["file"].filename.startswith("pair")
        cid = buttons(message)["A better"]
        _, _, _, r, a, b = cid.split(":")
        assert int(r) == run and {int(a), int(b)} <= set(ids)
        pairs.add(frozenset((int(a), int(b))))
    assert len(pairs) == 3  # never the same pair twice at once

    restarted = make_bot(session_factory, tmp_path)  # the limit holds across a restart
    restarted.get_channel = bot.get_channel  # type: ignore[method-assign]
    await post_pairs(restarted, run)
    assert len(posted) == 3


async def test_after_a_vote_the_outcome_shows_and_the_next_pair_follows(
    session_factory, tmp_path
):
    bot, channel, run, _ = await run_with_channel(session_factory, tmp_path)
    await post_pairs(bot, run)
    first = channel.send.messages[0]
    tap = await press(bot, buttons(first)["A better"], message=first)
    assert "is better than" in edited(tap)
    assert len(channel.send.messages) == 4  # one answered, three open again
    async with session_factory() as s:
        posts = (await s.scalars(select(PairPost).order_by(PairPost.id))).all()
        assert (await s.scalars(select(Vote))).one()
    assert posts[0].message_id == first.id and posts[0].answered_at is not None
    assert [p.answered_at is None for p in posts] == [False, True, True, True]


async def test_a_rejection_closes_the_other_open_pairs_of_that_candidate(
    session_factory, tmp_path
):
    bot, channel, run, _ = await run_with_channel(session_factory, tmp_path, candidates=3)
    await post_pairs(bot, run)
    posted = list(channel.send.messages)
    assert len(posted) == 3  # all three pairs of three candidates
    first = posted[0]
    rejected = int(buttons(first)["Reject A"].split(":")[4])
    await press(bot, buttons(first)["Reject A"], message=first)
    others = [m for m in posted[1:] if str(rejected) in buttons(m)["A better"].split(":")[4:]]
    assert len(others) == 1  # of three candidates, one more open pair held it
    call = others[0].edit.await_args
    assert f"#{rejected} was rejected meanwhile" in call.kwargs["content"]
    assert call.kwargs["view"] is None


async def test_a_pair_whose_step_was_approved_meanwhile_says_so(session_factory, tmp_path):
    bot, channel, run, _ids = await run_with_channel(session_factory, tmp_path, 4, step=2)
    await post_pairs(bot, run)
    message = channel.send.messages[0]
    assert posted_with(message)["content"].startswith("Which is better? Step 2:")
    async with session_factory() as s:
        await approve_step(s, run, 2, 1, "bob")
    tap = await press(bot, buttons(message)["B better"], message=message)
    assert "step 2 was approved meanwhile" in edited(tap)
    async with session_factory() as s:
        assert (await s.scalars(select(Vote))).all() == []


async def test_vote_command_gives_a_pair_then_points_at_the_open_ones(session_factory, tmp_path):
    bot, channel, _run, _ = await run_with_channel(session_factory, tmp_path)
    cog = Voting(bot)
    for _ in range(OPEN_PAIRS_PER_RUN):
        interaction = fake_interaction(bot, channel_id=channel.id)
        await invoke(cog.vote, cog, interaction)
        assert interaction.response.deferred
        call = interaction.followup.send.await_args
        assert set(buttons_of(call.kwargs["view"])) >= {"A better", "B better"}
    full = fake_interaction(bot, channel_id=channel.id)
    await invoke(cog.vote, cog, full)
    text = replies(full)[0]
    assert "already waiting for an answer" in text
    assert text.count("https://discord.com/channels/") == OPEN_PAIRS_PER_RUN


def buttons_of(view) -> list[str]:
    return [c.item.label for c in view.children]


async def test_vote_command_refusals(session_factory, tmp_path):
    bot, channel, _run, _ = await run_with_channel(session_factory, tmp_path)
    cog = Voting(bot)
    stranger = fake_interaction(bot, channel_id=channel.id, user=fake_member(curator=False))
    await invoke(cog.vote, cog, stranger)
    assert "role" in replies(stranger)[0]
    nowhere = fake_interaction(bot, channel_id=None)
    await invoke(cog.vote, cog, nowhere, run=999)
    assert "no run #999" in replies(nowhere)[-1]
    async with session_factory() as s:
        assert (await s.scalars(select(PairPost))).all() == []


async def open_posts(session_factory) -> list[int]:
    async with session_factory() as s:
        return list(await s.scalars(select(PairPost.message_id).where(
            PairPost.answered_at.is_(None)).order_by(PairPost.id)))


async def test_a_pair_message_deleted_by_hand_frees_its_place(session_factory, tmp_path):
    bot, channel, run, _ = await run_with_channel(session_factory, tmp_path, candidates=6)
    cog = Voting(bot)
    await post_pairs(bot, run)
    first, second, third = channel.send.messages
    answered = await press(bot, buttons(first)["A better"], message=first)
    assert "is better than" in edited(answered)
    fourth = channel.send.messages[3]
    assert await open_posts(session_factory) == [second.id, third.id, fourth.id]

    await cog.on_raw_message_delete(discord.RawMessageDeleteEvent(
        {"id": 987654321, "channel_id": channel.id}))  # not a pair: nothing changes
    await cog.on_raw_message_delete(discord.RawMessageDeleteEvent(
        {"id": first.id, "channel_id": channel.id}))  # answered: its record stays
    assert await open_posts(session_factory) == [second.id, third.id, fourth.id]
    await cog.on_raw_message_delete(discord.RawMessageDeleteEvent(
        {"id": second.id, "channel_id": channel.id}))
    assert await open_posts(session_factory) == [third.id, fourth.id]
    async with session_factory() as s:  # the answered pair keeps its row
        assert await s.scalar(select(PairPost.answered_at).where(
            PairPost.message_id == first.id)) is not None

    await post_pairs(bot, run)  # the freed place is filled by the next pair
    assert len(await open_posts(session_factory)) == 3
    await cog.on_raw_bulk_message_delete(discord.RawBulkMessageDeleteEvent(
        {"ids": [m.id for m in channel.send.messages], "channel_id": channel.id}))
    assert await open_posts(session_factory) == []


async def test_a_private_pair_that_went_out_of_date_is_closed_through_its_interaction(
    session_factory, tmp_path
):
    """Discord refuses the channel route for an ephemeral message (the fakes too)."""
    bot, channel, run, _ = await run_with_channel(session_factory, tmp_path, candidates=2)
    cog = Voting(bot)
    asked = fake_interaction(bot, channel_id=channel.id)
    await invoke(cog.vote, cog, asked)
    [private] = asked.followup.send.messages
    a = VoteButton.__discord_ui_compiled_template__.fullmatch(
        buttons(private)["A better"])["a"]
    async with session_factory() as s:
        await reject_candidate(s, run, int(a), "someone")
    await post_pairs(bot, run)  # the next offer closes pairs that went out of date
    assert f"#{a} was rejected meanwhile" in private.content
    assert private.components == []  # no live buttons left


async def test_a_tap_on_a_pair_already_answered_is_answered(session_factory, tmp_path):
    """A phone that had not refreshed still shows the buttons the message no longer has."""
    bot, channel, run, _ = await run_with_channel(session_factory, tmp_path, candidates=3)
    await post_pairs(bot, run)
    message = channel.send.messages[0]
    ids = buttons(message)
    first = await tap(bot, message, ids["A better"])
    assert "is better than" in message.content and message.components == []
    late = await tap(bot, message, ids["B better"], user=fake_member(name="bob"))
    [said] = replies(late)
    assert said.startswith("This was already answered: A (#") and "is better than" in said
    assert late.response.sent[0]["ephemeral"]
    async with session_factory() as s:
        assert len((await s.scalars(select(Vote))).all()) == 1
    assert first.response.is_done()


async def test_three_pairs_tapped_at_once_tell_nobody_to_answer_another_first(
    session_factory, tmp_path
):
    bot, channel, run, _ = await run_with_channel(session_factory, tmp_path, candidates=8)
    await post_pairs(bot, run)
    messages = list(channel.send.messages)
    assert len(messages) == OPEN_PAIRS_PER_RUN
    voters = [fake_member(name=n) for n in ("ann", "bob", "cat")]
    taps = await asyncio.gather(*(
        tap(bot, m, buttons(m)["A better"], user=v) for m, v in zip(messages, voters, strict=True)
    ))
    for done in taps:
        assert replies(done) == []  # each saw only its pair's outcome
        assert "is better than" in done.message.content
    async with session_factory() as s:
        assert len((await s.scalars(select(Vote))).all()) == 3
    assert len(channel.send.messages) == 2 * OPEN_PAIRS_PER_RUN  # three new pairs followed
