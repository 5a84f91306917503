"""statement responses keep the digest of the results alone

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 03:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: answers recorded before keep only the digest of the whole statement.
    with op.batch_alter_table("statement_response") as batch:
        batch.add_column(sa.Column("rows_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("statement_response") as batch:
        batch.drop_column("rows_sha256")
