"""The one way a use case holds the database, and the rules never committing for it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.context import App
from app.transaction import look, transaction
from db.models import PipelineRun, Vote
from orchestration.votes import record_vote
from tests.factories import add_candidate, make_pipeline, make_run


async def test_a_transaction_commits_and_a_look_changes_nothing(session_factory, tmp_path):
    async with session_factory() as s:
        await make_pipeline(s, tmp_path)
        run = await make_run(s, name="before")
    use = App(session_factory)
    async with look(use) as session:
        (await session.get_one(PipelineRun, run)).name = "looked"
    async with session_factory() as s:
        assert (await s.get_one(PipelineRun, run)).name == "before"
    with pytest.raises(RuntimeError):
        async with transaction(use) as session:
            (await session.get_one(PipelineRun, run)).name = "failed"
            await session.flush()
            raise RuntimeError
    async with transaction(use) as session:
        (await session.get_one(PipelineRun, run)).name = "after"
    async with session_factory() as s:
        assert (await s.get_one(PipelineRun, run)).name == "after"


async def test_a_rule_leaves_the_transaction_to_its_caller(session_factory, tmp_path):
    """A vote recorded in a transaction that is then rolled back is not there: the rule did not
    commit on its caller's behalf, neither the vote nor what the caller had pending."""
    async with session_factory() as s:
        await make_pipeline(s, tmp_path)
        run = await make_run(s, name="before")
        a, b = await add_candidate(s, run, 1), await add_candidate(s, run, 1)
    async with session_factory() as s:
        (await s.get_one(PipelineRun, run)).name = "pending"
        await s.flush()
        await record_vote(s, run, a, b, "alice")
        await s.rollback()
    async with session_factory() as s:
        assert (await s.scalars(select(Vote))).all() == []
        assert (await s.get_one(PipelineRun, run)).name == "before"
