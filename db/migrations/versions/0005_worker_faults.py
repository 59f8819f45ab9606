"""jobs keep their filled-in values, workers keep their client id, holds say who lifts them

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-15 10:00:00

- `jobs.payload` (a full copy of the rendered workflow per job) gives way to
  `jobs.placeholder_values`: the values filled into the step's template, which with the template
  give the prompt again. Old payloads are dropped: every value in them is still on the job and
  its run, but for the name an uploaded parent had on ComfyUI.
- `comfy_workers`: the client id this installation gives each ComfyUI, kept across restarts so
  the websocket frames of a prompt queued before a restart still reach the bot.
- `pipeline_runs.held_kind`: holds made before this revision were made by failing jobs, which a
  person lifts with /resume.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HOLD_KINDS = ("failures", "storage", "workers")


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("placeholder_values", sa.JSON(), nullable=True))
        batch_op.drop_column("payload")
    with op.batch_alter_table("pipeline_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "held_kind",
                sa.Enum(*_HOLD_KINDS, name="hold_kind", native_enum=False,
                        create_constraint=True, length=32),
                nullable=True,
            )
        )
    op.execute("UPDATE pipeline_runs SET held_kind = 'failures' WHERE held_reason IS NOT NULL")
    op.create_table(
        "comfy_workers",
        sa.Column("url", sa.String(length=200), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("url", name=op.f("pk_comfy_workers")),
        sa.UniqueConstraint("client_id", name=op.f("uq_comfy_workers_client_id")),
    )


def downgrade() -> None:
    op.drop_table("comfy_workers")
    with op.batch_alter_table("pipeline_runs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_pipeline_runs_hold_kind"), type_="check")
        batch_op.drop_column("held_kind")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payload", sa.JSON(), nullable=True))
        batch_op.drop_column("placeholder_values")
