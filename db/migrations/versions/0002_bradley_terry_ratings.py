"""ratings from a Bradley–Terry fit of all votes, with an uncertainty

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 10:00:00

Adds `image_candidates.elo_sd` and an index on votes that covers the refit's query, then
replaces the online-Elo numbers of every step that has votes by the fit of its votes
(orchestration.ratings.fit_ratings, the rule the application uses), so an existing database
ranks exactly as a new one would. Candidates without votes go back to 1000. The downgrade keeps
the fitted numbers: online Elo's history cannot be replayed meaningfully.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

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


def _refit_every_step() -> None:
    # Imported here: the migration needs the rule only when it moves data.
    from orchestration.ratings import fit_ratings, rating_rows

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
        rows = rating_rows(fit_ratings(tuple(row) for row in results))
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
