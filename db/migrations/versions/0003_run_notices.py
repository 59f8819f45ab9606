"""remember which channel notices went out

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:00:00

Adds `pipeline_run_steps.awaiting_notified_at` and `pipeline_runs.no_work_notified_at`, set in
the same transaction that decides a notice is due (orchestration.notices), so a restart or two
events racing never post the same notice twice. Both start empty: under the previous revisions
no notice was ever posted, so a step already awaiting approval or a run already without work is
told once after the upgrade.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pipeline_run_steps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("awaiting_notified_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("pipeline_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("no_work_notified_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pipeline_runs", schema=None) as batch_op:
        batch_op.drop_column("no_work_notified_at")
    with op.batch_alter_table("pipeline_run_steps", schema=None) as batch_op:
        batch_op.drop_column("awaiting_notified_at")
