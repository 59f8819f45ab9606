"""select_next_job and claim_next_job (docs/architecture.md, "Choosing the next job")."""

from __future__ import annotations

import math
import random
from collections import Counter

from sqlalchemy import func, select

from db.engine import create_engine, create_session_factory
from db.models import ImageCandidate, Job
from orchestration.jobs import ClaimedJob, StoredImage, claim_next_job, complete_job, end_job
from orchestration.runs import RunSettings
from orchestration.selection import Mode, select_next_job
from orchestration.states import JobStatus, SelectionOrder
from tests.committed import approve_step, complete_run, hold_run, resume_run
from tests.factories import add_candidate, make_pipeline, make_run

GATES_OFF = RunSettings(gates=False)


async def claim(session, rng) -> ClaimedJob:
    got = await claim_next_job(session, rng)
    assert isinstance(got, ClaimedJob), got
    return got


async def finish(session, job: ClaimedJob, images: int = 1) -> list[int]:
    return await complete_job(
        session, job.job_id, [StoredImage(f"x/{job.job_id}-{i}.png", i) for i in range(images)]
    )


async def test_per_run_work_not_global_count(session, tmp_path):
    """Run A: 1 candidate at step 1, none at step 2. Run B complete. A still gets work."""
    await make_pipeline(session, tmp_path, steps=2)
    run_a = await make_run(session, name="A", settings=RunSettings(max_children=1))
    run_b = await make_run(session, name="B", settings=RunSettings(max_children=1))
    await add_candidate(session, run_a, 1)
    b1 = await add_candidate(session, run_b, 1)
    await add_candidate(session, run_b, 2, b1)
    await add_candidate(session, run_b, 2, b1)  # B holds as many as a global count would need
    await complete_run(session, run_b)

    decision = await select_next_job(session, random.Random(1))
    assert decision.mode is Mode.child_generation
    assert decision.run_id == run_a
    assert decision.step == 2


async def test_no_runs_means_no_work(session, tmp_path):
    await make_pipeline(session, tmp_path)
    decision = await select_next_job(session, random.Random(1))
    assert decision.mode is Mode.no_work
    assert "no running runs" in decision.reason


async def test_round_robin_and_cursor_survives_restart(session, tmp_path, db_url):
    await make_pipeline(session, tmp_path)
    runs = [await make_run(session, name=n) for n in "ABC"]
    rng = random.Random(7)
    got = [(await claim(session, rng)).run_id for _ in range(4)]
    assert got == [runs[0], runs[1], runs[2], runs[0]]
    await session.commit()

    # A fresh engine and session on the same file carry on where the rotation stood.
    engine = create_engine(db_url)
    try:
        async with create_session_factory(engine)() as fresh:
            assert (await claim(fresh, random.Random(3))).run_id == runs[1]
    finally:
        await engine.dispose()


async def test_round_robin_skips_runs_without_work(session, tmp_path):
    await make_pipeline(session, tmp_path)
    a = await make_run(session, name="A")
    b = await make_run(session, name="B", settings=RunSettings(budget=1))
    c = await make_run(session, name="C")
    rng = random.Random(2)
    first = [await claim(session, rng) for _ in range(3)]
    assert [j.run_id for j in first] == [a, b, c]
    # B is at its budget (one job in flight): the rotation passes it by, and says so.
    nxt = await claim(session, rng)
    assert nxt.run_id == a
    nxt = await claim(session, rng)
    assert nxt.run_id == c
    assert f"skipped: {b}" in nxt.reason


async def test_runs_a_worker_cannot_serve_are_passed_by_and_keep_their_turn(session, tmp_path):
    await make_pipeline(session, tmp_path)
    a, b, c = [await make_run(session, name=n) for n in "ABC"]
    rng = random.Random(5)
    got = [(await claim_next_job(session, rng, frozenset({b}))) for _ in range(3)]
    assert [j.run_id for j in got if isinstance(j, ClaimedJob)] == [a, c, a]
    assert (await claim(session, rng)).run_id == b  # another worker: B's turn comes up
    none = await claim_next_job(session, rng, frozenset({a, b, c}))
    assert not isinstance(none, ClaimedJob) and none.mode is Mode.no_work
    assert none.reason == "no run has work (3 running, 3 this worker cannot serve)"


