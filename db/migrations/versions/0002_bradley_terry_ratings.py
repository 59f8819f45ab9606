"""ratings from a Bradley–Terry fit of all votes, with an uncertainty

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 10:00:00

Adds `image_candidates.elo_sd` and an index on votes that covers the refit's query, then
replaces the online-Elo numbers of every step that has votes by the fit of its votes, so an
existing database ranks exactly as a new one did when this revision was written. The fit is
this file's own copy of the application's rule at that time: a later change to the
application's fit must not change what upgrading an old database does. Candidates without
votes go back to 1000. The downgrade keeps the fitted numbers: online Elo's history cannot be
replayed meaningfully.
"""

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import choix
import numpy as np
import sqlalchemy as sa
from alembic import op
from scipy.special import expit

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("image_candidates", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("elo_sd", sa.Float(), server_default=sa.text("491.35"), nullable=False)
        )
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.drop_index("ix_votes_run_id_step")
        batch_op.create_index(
            "ix_votes_step_results",
            ["run_id", "step", "low_id", "high_id", "winner_id"],
            unique=False,
        )
    _refit_every_step()


ELO_PER_UNIT = 400.0 / math.log(10.0)
PRIOR_GAMES = 0.5


def _fitted_rows(results: Iterable[tuple[int, int, int]]) -> list[dict[str, Any]]:
    """Bradley–Terry (choix I-LSR) of `(winner, loser, times)` plus half a virtual game per
    candidate against a 1000-rated reference; sd from the Laplace approximation."""
    table = np.fromiter(itertools.chain.from_iterable(results), dtype=np.int64).reshape(-1, 3)
    ids_array, inverse = np.unique(table[:, :2], return_inverse=True)
    n = len(ids_array)
    if n == 0:
        return []
    pairs = inverse.reshape(-1, 2)
    wins = np.zeros((n + 1, n + 1))
    np.add.at(wins, (pairs[:, 0], pairs[:, 1]), table[:, 2])
    wins[:n, n] = wins[n, :n] = PRIOR_GAMES / 2
    params = choix.ilsr_pairwise_dense(wins, tol=1e-6, max_iter=100_000)
    theta = params[:n] - params[n]
    games = wins[:n, :n] + wins[:n, :n].T
    p = expit(theta[:, None] - theta[None, :])
    info = games * p * (1.0 - p)
    q = expit(theta)
    cov = np.linalg.inv(np.diag(info.sum(axis=1) + PRIOR_GAMES * q * (1.0 - q)) - info)
    return [
        {
            "cid": int(cid),
            "new_elo": 1000.0 + ELO_PER_UNIT * float(theta[i]),
            "new_sd": ELO_PER_UNIT * math.sqrt(float(cov[i, i])),
            "games": round(float(games.sum(axis=1)[i])),
        }
        for i, cid in enumerate(ids_array)
    ]


def _refit_every_step() -> None:
    bind = op.get_bind()
    bind.execute(sa.text("UPDATE image_candidates SET elo = 1000.0, elo_sd = 491.35, votes = 0"))
    steps = bind.execute(
        sa.text("SELECT DISTINCT run_id, step FROM votes ORDER BY run_id, step")
    ).all()
    for run_id, step in steps:
        results = bind.execute(
            sa.text(
                "SELECT winner_id, low_id + high_id - winner_id, count(*) FROM votes "
                "WHERE run_id = :run_id AND step = :step GROUP BY low_id, high_id, winner_id"
            ),
            {"run_id": run_id, "step": step},
        )
        rows = _fitted_rows(tuple(row) for row in results)
        bind.execute(
            sa.text(
                "UPDATE image_candidates SET elo = :new_elo, elo_sd = :new_sd, votes = :games "
                "WHERE id = :cid"
            ),
            rows,
        )


def downgrade() -> None:
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.drop_index("ix_votes_step_results")
        batch_op.create_index("ix_votes_run_id_step", ["run_id", "step"], unique=False)
    with op.batch_alter_table("image_candidates", schema=None) as batch_op:
        batch_op.drop_column("elo_sd")
