"""Read models behind the Discord surface: one candidate with its rank and lineage."""

from __future__ import annotations

import pytest

from db.models import CandidateStatus, ImageCandidate
from orchestration.approvals import approve_step
from orchestration.errors import NotFound
from orchestration.overview import LineageItem, candidate_detail, gallery_page
from orchestration.ratings import reject_candidate
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
