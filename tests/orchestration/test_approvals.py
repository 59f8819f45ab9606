"""Approval gates (docs/architecture.md, "Approvals")."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select

from db.models import ImageCandidate, PipelineRunStep
from orchestration.approvals import approval_preview, awaiting_approval
from orchestration.errors import Conflict, InvalidInput, NotFound
from orchestration.jobs import ClaimedJob, StoredImage, claim_next_job, complete_job
from orchestration.runs import RunSettings
from tests.committed import approve_step, complete_run, reject_candidate
from tests.factories import add_candidate, make_pipeline, make_run


async def two_parent_step(session, tmp_path):
    """Step 2 of a run: A1 1200, A2 1100, A3 1000 under A; B1 1150, B2 1050, B3 950 under B."""
    await make_pipeline(session, tmp_path, steps=3)
    run = await make_run(session, settings=RunSettings(max_children=3))
    a = await add_candidate(session, run, 1)
    b = await add_candidate(session, run, 1)
    ids = {}
    for name, parent, elo in [("A1", a, 1200), ("A2", a, 1100), ("A3", a, 1000),
                              ("B1", b, 1150), ("B2", b, 1050), ("B3", b, 950)]:
        ids[name] = await add_candidate(session, run, 2, parent, elo=elo)
    return run, ids


async def snapshot(session, run):
    session.expire_all()
    cands = (await session.execute(
        select(ImageCandidate.id, ImageCandidate.advancing, ImageCandidate.status)
        .where(ImageCandidate.run_id == run).order_by(ImageCandidate.id))).all()
    steps = (await session.execute(
        select(PipelineRunStep.step, PipelineRunStep.approved, PipelineRunStep.top_k)
        .where(PipelineRunStep.run_id == run).order_by(PipelineRunStep.step))).all()
    return cands, steps


async def test_global_top_k_across_parents(session, tmp_path):
    run, ids = await two_parent_step(session, tmp_path)
    result = await approve_step(session, run, 2, 3, "curator")
    assert [c.id for c in result.advancing] == [ids["A1"], ids["B1"], ids["A2"]]
    assert result.not_advancing == 3
    session.expire_all()
    advancing = {
        cid for cid, adv in (await session.execute(
            select(ImageCandidate.id, ImageCandidate.advancing).where(ImageCandidate.step == 2)
        )).all() if adv
    }
    assert advancing == {ids["A1"], ids["B1"], ids["A2"]}
    row = await session.get_one(PipelineRunStep, (run, 2))
    assert row.approved and row.approved_by == "curator" and row.top_k == 3
    assert row.approved_at is not None


async def test_ties_break_on_votes_then_id(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=3)
    run = await make_run(session)
    p = await add_candidate(session, run, 1)
    first = await add_candidate(session, run, 2, p, elo=1000, votes=1)
    more_votes = await add_candidate(session, run, 2, p, elo=1000, votes=5)
    await add_candidate(session, run, 2, p, elo=1000, votes=1)
    result = await approve_step(session, run, 2, 2, "curator")
    assert [c.id for c in result.advancing] == [more_votes, first]


async def test_k_larger_than_candidates_approves_all(session, tmp_path):
    run, ids = await two_parent_step(session, tmp_path)
    result = await approve_step(session, run, 2, 50, "curator")
    assert {c.id for c in result.advancing} == set(ids.values())
    assert result.not_advancing == 0


async def test_rejected_candidates_never_advance(session, tmp_path):
    run, ids = await two_parent_step(session, tmp_path)
    await reject_candidate(session, run, ids["A1"], "curator")
    result = await approve_step(session, run, 2, 3, "curator")
    assert [c.id for c in result.advancing] == [ids["B1"], ids["A2"], ids["B2"]]
    a1 = await session.get_one(ImageCandidate, ids["A1"])
    await session.refresh(a1)
    assert a1.advancing is False


@pytest.mark.parametrize(
    ("step", "k", "error", "words"),
    [
        (2, 0, InvalidInput, "k must be at least 1"),
        (2, -3, InvalidInput, "k must be at least 1"),
        (7, 3, NotFound, "there is no step 7"),
        (3, 3, InvalidInput, "final step"),
        (1, 3, Conflict, "needs no approval: it is approved when the run starts"),
    ],
)
async def test_refusals_change_nothing(session, tmp_path, step, k, error, words):
    run, _ = await two_parent_step(session, tmp_path)
    before = await snapshot(session, run)
    with pytest.raises(error, match=words):
        await approve_step(session, run, step, k, "curator")
    await session.rollback()
    assert await snapshot(session, run) == before


async def test_second_approval_refused_and_changes_nothing(session, tmp_path):
    run, _ = await two_parent_step(session, tmp_path)
    await approve_step(session, run, 2, 3, "alice")
    before = await snapshot(session, run)
    with pytest.raises(Conflict, match="already approved .* by alice"):
        await approve_step(session, run, 2, 1, "bob")
    await session.rollback()
    assert await snapshot(session, run) == before


async def test_a_second_approval_names_the_discord_user_by_mention(session, tmp_path):
    run, _ = await two_parent_step(session, tmp_path)
    await approve_step(session, run, 2, 3, "1577401175177822213")
    with pytest.raises(Conflict) as refused:
        await approve_step(session, run, 2, 1, "42")
    assert str(refused.value).endswith("by <@1577401175177822213>.")


async def test_unknown_run_and_completed_run(session, tmp_path):
    run, _ = await two_parent_step(session, tmp_path)
    with pytest.raises(NotFound, match="no run #999"):
        await approve_step(session, 999, 2, 3, "curator")
    await complete_run(session, run)
    with pytest.raises(Conflict, match="completed"):
        await approve_step(session, run, 2, 3, "curator")


async def test_step_without_candidates_is_refused(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=3)
    run = await make_run(session)
    with pytest.raises(Conflict, match="no active candidates"):
        await approve_step(session, run, 2, 3, "curator")


async def test_late_arrival_after_approval_is_not_advancing(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=3)
    run = await make_run(session, settings=RunSettings(max_children=2))
    rng = random.Random(3)
    jobs = []
    while isinstance(job := await claim_next_job(session, rng), ClaimedJob):
        jobs.append(job)
        if len(jobs) < 6:  # keep the last step-2 job in flight
            await complete_job(session, job.job_id, [StoredImage(f"{job.job_id}.png", 0)])
    late = jobs[-1]
    assert late.step == 2
    await approve_step(session, run, 2, 2, "curator")
    [late_id] = await complete_job(session, late.job_id, [StoredImage("late.png", 0)])
    cand = await session.get_one(ImageCandidate, late_id)
    assert cand.advancing is False


async def test_awaiting_approval_once_step_is_full(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=3)
    run = await make_run(session, settings=RunSettings(max_children=2))
    rng = random.Random(1)
    seen = []
    while isinstance(job := await claim_next_job(session, rng), ClaimedJob):
        seen.append(await awaiting_approval(session, run))
        await complete_job(session, job.job_id, [StoredImage(f"{job.job_id}.png", 0)])
    assert all(s == [] for s in seen)  # never while work could still reach step 2
    assert await awaiting_approval(session, run) == [2]
    await approve_step(session, run, 2, 1, "curator")
    assert await awaiting_approval(session, run) == []


async def test_gates_off_never_awaits(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=3)
    run = await make_run(session, settings=RunSettings(gates=False))
    p = await add_candidate(session, run, 1)
    await add_candidate(session, run, 2, p)
    assert await awaiting_approval(session, run) == []


async def test_without_k_the_runs_own_k_advances(session, tmp_path):
    await make_pipeline(session, tmp_path)
    run = await make_run(session, settings=RunSettings(top_k=2))
    p = await add_candidate(session, run, 1)
    ids = [await add_candidate(session, run, 2, p, elo=1000.0 - i) for i in range(4)]
    preview = await approval_preview(session, run, 2)
    assert preview.k == 2 and [c.id for c in preview.top] == ids[:2]
    result = await approve_step(session, run, 2, None, "curator")
    assert result.k == 2 and {c.id for c in result.advancing} == set(ids[:2])
    assert (await session.get_one(PipelineRunStep, (run, 2))).top_k == 2
