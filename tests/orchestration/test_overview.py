"""Read models behind the Discord surface: one candidate with its rank and lineage, and how
sure a gallery's top k is."""

from __future__ import annotations

import pytest

from app.refits import ratings_settled
from db.models import ImageCandidate
from orchestration.confidence import FEW_VOTES_BELOW, top_k_confidence
from orchestration.errors import NotFound
from orchestration.overview import LineageItem, candidate_detail, gallery_page
from orchestration.pairing import SETTLED_AT
from orchestration.runs import RunSettings
from orchestration.states import CandidateStatus
from tests.committed import approve_step, record_vote, reject_candidate
from tests.factories import add_candidate, make_pipeline, make_run


async def candidate(session, run, step, parent=None, *, seed, elo=1000.0, votes=0) -> int:
    """A candidate with its own seed and file, so a lineage shows which is which."""
    cid = await add_candidate(session, run, step, parent, elo=elo, votes=votes)
    row = await session.get_one(ImageCandidate, cid)
    row.seed = seed
    row.image_path = f"runs/{run}/step{step}/{cid}.png"
    await session.commit()
    return cid


async def test_lineage_over_three_steps(session_factory, tmp_path):
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=3)
        run = await make_run(s)
        root = await candidate(s, run, 1, seed=123, elo=1010)
        await candidate(s, run, 1, seed=5)  # a cousin line, not in the lineage
        middle = await candidate(s, run, 2, root, seed=456, elo=1020, votes=2)
        await approve_step(s, run, 2, 1, "alice")
        leaf = await candidate(s, run, 3, middle, seed=789, elo=1043, votes=4)
        detail = await candidate_detail(s, run, leaf)
        parent = await candidate_detail(s, run, middle)
    assert (detail.run_id, detail.id, detail.step, detail.rank) == (run, leaf, 3, 1)
    assert (detail.elo, detail.votes, detail.seed) == (1043, 4, 789)
    assert detail.status is CandidateStatus.active
    assert detail.advancing is None and parent.advancing is True  # step 3 is not approved
    assert detail.image_path == f"runs/{run}/step3/{leaf}.png"
    assert detail.lineage == [
        LineageItem(root, 1, 123, 1010, f"runs/{run}/step1/{root}.png"),
        LineageItem(middle, 2, 456, 1020, f"runs/{run}/step2/{middle}.png"),
    ]
    assert [g.id for g in detail.chain] == [root, middle, leaf]


async def test_a_step_one_candidate_has_no_ancestors(session_factory, tmp_path):
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=2)
        run = await make_run(s)
        root = await candidate(s, run, 1, seed=1)
        detail = await candidate_detail(s, run, root)
    assert detail.lineage == [] and [g.id for g in detail.chain] == [root]
    assert detail.advancing is True  # step 1 is approved at creation


async def test_rank_is_the_gallery_rank(session_factory, tmp_path):
    """Elo, then more votes, then older first; rejected ones after every active one."""
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=2)
        run = await make_run(s)
        ids = [
            await candidate(s, run, 1, seed=i, elo=elo, votes=votes)
            for i, (elo, votes) in enumerate(
                [(1000, 1), (1100, 0), (1000, 3), (1200, 2), (1000, 1)]
            )
        ]
        await reject_candidate(s, run, ids[3], "alice")
        page = await gallery_page(s, run, 1, 1)
        ranks = {cid: (await candidate_detail(s, run, cid)).rank for cid in ids}
    assert [i.id for i in page.items] == [ids[1], ids[2], ids[0], ids[4], ids[3]]
    assert ranks == {item.id: item.rank for item in page.items}


async def test_unknown_candidate_or_another_run(session_factory, tmp_path):
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=2)
        run = await make_run(s, name="one")
        other = await make_run(s, name="two")
        theirs = await candidate(s, other, 1, seed=1)
        with pytest.raises(NotFound, match=r"no candidate #999999"):
            await candidate_detail(s, run, 999_999)
        with pytest.raises(NotFound, match=rf"#{theirs} is not in run #{run}"):
            await candidate_detail(s, run, theirs)


async def step_two(session, tmp_path, *, n, k):
    """A run whose k is `k`, with `n` candidates at step 2 under one step-1 parent."""
    await make_pipeline(session, tmp_path, steps=3)
    run = await make_run(session, settings=RunSettings(top_k=k))
    parent = await add_candidate(session, run, 1)
    return run, [await add_candidate(session, run, 2, parent) for _ in range(n)]


