"""The background refit after votes: a vote committed while a refit is already past its read
runs it once more, so the last refit of a step always comes after its last vote."""

from __future__ import annotations

import sqlite3

from sqlalchemy import select
from sqlalchemy.engine import make_url

import app.refits
from db.models import ImageCandidate
from tests.committed import record_vote
from tests.factories import add_candidate, make_pipeline, make_run


async def test_a_vote_during_a_refit_is_refitted_again(session_factory, engine, db_url, tmp_path,
                                                      monkeypatch):
    async with session_factory() as s:
        await make_pipeline(s, tmp_path, steps=2)
        run = await make_run(s)
        a, b, c = [await add_candidate(s, run, 1) for _ in range(3)]
    real_fit = app.refits.fit_ratings
    fits: list[int] = []

    def fit_while_a_vote_lands(rows):  # the refit has read its votes, and is fitting them
        rows = list(rows)
        fits.append(sum(n for _, _, n in rows))
        if len(fits) == 1:  # another tap's vote is committed right now, from elsewhere
            with sqlite3.connect(make_url(db_url).database) as other:
                other.execute(
                    "INSERT INTO votes (run_id, step, low_id, high_id, winner_id, voter, "
                    "created_at) VALUES (?, 1, ?, ?, ?, 'bob', CURRENT_TIMESTAMP)",
                    (run, a, c, c),
                )
            app.refits.schedule_refit(engine, run, 1)
        return real_fit(rows)

    monkeypatch.setattr(app.refits, "fit_ratings", fit_while_a_vote_lands)
    async with session_factory() as s:
        await record_vote(s, run, a, b, "alice")
    await app.refits.finish_refits()

    assert fits == [1, 2]  # refitted once more, with the vote it had missed
    async with session_factory() as s:
        votes = dict((await s.execute(
            select(ImageCandidate.id, ImageCandidate.votes).where(ImageCandidate.run_id == run)
        )).tuples().all())
    assert votes == {a: 2, b: 1, c: 1}