async def test_children_in_flight_count_toward_n(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=2)
    run = await make_run(session, settings=RunSettings(max_children=2))
    rng = random.Random(5)
    base = [await claim(session, rng) for _ in range(2)]
    assert all(j.mode.value == "base_generation" for j in base)
    # Both base jobs are in flight: step 1 is full, and nothing can grow yet.
    assert (await select_next_job(session, rng)).mode is Mode.no_work
    parents = [(await finish(session, j))[0] for j in base]

    jobs = [await claim(session, rng) for _ in range(4)]
    assert {j.parent_id for j in jobs} == set(parents)
    assert Counter(j.parent_id for j in jobs) == {parents[0]: 2, parents[1]: 2}
    # Every parent has 2 children in flight: no more work although no child exists yet.
    assert (await select_next_job(session, rng)).mode is Mode.no_work

    # A failed child frees its place; a finished one keeps it.
    await end_job(session, jobs[0].job_id, "boom")
    await finish(session, jobs[1])
    again = await claim(session, rng)
    assert again.parent_id == jobs[0].parent_id
    assert (await select_next_job(session, rng)).mode is Mode.no_work

    for j in jobs[1:]:
        await finish(session, j)
    await finish(session, again)
    per_parent = dict(
        (
            await session.execute(
                select(ImageCandidate.parent_id, func.count())
                .where(ImageCandidate.run_id == run, ImageCandidate.step == 2)
                .group_by(ImageCandidate.parent_id)
            )
        )
        .tuples()
        .all()
    )
    assert per_parent == {parents[0]: 2, parents[1]: 2}


async def test_multi_image_job_counts_each_image(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=2)
    await make_run(session, settings=RunSettings(max_children=3))
    rng = random.Random(1)
    base = [await claim(session, rng) for _ in range(3)]
    for j in base:
        await finish(session, j)
    child = await claim(session, rng)
    await finish(session, child, images=3)  # one job, three children: the parent is full
    parent = await session.get_one(ImageCandidate, child.parent_id)
    await session.refresh(parent)
    assert parent.child_slots == 3
    for _ in range(6):
        assert (await claim(session, rng)).parent_id != child.parent_id


async def test_breadth_first_fills_each_step_before_the_next(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=3)
    await make_run(session, settings=RunSettings(max_children=2, gates=False, target_leaves=8))
    rng = random.Random(11)
    steps = []
    for _ in range(2 + 4 + 8):
        job = await claim(session, rng)
        steps.append(job.step)
        await finish(session, job)
    assert steps == [1] * 2 + [2] * 4 + [3] * 8
    assert (await select_next_job(session, rng)).mode is Mode.no_work


async def finish_first_run(session, tmp_path) -> int:
    await make_pipeline(session, tmp_path, steps=3)
    return await make_run(
        session,
        settings=RunSettings(gates=False, order=SelectionOrder.finish_first, max_children=5),
    )


class Fixed(random.Random):
    """Draws the same number every time: pins the raffle's ticket."""

    def __init__(self, u: float) -> None:
        super().__init__(0)
        self.u = u

    def random(self) -> float:
        return self.u


def just_below(u: float) -> float:
    return math.nextafter(u, 0.0)


async def test_finish_first_classic_raffle(session, tmp_path):
    """Step 2 holds A (1200) and B (800), step 1 holds C (1500): only step 2 draws, and A holds
    the tickets [0, 0.6) of a uniform draw, so A wins 60 % of draws and B the rest."""
    run = await finish_first_run(session, tmp_path)
    c = await add_candidate(session, run, 1, elo=1500)
    a = await add_candidate(session, run, 2, c, elo=1200)
    b = await add_candidate(session, run, 2, c, elo=800)
    for u, winner in ((0.0, a), (just_below(0.6), a), (0.6, b), (just_below(1.0), b)):
        decision = await select_next_job(session, Fixed(u))
        assert decision.mode is Mode.child_generation and decision.step == 3
        assert decision.parent_id == winner, u
        assert decision.reason.endswith("won raffle among 2")


