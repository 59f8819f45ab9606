"""remember the pairs posted in run channels

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 10:00:00

Adds `pair_posts`: each pair the bot posts with vote buttons, open until someone answers it, so
a run never has more than a few unanswered pairs out and a pair that went out of date can say
so. It starts empty: pairs posted before this revision were not tracked.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pair_posts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("a_id", sa.Integer(), nullable=False),
        sa.Column("b_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("posted_at", sa.DateTime(), nullable=False),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=200), nullable=True),
        sa.CheckConstraint("a_id <> b_id", name=op.f("ck_pair_posts_two_candidates")),
        sa.ForeignKeyConstraint(
            ["a_id"], ["image_candidates.id"], name=op.f("fk_pair_posts_a_id_image_candidates")
        ),
        sa.ForeignKeyConstraint(
            ["b_id"], ["image_candidates.id"], name=op.f("fk_pair_posts_b_id_image_candidates")
        ),
        sa.ForeignKeyConstraint(
            ["run_id", "step"],
            ["pipeline_run_steps.run_id", "pipeline_run_steps.step"],
            name=op.f("fk_pair_posts_run_id_step_pipeline_run_steps"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["pipeline_runs.id"],
            name=op.f("fk_pair_posts_run_id_pipeline_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pair_posts")),
    )
    op.create_index("ix_pair_posts_message_id", "pair_posts", ["message_id"], unique=False)
    op.create_index("ix_pair_posts_run_open", "pair_posts", ["run_id", "answered_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_pair_posts_run_open", table_name="pair_posts")
    op.drop_index("ix_pair_posts_message_id", table_name="pair_posts")
    op.drop_table("pair_posts")
