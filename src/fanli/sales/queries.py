"""Reading import batches."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.sales.models import ImportBatch


def batches(session: Session) -> Sequence[ImportBatch]:
    """Every import batch, oldest first."""
    return session.scalars(select(ImportBatch).order_by(ImportBatch.id)).all()
