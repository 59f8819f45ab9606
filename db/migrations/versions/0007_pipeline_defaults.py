"""pipelines keep the defaults pipeline.yaml gives its run variables

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-22 10:00:00

`variables:` in pipeline.yaml may now give a variable a default (`variables: {tint: 3368652}`),
which a run takes when /run start does not give that variable. Pipelines imported before have
no defaults.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pipelines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("defaults", sa.JSON(), nullable=False,
                                      server_default=sa.text("'{}'")))


def downgrade() -> None:
    with op.batch_alter_table("pipelines", schema=None) as batch_op:
        batch_op.drop_column("defaults")
