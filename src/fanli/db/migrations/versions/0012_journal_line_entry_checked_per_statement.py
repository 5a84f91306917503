"""PostgreSQL: a journal line's entry is checked once per statement, not once per row

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 12:00:00

The foreign key from ``journal_line.entry_id`` to ``journal_entry`` looked its entry up once per
line: 2 of the 4 s that COPY of a full run's 550,025 lines took at SF1. A statement-level
trigger over the inserted rows (a transition table) refuses the same lines with one anti-join,
and with the same SQLSTATE (23503, foreign_key_violation). Deleting or changing an entry was
already refused (migration 0005, append-only), so the trigger only has to watch inserts; lines
cannot be updated either. SQLite keeps its foreign key, whose per-row check costs little there
(ADR 0004, decision 11).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_KEY = "fk_journal_line_entry_id_journal_entry"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # The function finds journal_entry by name. Without a search path of its own it would look
    # in the session's temporary schema first, where any role may create a journal_entry of
    # its own: the foreign key named the table itself. So: the schema of the table the key
    # refers to, and the temporary schema only after it.
    schema = bind.execute(
        sa.text(
            "SELECT n.nspname FROM pg_constraint c JOIN pg_class t ON t.oid = c.confrelid "
            "JOIN pg_namespace n ON n.oid = t.relnamespace "
            "WHERE c.conname = :name AND c.conrelid = 'journal_line'::regclass"
        ),
        {"name": FOREIGN_KEY},
    ).scalar_one()
    op.drop_constraint(FOREIGN_KEY, "journal_line", type_="foreignkey")
    quoted = bind.dialect.identifier_preparer.quote(schema)
    op.execute(
        f"""
        CREATE FUNCTION fanli_journal_line_entry_exists() RETURNS trigger LANGUAGE plpgsql
        SET search_path = {quoted}, pg_temp AS $$
        DECLARE
          missing integer;
        BEGIN
          SELECT n.entry_id INTO missing FROM inserted_lines n
          WHERE NOT EXISTS (SELECT 1 FROM journal_entry e WHERE e.id = n.entry_id)
          LIMIT 1;
          IF FOUND THEN
            RAISE EXCEPTION 'journal_line names journal_entry %, which does not exist', missing
              USING ERRCODE = 'foreign_key_violation',
                    CONSTRAINT = '{FOREIGN_KEY}';
          END IF;
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER journal_line_entry_exists AFTER INSERT ON journal_line "
        "REFERENCING NEW TABLE AS inserted_lines "
        "FOR EACH STATEMENT EXECUTE FUNCTION fanli_journal_line_entry_exists()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER journal_line_entry_exists ON journal_line")
    op.execute("DROP FUNCTION fanli_journal_line_entry_exists()")
    op.create_foreign_key(FOREIGN_KEY, "journal_line", "journal_entry", ["entry_id"], ["id"])
