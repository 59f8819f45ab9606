"""/approve as a use case: the preview changes nothing, the approval is one transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import select

import app.refits
from app.approvals import approve, preview_approval
from app.context import App, RunRef
from db.models import ImageCandidate, PipelineRunStep
from orchestration.errors import Conflict
from orchestration.runs import RunSettings
from tests.committed import record_vote
from tests.factories import add_candidate, make_pipeline, make_run


async def stored(session_factory, run: int) -> list[tuple[int, float, int, bool | None]]:
    async with session_factory() as s:
        return [tuple(r) for r in await s.execute(
            select(ImageCandidate.id, ImageCandidate.elo, ImageCandidate.votes,
                   ImageCandidate.advancing)
            .where(ImageCandidate.run_id == run).order_by(ImageCandidate.id))]


async def voted_step(session_factory, tmp_path) -> tuple[int, list[int]]:
    """Step 2 with votes whose refit is still waiting (a stop could not wait it out either)."""
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=3)
        run = await make_run(s, settings=RunSettings(max_children=3, top_k=1))
        parent = await add_candidate(s, run, 1)
        ids = [await add_candidate(s, run, 2, parent) for _ in range(3)]
        await record_vote(s, run, ids[2], ids[0], "alice")
        await record_vote(s, run, ids[2], ids[1], "alice")
    return run, ids


async def test_the_preview_fits_afresh_and_stores_nothing(session_factory, tmp_path, monkeypatch):
    monkeypatch.setattr(app.refits, "REFIT_DELAY", 600.0)
    run, ids = await voted_step(session_factory, tmp_path)
    before = await stored(session_factory, run)
    assert {elo for _, elo, _, _ in before} == {1000.0}  # the votes are not in the ratings yet

    shown = await preview_approval(App(session_factory), RunRef(run), 2, 1)

    assert [c.id for c in shown.preview.top] == [ids[2]]  # the fresh fit decides
    assert await stored(session_factory, run) == before  # and nothing of it was kept
    await app.refits.finish_refits()


async def test_a_refused_approval_leaves_everything_as_it_was(session_factory, tmp_path,
                                                             monkeypatch):
    monkeypatch.setattr(app.refits, "REFIT_DELAY", 600.0)
    run, _ids = await voted_step(session_factory, tmp_path)
    before = await stored(session_factory, run)
    with pytest.raises(Conflict, match="Step 1 .* needs no approval"):
        await approve(App(session_factory), run, 1, 1, "carol", lambda _: False)
    assert await stored(session_factory, run) == before
    await app.refits.finish_refits()


async def test_an_approval_wakes_the_scheduler_after_its_commit(session_factory, tmp_path):
    run, ids = await voted_step(session_factory, tmp_path)
    seen: list[bool] = []

    def wake() -> None:  # what the scheduler would find when it looks
        seen.append(True)

    done = await approve(App(session_factory, wake=wake), run, 2, 1, "carol", lambda _: False)
    assert [c.id for c in done.result.advancing] == [ids[2]]
    assert seen == [True]
    async with session_factory() as s:
        assert (await s.get_one(PipelineRunStep, (run, 2))).approved
    assert done.news.channel_id is None  # no channel: nothing taken for it
    await app.refits.finish_refits()
