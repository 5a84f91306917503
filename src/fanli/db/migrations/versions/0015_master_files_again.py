"""a master file may be imported again later, to set its values back

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29 07:10:00

A batch's content hash was unique per kind, so a customers or products file imported before
could never come again: after a later file had changed some customers, importing the earlier
one to set them back was answered "already imported". A sales file stays unique (its lines
would count twice); a master file may now come again as a batch of its own, once a later
import of that master has come between (``sales.service._previous``). The unique constraint on
``(kind, content_hash)`` becomes a unique index on the content hash of sales batches, and a
plain index on ``(kind, content_hash)`` for the lookups.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SALES_ONLY = sa.text("kind = 'sales'")


def upgrade() -> None:
    with op.batch_alter_table("import_batch") as batch:
        batch.drop_constraint("uq_import_batch_kind_content_hash", type_="unique")
        batch.create_index(
            "uq_import_batch_sales_content_hash",
            ["content_hash"],
            unique=True,
            sqlite_where=SALES_ONLY,
            postgresql_where=SALES_ONLY,
        )
        batch.create_index("ix_import_batch_kind_content_hash", ["kind", "content_hash"])


def downgrade() -> None:
    repeated = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT kind, content_hash FROM import_batch GROUP BY kind, content_hash "
                "HAVING count(*) > 1 LIMIT 1"
            )
        )
        .first()
    )
    if repeated is not None:
        raise RuntimeError(
            f"a {repeated[0]} file was imported more than once (content {repeated[1][:16]}...): "
            "the older schema holds each file once; not downgraded"
        )
    with op.batch_alter_table("import_batch") as batch:
        batch.drop_index("ix_import_batch_kind_content_hash")
        batch.drop_index("uq_import_batch_sales_content_hash")
        batch.create_unique_constraint(
            "uq_import_batch_kind_content_hash", ["kind", "content_hash"]
        )
