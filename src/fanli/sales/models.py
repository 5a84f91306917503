"""``import_batch``: the manifest of every import, the unit of idempotency and of voiding.

A sales batch's lines live in the fact store as one immutable Parquet file named by the file's
content hash; the row here registers it. A wrong batch is voided (it stops counting from the
next accrual), never edited or deleted.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import Date, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from fanli.db.base import Base, UtcDateTime


class BatchKind(StrEnum):
    CUSTOMERS = "customers"
    PRODUCTS = "products"
    SALES = "sales"


class BatchStatus(StrEnum):
    ACTIVE = "active"
    VOIDED = "voided"


class ImportBatch(Base):
    __tablename__ = "import_batch"
    __table_args__ = (
        # A sales file is stored once: the same content again is the same batch (voided or
        # not). A master file may come again later to set values back, as a batch of its own
        # (``sales.service._previous``); ADR 0011, migration 0015.
        Index(
            "uq_import_batch_sales_content_hash",
            "content_hash",
            unique=True,
            sqlite_where=text("kind = 'sales'"),
            postgresql_where=text("kind = 'sales'"),
        ),
        Index("ix_import_batch_kind_content_hash", "kind", "content_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    source_name: Mapped[str] = mapped_column(String(255))
    content_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the file's bytes
    idempotency_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    facts_file: Mapped[str | None] = mapped_column(String(255))  # sales: Parquet in the store
    rows: Mapped[int] = mapped_column(Integer)
    first_date: Mapped[dt.date | None] = mapped_column(Date)  # sales: earliest date of a line
    last_date: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default=BatchStatus.ACTIVE)
    imported_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    imported_by: Mapped[str] = mapped_column(String(120))
    voided_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    voided_by: Mapped[str | None] = mapped_column(String(120))
    void_reason: Mapped[str | None] = mapped_column(String(500))
