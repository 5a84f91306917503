"""Accounting periods, accrual runs and their results, journal entries and lines.

Journal lines are never updated or deleted: a correction is a new entry. The liability of an
agreement version x beneficiary x rebate period is the sum of its ``rebate_liability`` lines
(credit minus debit); an accrual run posts only the difference to what it should be.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from fanli.db.base import Amount, Base, UtcDateTime


class PeriodStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class EntryKind(StrEnum):
    ACCRUAL = "accrual"
    ADJUSTMENT = "adjustment"  # a change to a rebate period that overlaps a closed period


class Account(StrEnum):
    """Fanli's own account names; the chart of accounts maps them to the company's codes."""

    CONTRA_REVENUE = "rebate_contra_revenue"  # 销售折让/返利 (debit: reduces revenue)
    LIABILITY = "rebate_liability"  # 应付返利 (credit: refund liability)


class AccountingPeriod(Base):
    """A calendar month of the books, ``[start, end)``."""

    __tablename__ = "accounting_period"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(7), unique=True)  # 2026-03
    start: Mapped[dt.date] = mapped_column(Date)
    end: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(8), default=PeriodStatus.OPEN)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(120))


class AccrualRun(Base):
    __tablename__ = "accrual_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(120))
    # What the run read, so any result can be reproduced: batch ids (sales and dimensions),
    # agreement version ids, the versions it re-rated, as-of.
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    results_stored: Mapped[int] = mapped_column(Integer, default=0)
    lines_posted: Mapped[int] = mapped_column(Integer, default=0)


class AccrualResult(Base):
    """One engine result row of a run (only versions the run re-rated are stored)."""

    __tablename__ = "accrual_result"
    __table_args__ = (Index("ix_accrual_result_key", "version_id", "beneficiary", "period_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("accrual_run.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("agreement_version.id"))
    beneficiary: Mapped[str] = mapped_column(String(64))
    period_index: Mapped[int] = mapped_column(Integer)
    period_start: Mapped[dt.date] = mapped_column(Date)
    period_end: Mapped[dt.date] = mapped_column(Date)
    lines: Mapped[int] = mapped_column(Integer)
    basis: Mapped[Decimal] = mapped_column(Amount())
    tier: Mapped[int] = mapped_column(Integer)
    rate: Mapped[str | None] = mapped_column(String(40))  # as written in the terms
    rebate: Mapped[Decimal] = mapped_column(Amount())
    cumulative_rebate: Mapped[Decimal] = mapped_column(Amount())
    accrual: Mapped[Decimal] = mapped_column(Amount())  # running total to hold as liability
    liability: Mapped[Decimal] = mapped_column(Amount())  # this period's share of it


class JournalEntry(Base):
    __tablename__ = "journal_entry"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    accounting_period_id: Mapped[int] = mapped_column(
        ForeignKey("accounting_period.id"), index=True
    )
    run_id: Mapped[int | None] = mapped_column(ForeignKey("accrual_run.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    entry_date: Mapped[dt.date] = mapped_column(Date)
    memo: Mapped[str] = mapped_column(String(300))
    posted_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class JournalLine(Base):
    __tablename__ = "journal_line"
    __table_args__ = (Index("ix_journal_line_key", "version_id", "beneficiary", "period_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entry.id"), index=True)
    account: Mapped[str] = mapped_column(String(40))
    debit: Mapped[Decimal] = mapped_column(Amount())
    credit: Mapped[Decimal] = mapped_column(Amount())
    agreement_code: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(ForeignKey("agreement_version.id"))
    beneficiary: Mapped[str] = mapped_column(String(64))
    period_index: Mapped[int] = mapped_column(Integer)
    period_start: Mapped[dt.date] = mapped_column(Date)  # the rebate period the amount is for
    period_end: Mapped[dt.date] = mapped_column(Date)
