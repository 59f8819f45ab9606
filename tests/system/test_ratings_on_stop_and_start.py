"""Ratings are never stale after a stop: a clean stop stores the refits still waiting, and a
start refits every step whose votes are newer than its stored ratings (what a kill leaves)."""

from __future__ import annotations

import asyncio
import logging
from unittest.mock import AsyncMock

import pytest
from sqlalchemy import select

import app.refits
import orchestration.refits
from bot.app import CuratorBot
from bot.pairs import custom_id
from db.models import ImageCandidate, Vote
from orchestration.refits import step_ratings
from tests.cogs.test_voting import press
from tests.committed import record_vote, refit_step, reject_candidate
from tests.factories import add_candidate, make_pipeline, make_run
from tests.helpers import make_bot


async def step_with_candidates(session_factory, tmp_path, steps: int = 2) -> tuple[int, list[int]]:
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=steps)
        run = await make_run(s)
        return run, [await add_candidate(s, run, 1) for _ in range(4)]


async def assert_stored_is_a_fresh_fit(session_factory, run: int, step: int) -> None:
    async with session_factory() as s:
        fit = await step_ratings(s, run, step)
        rows = (await s.execute(select(ImageCandidate.id, ImageCandidate.elo,
                                       ImageCandidate.votes).where(
            ImageCandidate.run_id == run, ImageCandidate.step == step))).all()
    assert fit.ids  # there are votes to fit
    for cid, elo, votes in rows:
        assert elo == pytest.approx(fit.elo(cid), abs=1e-9)
        assert votes == fit.votes(cid)


def count_refits(monkeypatch) -> list[tuple[int, int]]:
    """Which (run, step) the start refits: a spy that calls the real refit."""
    refitted: list[tuple[int, int]] = []
    real = orchestration.refits.refit_step

    async def spy(session, run_id: int, step: int):  # type: ignore[no-untyped-def]
        refitted.append((run_id, step))
        return await real(session, run_id, step)

    monkeypatch.setattr(orchestration.refits, "refit_step", spy)
    return refitted


async def start(bot: CuratorBot) -> None:
    """The bot's start-up as login runs it, with Discord's command sync faked."""
    bot.tree.sync = AsyncMock(return_value=[])  # type: ignore[method-assign]
    await bot.setup_hook()


async def test_a_clean_stop_stores_the_ratings_of_the_last_votes(
    session_factory, tmp_path, monkeypatch
):
    monkeypatch.setattr(app.refits, "REFIT_DELAY", 600.0)  # a stop cannot wait it out
    run, ids = await step_with_candidates(session_factory, tmp_path)
    bot = make_bot(session_factory, tmp_path)
    for a, b in [(0, 1), (2, 3), (0, 2), (1, 3)]:
        tap = await press(bot, custom_id("a", run, ids[a], ids[b]))
        tap.edit_original_response.assert_awaited()
    async with asyncio.timeout(10):
        await bot.close()
    await assert_stored_is_a_fresh_fit(session_factory, run, 1)


async def test_a_start_refits_the_steps_a_kill_left_stale_and_only_those(
    session_factory, tmp_path, monkeypatch, caplog
):
    run, ids = await step_with_candidates(session_factory, tmp_path)
    async with session_factory() as s:
        second = await make_run(s, name="other")
        others = [await add_candidate(s, second, 1) for _ in range(3)]
        for a, b in [(0, 1), (1, 2)]:  # this run's refit ran before the kill
            await record_vote(s, second, others[a], others[b], "alice")
    await app.refits.ratings_settled()
    async with session_factory() as s:
        # Nine votes committed, the process killed before their refit: ratings untouched.
        for voter in ("alice", "bob", "carol"):
            for a, b in [(0, 1), (0, 2), (3, 1)]:
                low, high = sorted((ids[a], ids[b]))
                s.add(Vote(run_id=run, step=1, low_id=low, high_id=high, winner_id=ids[a],
                           voter=voter))
        await s.commit()
        stale = (await s.execute(select(ImageCandidate.elo, ImageCandidate.votes).where(
            ImageCandidate.id.in_(ids)))).all()
    assert set(stale) == {(1000.0, 0)}  # what /gallery showed after such a kill

    refitted = count_refits(monkeypatch)
    bot = make_bot(session_factory, tmp_path)
    with caplog.at_level(logging.WARNING, logger="orchestration.refits"):
        await start(bot)
    try:
        assert refitted == [(run, 1)]
        await assert_stored_is_a_fresh_fit(session_factory, run, 1)
        await assert_stored_is_a_fresh_fit(session_factory, second, 1)
        assert any(f"run {run} step 1" in r.getMessage() for r in caplog.records)
    finally:
        await bot.close()

    again = make_bot(session_factory, tmp_path)
    await start(again)  # nothing stale now: no fit at all
    try:
        assert refitted == [(run, 1)]
    finally:
        await again.close()


async def test_a_rejected_candidate_does_not_make_its_step_look_stale(
    session_factory, tmp_path, monkeypatch
):
    """Votes on a candidate rejected later still count in its step's fit."""
    run, ids = await step_with_candidates(session_factory, tmp_path)
    async with session_factory() as s:
        await record_vote(s, run, ids[0], ids[1], "alice")
        await record_vote(s, run, ids[1], ids[2], "alice")
        await reject_candidate(s, run, ids[1], "bob")
        await refit_step(s, run, 1)
    await app.refits.ratings_settled()
    refitted = count_refits(monkeypatch)
    async with session_factory() as s:
        assert await orchestration.refits.refit_stale_steps(s) == []
    assert refitted == []
