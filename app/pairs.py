"""Pairs to vote on: a tap on one, a pair asked for with /vote, and each pair's message."""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass

from app.context import App, RunRef
from app.news import Reachable, RunNews, run_news
from app.refits import votes_committed
from app.transaction import retry_while_busy, transaction
from orchestration.overview import run_in_question
from orchestration.pair_posts import (
    Action,
    PairAnswer,
    PairPlan,
    answer_pair,
    forget_deleted_messages,
    forget_post,
    mark_sent,
    plan_pairs,
)
from orchestration.votes import VoteResult, record_vote

# What a tap that could not be recorded was, for the line after orchestration.busy.BUSY.
NOT_RECORDED: dict[Action, str] = {
    "a": "your vote", "b": "your vote", "s": "the skip",
    "ra": "the rejection", "rb": "the rejection",
}


@dataclass(frozen=True)
class Answered:
    answer: PairAnswer
    news: RunNews  # the pairs that take its place


async def answer(
    app: App,
    run_id: int,
    action: Action,
    a: int,
    b: int,
    voter: str,
    reachable: Reachable,
    *,
    message_id: int | None = None,
) -> Answered:
    """A tap on a pair: the answer and the close of its pair in one transaction, tried again
    while another program holds the database; then the pairs that follow."""
    found = await retry_while_busy(
        app,
        functools.partial(
            answer_pair, run_id=run_id, action=action, a=a, b=b, voter=voter,
            message_id=message_id,
        ),
        refusal=f"{NOT_RECORDED[action]} was not recorded. Tap again in a minute",
        what=f"run {run_id}: a tap on #{a} vs #{b}",
    )
    if found.vote is not None:
        votes_committed(app, run_id, found.vote.step)
    if found.counted and action in ("ra", "rb"):
        app.wake()  # a run short of its final candidates again has work; a vote makes none
    return Answered(found, await run_news(app, run_id, reachable, voter=voter, notices=False))


@dataclass(frozen=True)
class Offer:
    run_id: int
    plan: PairPlan


async def offer_pair(app: App, ref: RunRef, voter: str) -> Offer:
    """One pair reserved for the person who asked (or why there is none)."""
    async with transaction(app) as session:
        run_id = await run_in_question(session, ref.run_id, ref.channel_id)
        return Offer(run_id, await plan_pairs(session, run_id, voter, want=1))


async def pair_sent(app: App, post_id: int, channel_id: int, message_id: int) -> None:
    async with transaction(app) as session:
        await mark_sent(session, post_id, channel_id, message_id)


async def pair_not_sent(app: App, post_id: int) -> None:
    """Its message never went out: the place it held is free."""
    async with transaction(app) as session:
        await forget_post(session, post_id)


async def messages_deleted(app: App, message_ids: Collection[int]) -> int:
    """Pair messages deleted by hand stop holding places; how many open pairs that freed."""
    async with transaction(app) as session:
        return await forget_deleted_messages(session, message_ids)


async def vote(app: App, run_id: int, winner_id: int, loser_id: int, voter: str) -> VoteResult:
    """A vote outside a posted pair (the demo's voter, an import of votes)."""
    async with transaction(app) as session:
        result = await record_vote(session, run_id, winner_id, loser_id, voter)
    votes_committed(app, run_id, result.step)
    return result