async def test_finish_first_makes_base_only_when_nothing_can_grow(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=2)
    await make_run(
        session,
        settings=RunSettings(
            gates=False, order=SelectionOrder.finish_first, max_children=2, target_leaves=4
        ),
    )
    rng = random.Random(3)
    modes = []
    for _ in range(6):
        job = await claim(session, rng)
        modes.append((job.mode.value, job.step))
        await finish(session, job)
    # Each base image is grown to its two children before the next base image is made.
    assert modes == [
        ("base_generation", 1),
        ("child_generation", 2),
        ("child_generation", 2),
        ("base_generation", 1),
        ("child_generation", 2),
        ("child_generation", 2),
    ]


async def test_raffle_weight_floor_of_one(session, tmp_path):
    """max(-500, 1) = 1, like the others: each of the four holds a quarter of the tickets."""
    await make_pipeline(session, tmp_path, steps=2)
    run = await make_run(session, settings=RunSettings(gates=False, max_children=4))
    low = await add_candidate(session, run, 1, elo=-500)
    others = [await add_candidate(session, run, 1, elo=1) for _ in range(3)]  # step 1 is full
    slices = [(0.0, low), (just_below(0.25), low), (0.25, others[0]), (just_below(0.5), others[0]),
              (0.5, others[1]), (0.75, others[2]), (just_below(1.0), others[2])]
    for u, winner in slices:
        decision = await select_next_job(session, Fixed(u))
        assert decision.parent_id == winner, u
        assert decision.reason.endswith("won raffle among 4")


async def test_deficit_base_generation_until_t_then_no_work(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=2)
    run = await make_run(
        session, settings=RunSettings(gates=False, max_children=2, target_leaves=6)
    )
    rng = random.Random(4)
    log = []
    while True:
        got = await claim_next_job(session, rng)
        if not isinstance(got, ClaimedJob):
            assert got.mode is Mode.no_work
            break
        log.append((got.step, "deficit" in got.reason))
        await finish(session, got)
        assert len(log) < 50
    finals = await session.scalar(
        select(func.count()).where(ImageCandidate.run_id == run, ImageCandidate.step == 2)
    )
    # 2 base, 4 children: 4 < T. Deficit lets N = 2 more base images be made, and each gets
    # its N children: T is met in whole rounds, so the final step ends at 8.
    assert finals == 8
    assert log == [(1, False)] * 2 + [(2, False)] * 4 + [(1, True), (1, False)] + [(2, False)] * 4


async def test_rejected_final_candidates_reopen_deficit(session, tmp_path):
    from tests.committed import reject_candidate

    await make_pipeline(session, tmp_path, steps=2)
    run = await make_run(
        session, settings=RunSettings(gates=False, max_children=1, target_leaves=1)
    )
    rng = random.Random(4)
    for _ in range(2):
        await finish(session, await claim(session, rng))
    assert (await select_next_job(session, rng)).mode is Mode.no_work
    leaf = await session.scalar(select(ImageCandidate.id).where(ImageCandidate.step == 2))
    assert leaf is not None
    await reject_candidate(session, run, leaf, "tester")
    decision = await select_next_job(session, rng)
    assert decision.mode is Mode.base_generation and decision.deficit


async def test_budget_reached_means_no_work(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=2)
    await make_run(session, settings=RunSettings(gates=False, budget=3, max_children=2))
    rng = random.Random(4)
    jobs = [await claim(session, rng) for _ in range(2)]
    for j in jobs:
        await finish(session, j)
    third = await claim(session, rng)  # 2 made + 1 in flight = budget
    decision = await select_next_job(session, rng)
    assert decision.mode is Mode.no_work
    await end_job(session, third.job_id, "failed")  # a failed job made nothing: room again
    assert (await select_next_job(session, rng)).mode is Mode.child_generation


async def test_completed_and_held_runs_are_never_selected(session, tmp_path):
    await make_pipeline(session, tmp_path)
    done = await make_run(session, name="done")
    held = await make_run(session, name="held")
    await complete_run(session, done)
    await hold_run(session, held, "ComfyUI said no three times")
    rng = random.Random(1)
    for _ in range(20):
        assert (await select_next_job(session, rng)).mode is Mode.no_work
    await resume_run(session, held)
    assert (await select_next_job(session, rng)).run_id == held


