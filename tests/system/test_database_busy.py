"""A database held by another program (a second process in a write transaction, as a `sqlite3`
shell left open does): commands answer within a bounded time with one plain line, a vote is
tried again and recorded once the lock clears, and a vote that cannot be recorded says so."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from unittest.mock import AsyncMock, MagicMock

import discord
import pytest
from sqlalchemy import func, select

import app.transaction
import db.engine
from bot.app import UNEXPECTED
from bot.pairs import VoteButton, custom_id
from cogs.runs import Runs
from db.engine import create_engine, create_session_factory
from db.models import PairPost, PipelineRun, Vote
from tests.cogs.test_voting import edited, press
from tests.db_lock import held_lock
from tests.factories import add_candidate, make_pipeline, make_run
from tests.helpers import fake_interaction, fake_text_channel, invoke, make_bot, replies

BUSY_TIMEOUT = 0.2  # what each statement waits for the lock here (5 s in the product)
UNCHANGED = (
    "The database is busy (another program is holding it), so nothing was changed. "
    "Try again in a minute."
)
VOTE_LOST = (
    "The database is busy (another program is holding it), so your vote was not recorded. "
    "Tap again in a minute."
)


@pytest.fixture
async def sessions(db_url, monkeypatch):
    """The bot's sessions on an engine that waits BUSY_TIMEOUT for a lock."""
    monkeypatch.setattr(db.engine, "BUSY_TIMEOUT", BUSY_TIMEOUT)
    engine = create_engine(db_url)
    yield create_session_factory(engine)
    await engine.dispose()


async def open_pair(sessions, tmp_path) -> tuple[int, int, int]:
    """A run with two candidates at step 1, their pair posted; the bot's connection is open."""
    async with sessions() as s:
        await make_pipeline(s, tmp_path)
        run = await make_run(s)
        a, b = await add_candidate(s, run, 1), await add_candidate(s, run, 1)
        s.add(PairPost(run_id=run, step=1, a_id=a, b_id=b))
        await s.commit()
    return run, a, b


async def counts(db_url) -> tuple[int, int]:
    """(votes, open pairs), read on a connection of its own once the lock is gone."""
    engine = create_engine(db_url)
    try:
        async with create_session_factory(engine)() as s:
            votes = await s.scalar(select(func.count()).select_from(Vote))
            open_posts = await s.scalar(select(func.count()).select_from(PairPost).where(
                PairPost.answered_at.is_(None)))
        return votes or 0, open_posts or 0
    finally:
        await engine.dispose()


