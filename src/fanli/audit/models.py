"""``audit_event``: the append-only, hash-chained log of every state change."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fanli.db.base import Base, UtcDateTime


class AuditEvent(Base):
    __tablename__ = "audit_event"

    # ``seq`` is the position in the chain; ``prev_hash`` is unique, so the chain cannot fork.
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    occurred_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    type: Mapped[str] = mapped_column(String(80), index=True)
    actor: Mapped[str] = mapped_column(String(120))
    entity_type: Mapped[str] = mapped_column(String(60))
    entity_id: Mapped[str] = mapped_column(String(120), index=True)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    outcome: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditCheckpoint(Base):
    """A signed tree head over the first ``tree_size`` events (``fanli.oversight.checkpoints``).

    The database's copy is for exports; the copy that proves anything is the one auditors keep
    outside the database."""

    __tablename__ = "audit_checkpoint"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tree_size: Mapped[int] = mapped_column(Integer)
    root_hash: Mapped[str] = mapped_column(String(64))
    last_hash: Mapped[str] = mapped_column(String(64))
    made_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(128))
    document: Mapped[str] = mapped_column(Text)  # the checkpoint as canonical JSON, signature too
