"""HTTP idempotency records: the first response to a money-moving POST, kept byte for byte."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from fanli.db.base import Base, UtcDateTime


class HttpIdempotency(Base):
    """One ``Idempotency-Key`` of one caller. ``status`` is NULL while the first request is in
    flight; afterwards the stored response is replayed exactly."""

    __tablename__ = "http_idempotency"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    caller: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the credential
    method_path: Mapped[str] = mapped_column(String(300))
    body_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(String(100))
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
