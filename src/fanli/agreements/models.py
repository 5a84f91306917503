"""Agreements and their versions.

An agreement moves draft -> active -> expired or terminated. Its terms live in versions: a
draft version may be edited; once active, a version's terms never change (the service refuses,
and the stored ``terms_hash`` shows any tampering). A change is a new version with an effective
date; it applies to sales dated on or after that date, the previous version to those before.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fanli.db.base import Base, UtcDateTime


class AgreementStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    EXPIRED = "expired"
    TERMINATED = "terminated"
    DISCARDED = "discarded"  # its only versions were drafts, discarded; a new draft revives it


# Agreements that have had an active version: the only ones with results to settle.
BEEN_IN_FORCE = (AgreementStatus.ACTIVE, AgreementStatus.EXPIRED, AgreementStatus.TERMINATED)


class VersionStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"  # compliance checks passed; waiting for the approvals it needs
    ACTIVE = "active"
    DISCARDED = "discarded"  # a draft given up: kept (the trail names it), never counted


class AgreementRecord(Base):
    __tablename__ = "agreement"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)  # the terms' ``id``
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), default=AgreementStatus.DRAFT)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    ended_on: Mapped[dt.date | None] = mapped_column(Date)  # termination: no sale from here on


class AgreementVersion(Base):
    __tablename__ = "agreement_version"
    __table_args__ = (UniqueConstraint("agreement_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreement.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[dt.date] = mapped_column(Date)
    terms: Mapped[dict[str, Any]] = mapped_column(JSON)
    terms_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=VersionStatus.DRAFT)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    activated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    # The latest submission: who, when, its number, and the review it passed (policy version,
    # deviations and their justification, the approval steps required).
    submission: Mapped[int] = mapped_column(Integer, default=0)
    submitted_by: Mapped[str | None] = mapped_column(String(64))
    submitted_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    review: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class AgreementApproval(Base):
    """One approval of one submission of a version, given for the terms with ``terms_hash``.

    ``principal`` is whom the approval counts for: the approver, or the user they stand in for
    under a delegation. Each person counts once per submission (unique constraints).
    """

    __tablename__ = "agreement_approval"
    __table_args__ = (
        UniqueConstraint("version_id", "submission", "approver"),
        UniqueConstraint("version_id", "submission", "principal"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("agreement_version.id"), index=True)
    submission: Mapped[int] = mapped_column(Integer)
    approver: Mapped[str] = mapped_column(String(64))
    principal: Mapped[str] = mapped_column(String(64))
    delegation_id: Mapped[int | None] = mapped_column(ForeignKey("delegation.id"))
    role: Mapped[str] = mapped_column(String(32))
    terms_hash: Mapped[str] = mapped_column(String(64))
    approved_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