class Heard(logging.Handler):
    """Sets `event` once a log line containing `text` is written."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.INFO)
        self.text, self.event = text, asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@pytest.mark.parametrize("exclusive", [False, True],
                         ids=["write-transaction", "exclusive-locking-mode"])
async def test_runs_under_a_held_lock_answers_within_the_bound(
    sessions, db_url, tmp_path, exclusive, caplog
):
    bot = make_bot(sessions, tmp_path)
    async with sessions() as s:
        await make_pipeline(s, tmp_path)
        await make_run(s)
    if exclusive:
        # A program in exclusive locking mode gets the file only while nobody has it open, so
        # here it took it before the bot's (next) connection.
        await sessions.kw["bind"].dispose()
    async with held_lock(db_url, exclusive=exclusive):
        interaction = fake_interaction(bot)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with caplog.at_level(logging.WARNING):
            async with asyncio.timeout(10):
                await invoke(Runs.runs, Runs(bot), interaction)
        took = loop.time() - started
    assert interaction.response.deferred_with.get("ephemeral")  # Discord was answered first
    assert replies(interaction) == [UNCHANGED]
    assert interaction.followup.send.await_args.kwargs["ephemeral"] is True
    assert took < 5.0  # one BUSY_TIMEOUT, with room for a busy machine; it was 30 s
    assert any("locked by another program" in r.getMessage() for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records)  # no traceback for a known condition


async def test_a_command_that_saved_part_of_its_work_does_not_say_nothing_changed(
    sessions, db_url, tmp_path
):
    """/run start creates the run, then the channel; the database is taken in between, so the
    channel cannot be recorded. The person must not read "nothing was changed"."""
    bot = make_bot(sessions, tmp_path)
    async with sessions() as s:
        await make_pipeline(s, tmp_path)
    interaction = fake_interaction(bot)
    async with contextlib.AsyncExitStack() as stack:

        async def create_text_channel(name: str, **_: Any) -> Any:
            await stack.enter_async_context(held_lock(db_url))  # taken while Discord works
            return fake_text_channel(name)

        interaction.guild.create_text_channel.side_effect = create_text_channel
        async with asyncio.timeout(10):
            await invoke(Runs.start, Runs(bot), interaction, pipeline="test-pipeline",
                         name="Sofa", prompt="a cat")
    [line] = replies(interaction)
    assert line.startswith("The database is busy (another program is holding it), so ")
    assert "nothing was changed" not in line
    assert "this stopped after run #1 “Sofa” was started; that stands" in line
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(PipelineRun)) == 1


async def test_a_vote_waits_for_a_lock_that_clears_and_is_recorded(
    sessions, db_url, tmp_path, monkeypatch
):
    monkeypatch.setattr(app.transaction, "WRITE_RETRY_SECONDS", 20.0)
    run, a, b = await open_pair(sessions, tmp_path)
    bot = make_bot(sessions, tmp_path)
    retried = Heard("trying again (attempt 2)")  # tried twice, held both times
    log = logging.getLogger("app.transaction")
    log.addHandler(retried)
    log.setLevel(logging.INFO)
    try:
        async with held_lock(db_url) as lock:
            tap = asyncio.create_task(press(bot, custom_id("a", run, a, b)))
            async with asyncio.timeout(10):
                await retried.event.wait()
            assert not tap.done()
            await lock.release()
            async with asyncio.timeout(10):
                interaction = await tap
    finally:
        log.removeHandler(retried)
        log.setLevel(logging.NOTSET)
    assert interaction.response.deferred
    assert f"A (#{a}) is better than B (#{b})" in edited(interaction)
    assert replies(interaction) == []  # nothing private: the vote simply counted
    assert await counts(db_url) == (1, 0)


async def test_a_vote_held_off_past_the_bound_says_so_and_records_nothing(
    sessions, db_url, tmp_path, monkeypatch
):
    monkeypatch.setattr(app.transaction, "WRITE_RETRY_SECONDS", 1.0)
    run, a, b = await open_pair(sessions, tmp_path)
    bot = make_bot(sessions, tmp_path)
    loop = asyncio.get_running_loop()
    async with held_lock(db_url):
        started = loop.time()
        async with asyncio.timeout(10):
            interaction = await press(bot, custom_id("b", run, a, b))
        took = loop.time() - started
    assert interaction.response.deferred  # Discord was answered before the wait
    assert replies(interaction) == [VOTE_LOST]
    assert interaction.followup.send.await_args.kwargs["ephemeral"] is True
    interaction.edit_original_response.assert_not_awaited()  # the pair stays open
    # Given up once no pause fits before the bound: tried for 0.75 s to 1 s, plus the last wait.
    assert 1.0 - app.transaction.RETRY_PAUSE <= took < 1.0 + 5.0
    assert await counts(db_url) == (0, 1)

    again = await press(bot, custom_id("b", run, a, b))  # the lock is gone: a tap counts
    assert f"B (#{b}) is better than A (#{a})" in edited(again)
    assert await counts(db_url) == (1, 0)


async def test_an_unexpected_failure_of_a_button_is_logged_and_told(
    sessions, tmp_path, caplog
):
    """discord.py only logs what a DynamicItem's callback raises; the bot's boundary answers
    the person too, and logs it once with its traceback and the button."""
    run, a, b = await open_pair(sessions, tmp_path)
    bot = make_bot(sessions, tmp_path)
    interaction = fake_interaction(bot)
    expired = discord.NotFound(MagicMock(status=404, reason="Not Found"),
                               {"code": 10062, "message": "Unknown interaction"})
    interaction.response.defer = AsyncMock(side_effect=expired)
    match = VoteButton.__discord_ui_compiled_template__.fullmatch(custom_id("a", run, a, b))
    assert match is not None
    button = await VoteButton.from_custom_id(interaction, None, match)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR):
        await button.callback(interaction)  # raises nothing
    assert replies(interaction) == [UNEXPECTED]
    [record] = [r for r in caplog.records if r.exc_info]
    assert record.exc_info is not None and record.exc_info[1] is expired
    assert custom_id("a", run, a, b) in record.getMessage()
