"""Periodic audits and their findings.

``audit_run`` is one run of the detectors over an accounting period. A ``finding`` is one
anomaly a detector found, with its evidence, and it lives through a workflow: open, assigned,
then resolved or dismissed, each with who and why. A finding is identified by its detector and
its ``fingerprint``, the objects it is about. Running the audit again refreshes the evidence of
a finding it finds again, and never opens a second one.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fanli.db.base import Amount, Base, UtcDateTime


class FindingStatus(StrEnum):
    OPEN = "open"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"
    DISMISSED = "dismissed"


class AuditRun(Base):
    __tablename__ = "audit_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(String(7), index=True)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(64))
    detectors: Mapped[list[str]] = mapped_column(JSON)
    found: Mapped[int] = mapped_column(Integer)  # findings this run saw
    opened: Mapped[int] = mapped_column(Integer)  # of which new


class Finding(Base):
    __tablename__ = "finding"
    __table_args__ = (UniqueConstraint("detector", "fingerprint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    detector: Mapped[str] = mapped_column(String(40), index=True)
    fingerprint: Mapped[str] = mapped_column(String(200))
    period: Mapped[str] = mapped_column(String(7), index=True)
    department: Mapped[str] = mapped_column(String(40))
    customer_code: Mapped[str | None] = mapped_column(String(64))
    amount: Mapped[Decimal | None] = mapped_column(Amount())  # the money at stake
    summary: Mapped[str] = mapped_column(String(500))  # English: the API, exports, the log
    # The same sentence as its template and values (kit.errors.said_to_json), so a page can say
    # it in the reader's language. None for a finding stored before sentences were kept.
    summary_said: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=FindingStatus.OPEN)
    owner: Mapped[str | None] = mapped_column(String(64))
    resolution: Mapped[str | None] = mapped_column(String(1000))
    first_run_id: Mapped[int] = mapped_column(ForeignKey("audit_run.id"))
    last_run_id: Mapped[int] = mapped_column(ForeignKey("audit_run.id"))
    opened_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    closed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(64))
