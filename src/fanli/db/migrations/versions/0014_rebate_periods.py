"""rebate periods: a journal line names its rebate period by version and index only

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 00:10:00

Every journal line carried its agreement code and its rebate period's two dates, the same for
every line of a version's period. They now live once per period in ``rebate_period``, keyed by
``(version_id, period_index)``, and the lines keep the key: three values fewer to write per
line, which is a third of what a run's load wrote (ADR 0004, decision 12). The periods the
journal names are moved over; a journal whose lines disagree on a period's dates or agreement
is not migrated (that would be a fault to look into, not one to paper over). Rebate periods are
append-only, as the journal is.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MOVED = ("agreement_code", "period_start", "period_end")


def upgrade() -> None:
    op.create_table(
        "rebate_period",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("period_index", sa.Integer(), nullable=False),
        sa.Column("agreement_code", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["agreement_version.id"],
            name=op.f("fk_rebate_period_version_id_agreement_version"),
        ),
        sa.PrimaryKeyConstraint("version_id", "period_index", name=op.f("pk_rebate_period")),
    )
    bind = op.get_bind()
    disagreeing = bind.execute(
        sa.text(
            "SELECT version_id, period_index FROM journal_line "
            "GROUP BY version_id, period_index "
            "HAVING count(DISTINCT agreement_code) > 1 OR count(DISTINCT period_start) > 1 "
            "OR count(DISTINCT period_end) > 1 LIMIT 1"
        )
    ).first()
    if disagreeing is not None:
        raise RuntimeError(
            f"journal lines of agreement version {disagreeing[0]}, rebate period "
            f"{disagreeing[1]} disagree on the period's agreement or dates: not migrated"
        )
    op.execute(
        "INSERT INTO rebate_period "
        "(version_id, period_index, agreement_code, period_start, period_end) "
        "SELECT version_id, period_index, min(agreement_code), min(period_start), "
        "min(period_end) FROM journal_line GROUP BY version_id, period_index"
    )
    for column in MOVED:
        # SQLite drops a column in place (3.35 and later); neither database fires the
        # journal's append-only triggers for it: no row is updated by a statement.
        op.drop_column("journal_line", column)
    if bind.dialect.name == "postgresql":
        # fanli_append_only() is migration 0005's
        op.execute(
            "CREATE TRIGGER rebate_period_append_only BEFORE UPDATE OR DELETE ON rebate_period "
            "FOR EACH ROW EXECUTE FUNCTION fanli_append_only()"
        )
        op.execute(
            "CREATE TRIGGER rebate_period_no_truncate BEFORE TRUNCATE ON rebate_period "
            "FOR EACH STATEMENT EXECUTE FUNCTION fanli_append_only()"
        )
        op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON rebate_period FROM PUBLIC")
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER rebate_period_no_{action.lower()} BEFORE {action} "
                f"ON rebate_period BEGIN SELECT RAISE(ABORT, 'rebate_period is append-only: "
                f"{action} refused (a correction is a new row)'); END"
            )


def downgrade() -> None:
    bind = op.get_bind()
    postgresql = bind.dialect.name == "postgresql"
    # The lines get their columns back, filled from the periods: the journal's own update
    # trigger is lifted for that one statement.
    if postgresql:
        op.execute("ALTER TABLE journal_line DISABLE TRIGGER journal_line_append_only")
    else:
        op.execute("DROP TRIGGER journal_line_no_update")
    op.add_column("journal_line", sa.Column("agreement_code", sa.String(64), nullable=True))
    op.add_column("journal_line", sa.Column("period_start", sa.Date(), nullable=True))
    op.add_column("journal_line", sa.Column("period_end", sa.Date(), nullable=True))
    op.execute(
        "UPDATE journal_line SET "
        + ", ".join(
            f"{column} = (SELECT p.{column} FROM rebate_period p "
            "WHERE p.version_id = journal_line.version_id "
            "AND p.period_index = journal_line.period_index)"
            for column in MOVED
        )
    )
    if postgresql:
        op.execute("ALTER TABLE journal_line ENABLE TRIGGER journal_line_append_only")
        for column in MOVED:
            op.alter_column("journal_line", column, nullable=False)
        op.execute("DROP TRIGGER rebate_period_append_only ON rebate_period")
        op.execute("DROP TRIGGER rebate_period_no_truncate ON rebate_period")
    else:
        op.execute(
            "CREATE TRIGGER journal_line_no_update BEFORE UPDATE ON journal_line "
            "BEGIN SELECT RAISE(ABORT, 'journal_line is append-only: UPDATE refused "
            "(a correction is a new row)'); END"
        )
        # SQLite cannot make an added column NOT NULL in place; the columns stay nullable
        # there until a table rebuild, which the journal's triggers and size argue against.
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER rebate_period_no_{action}")
    op.drop_table("rebate_period")
