"""the first accrual run that held each agreement version

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29 12:45:00

A closed month's sales as closed are those of the run it closed after, for the versions that
run held; for a version approved after the close, those of the first run that held it (ADR
0010, as amended). Finding that run had meant reading every later run's inputs on every
accrual run. ``version_first_run`` names it once, written by that run; this migration fills it
in from the runs already stored, in their order.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "version_first_run",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["accrual_run.id"], name=op.f("fk_version_first_run_run_id_accrual_run")
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["agreement_version.id"],
            name=op.f("fk_version_first_run_version_id_agreement_version"),
        ),
        sa.PrimaryKeyConstraint("version_id", name=op.f("pk_version_first_run")),
    )
    runs = sa.table("accrual_run", sa.column("id", sa.Integer), sa.column("inputs", sa.JSON))
    first: dict[int, int] = {}
    for run_id, inputs in op.get_bind().execute(
        sa.select(runs.c.id, runs.c.inputs).order_by(runs.c.id)
    ):
        for version in (inputs or {}).get("versions", {}):
            first.setdefault(int(version), run_id)
    if first:
        op.bulk_insert(table, [{"version_id": v, "run_id": r} for v, r in sorted(first.items())])


def downgrade() -> None:
    op.drop_table("version_first_run")
