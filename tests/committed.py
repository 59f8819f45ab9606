"""The rules as a use case runs them: each call one transaction, committed when it returns and
rolled back when it raises (`app.transaction`), and a vote's step refitted after its commit.

For tests that set up or act through the rules directly, with the test's own session.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.refits import schedule_refit
from orchestration import approvals, notices, overview, pair_posts, pipelines, refits, runs, votes
from orchestration.votes import VoteResult

T = TypeVar("T")


def committed(rule: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    @functools.wraps(rule)
    async def run(session: AsyncSession, *args: Any, **kwargs: Any) -> T:
        try:
            result = await rule(session, *args, **kwargs)
        except BaseException:
            await session.rollback()
            raise
        await session.commit()
        return result

    return run


async def record_vote(
    session: AsyncSession, run_id: int, winner_id: int, loser_id: int, voter: str
) -> VoteResult:
    result = await committed(votes.record_vote)(session, run_id, winner_id, loser_id, voter)
    assert isinstance(session.bind, AsyncEngine)
    schedule_refit(session.bind, run_id, result.step)
    return result


reject_candidate = committed(votes.reject_candidate)
approve_step = committed(approvals.approve_step)
complete_run = committed(runs.complete_run)
resume_run = committed(runs.resume_run)
create_run = committed(runs.create_run)
set_run_channel = committed(overview.set_run_channel)
plan_pairs = committed(pair_posts.plan_pairs)
answer_pair = committed(pair_posts.answer_pair)
mark_sent = committed(pair_posts.mark_sent)
forget_post = committed(pair_posts.forget_post)
import_pipeline = committed(pipelines.import_pipeline)
due_notices = committed(notices.due_notices)
refit_step = committed(refits.refit_step)
hold_run = committed(runs.hold_run)