async def test_gates_block_unapproved_step(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=3)
    run = await make_run(session, settings=RunSettings(max_children=2))
    rng = random.Random(8)
    made = []
    while isinstance(job := await claim_next_job(session, rng), ClaimedJob):
        made.append(job.step)
        await finish(session, job)
    # Step 1 is approved at creation; step 2 fills; step 3 waits for step 2's approval.
    assert made == [1, 1, 2, 2, 2, 2]
    await approve_step(session, run, 2, 1, "curator")
    job = await claim(session, rng)
    assert job.step == 3
    best = await session.get_one(ImageCandidate, job.parent_id)
    assert best.advancing is True


async def test_rejected_candidate_is_never_a_parent(session, tmp_path):
    from tests.committed import reject_candidate

    await make_pipeline(session, tmp_path, steps=2)
    run = await make_run(session, settings=RunSettings(gates=False, max_children=3))
    rng = random.Random(6)
    for _ in range(3):
        await finish(session, await claim(session, rng))
    ids = list(await session.scalars(select(ImageCandidate.id).order_by(ImageCandidate.id)))
    await reject_candidate(session, run, ids[0], "curator")
    # Every ticket, from the first (the rejected one's slice, were it in the raffle) to the last.
    tickets = [0.0, *(i / 12 for i in range(1, 12)), just_below(1.0)]
    parents = {(await select_next_job(session, Fixed(u))).parent_id for u in tickets}
    assert parents == set(ids[1:])


async def test_every_job_gets_its_own_seed(session, tmp_path):
    await make_pipeline(session, tmp_path, steps=2)
    await make_run(session, settings=RunSettings(gates=False, max_children=4, target_leaves=16))
    rng = random.Random(12)
    seeds = []
    for _ in range(20):
        job = await claim(session, rng)
        seeds.append(job.seed)
        await finish(session, job)
    assert len(set(seeds)) == len(seeds)
    stored = list(await session.scalars(select(Job.seed)))
    assert sorted(stored) == sorted(seeds)
    cand_seeds = set(await session.scalars(select(ImageCandidate.seed)))
    assert cand_seeds <= set(seeds)


async def test_two_claims_never_exceed_n(session_factory, tmp_path):
    """Concurrent claimers (two workers) are serialised; N holds."""
    import asyncio

    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=2)
        await make_run(s, settings=RunSettings(max_children=2))

    async def worker(seed: int) -> list[ClaimedJob]:
        got = []
        rng = random.Random(seed)
        for _ in range(5):
            async with session_factory() as s, s.begin():
                job = await claim_next_job(s, rng)
                if isinstance(job, ClaimedJob):
                    got.append(job)
        return got

    results = await asyncio.gather(worker(1), worker(2))
    jobs = [j for r in results for j in r]
    assert len(jobs) == 2  # two base images, then nothing until they finish
    async with session_factory() as s:
        statuses = list(await s.scalars(select(Job.status)))
    assert statuses == [JobStatus.pending, JobStatus.pending]


async def test_the_raffle_gives_each_parent_a_slice_as_wide_as_its_elo(session, tmp_path):
    """Slices in id order: A [0, 1200), B [1200, 2000), C [2000, 2001) for Elo 1200, 800, -50."""
    run = await finish_first_run(session, tmp_path)
    root = await add_candidate(session, run, 1, elo=1000)
    a = await add_candidate(session, run, 2, root, elo=1200)
    b = await add_candidate(session, run, 2, root, elo=800)
    c = await add_candidate(session, run, 2, root, elo=-50)  # counts as 1
    total = 1200 + 800 + 1
    for u, winner in ((0.0, a), (just_below(1200 / total), a), (1200 / total, b),
                      (just_below(2000 / total), b), (2000 / total, c), (just_below(1.0), c)):
        decision = await select_next_job(session, Fixed(u))
        assert decision.parent_id == winner, u
        assert decision.reason.endswith("won raffle among 3")