async def vote(session, run, results):
    """Each (winner, loser) by a different person, through the product; then the refit."""
    for i, (winner, loser) in enumerate(results):
        await record_vote(session, run, winner, loser, f"v{i}")
    await ratings_settled()


async def test_few_votes_give_the_top_k_confidence_and_its_warning(session, tmp_path):
    run, ids = await step_two(session, tmp_path, n=5, k=2)
    await vote(session, run, [(ids[0], ids[1]), (ids[2], ids[3])])
    page = await gallery_page(session, run, 2, 1)
    assert page.active == 5
    assert page.confidence is not None
    assert page.confidence == await top_k_confidence(session, run, 2, 2)  # the run's k
    assert page.confidence.probability < FEW_VOTES_BELOW
    assert page.confidence.few_votes_warning is not None
    assert f"only {round(100 * page.confidence.probability)} %" in (
        page.confidence.few_votes_warning
    )


async def test_many_consistent_votes_settle_the_gallery_top_k(session, tmp_path):
    run, ids = await step_two(session, tmp_path, n=5, k=2)
    top, rest = ids[3:], ids[:3]  # not the oldest: the order has to come from the votes
    # Each of the two beat each of the others 8 times in 9 (a clean sweep leaves the fit more
    # doubt, see top_k_probability).
    won = [(t, r) for t in top for r in rest for _ in range(8)]
    await vote(session, run, won + [(r, t) for t in top for r in rest])
    page = await gallery_page(session, run, 2, 1)
    assert page.confidence == await top_k_confidence(session, run, 2, 2)
    assert page.confidence is not None
    assert set(page.confidence.top_ids) == set(top)
    assert [item.id for item in page.items[:2]] == list(page.confidence.top_ids)
    assert page.confidence.probability >= SETTLED_AT
    assert page.confidence.label.startswith("very likely")
    assert page.confidence.few_votes_warning is None


async def test_the_confidence_is_of_the_k_that_advances(session, tmp_path):
    """An approved step: the k it was approved with; step 1 (approved without one): the run's."""
    run, ids = await step_two(session, tmp_path, n=5, k=3)
    await add_candidate(session, run, 1)
    await vote(session, run, [(ids[0], ids[1]), (ids[2], ids[3]), (ids[4], ids[0])])
    await approve_step(session, run, 2, 2, "alice")
    approved = await gallery_page(session, run, 2, 1)
    first = await gallery_page(session, run, 1, 1)
    assert approved.confidence == await top_k_confidence(session, run, 2, 2)
    assert first.confidence == await top_k_confidence(session, run, 1, 3)
    assert first.confidence is not None and first.confidence.label == (
        "certain (all 2 are in the top 3)"
    )


async def test_no_confidence_without_two_active_candidates(session, tmp_path):
    run, ids = await step_two(session, tmp_path, n=2, k=1)
    await reject_candidate(session, run, ids[0], "alice")
    page = await gallery_page(session, run, 2, 1)
    assert (page.active, page.confidence) == (1, None)
    assert len(page.items) == 2  # the rejected one is still shown, last
    empty = await gallery_page(session, run, 3, 1)
    assert (empty.active, empty.confidence, empty.items) == (0, None, [])


async def test_runs_reads_each_runs_plan_and_counts_once(engine, session_factory, tmp_path):
    """/runs reads every run: the query behind a run's plan and counts is its costliest."""
    from sqlalchemy import event

    from orchestration.overview import run_overviews
    from orchestration.selection import _PLAN_AND_COUNTS

    plan_sql = str(_PLAN_AND_COUNTS.compile(dialect=engine.sync_engine.dialect))
    plan_columns = plan_sql.split("(SELECT")[0]  # the run's own columns, then its counts
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=3)
        for _ in range(3):
            run = await make_run(s)
            await candidate(s, run, 1, seed=run)
    seen: list[str] = []

    def count(conn, cursor, statement, *rest) -> None:
        seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        async with session_factory() as s:
            overviews = await run_overviews(s)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert len(overviews) == 3
    assert sum(statement.startswith(plan_columns) for statement in seen) == 3
