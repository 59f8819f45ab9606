"""ids of runs, jobs, candidates and posted pairs are never given twice

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-20 10:00:00

A run can now be deleted with everything of it. SQLite gives a new row one more than the
highest id in its table, so deleting the newest run would hand its id, and its candidates' and
jobs' ids, to the next run: the vote buttons still in the old run's channel would then vote in
the new one, and its folder names would repeat. With AUTOINCREMENT SQLite never gives an id
twice. Each table is copied once (SQLite cannot add AUTOINCREMENT in place); the copy starts
its counter at the table's highest id. Other databases use sequences, which never go back: for
them this revision does nothing.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("pipeline_runs", "jobs", "image_candidates", "pair_posts")


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
