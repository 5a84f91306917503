"""Accounting periods, accrual runs and their results, journal entries and lines.

Journal lines are never updated or deleted: a correction is a new entry. The liability of an
agreement version x beneficiary x rebate period is what its lines credited to
``rebate_liability`` minus what they debited to it; an accrual run posts only the difference
to what it should be.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    String,
    and_,
)
from sqlalchemy.orm import Mapped, mapped_column

from fanli.db.base import Amount, Base, UtcDateTime


class PeriodStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class EntryKind(StrEnum):
    ACCRUAL = "accrual"
    ADJUSTMENT = "adjustment"  # a change to a rebate period that overlaps a closed period
    PAYOUT = "payout"  # a settlement paid (or clawed back) in its form
    BALANCE_USE = "balance_use"  # rebate balance spent against an order
    BALANCE_EXPIRY = "balance_expiry"  # rebate balance released when it expires


class Account(StrEnum):
    """Fanli's own account names; the chart of accounts maps them to the company's codes."""

    CONTRA_REVENUE = "rebate_contra_revenue"  # 销售折让/返利 (debit: reduces revenue)
    LIABILITY = "rebate_liability"  # 应付返利 (credit: refund liability)
    RECEIVABLE = "accounts_receivable"  # 应收账款 (credit notes, red invoices, offsets)
    BANK = "bank"  # 银行存款 (transfers to the customer's verified account)
    REBATE_BALANCE = "rebate_balance"  # 返利账户 (what the customer may spend on later orders)


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
    # The results the period was closed on: the state after this run (None: no run yet).
    closed_after_run_id: Mapped[int | None] = mapped_column(ForeignKey("accrual_run.id"))


class AccrualRun(Base):
    """One run. Its result rows are facts, not records: they live in the fact store as one
    immutable Parquet file per run (``results_file``, checked by ``results_sha256``)."""

    __tablename__ = "accrual_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(120))
    # What the run read, so any result can be reproduced: batch ids (sales and dimensions),
    # agreement version ids with their counting windows, the versions it re-rated, as-of.
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    results_file: Mapped[str | None] = mapped_column(String(255))
    results_sha256: Mapped[str | None] = mapped_column(String(64))
    results_stored: Mapped[int] = mapped_column(Integer, default=0)
    lines_posted: Mapped[int] = mapped_column(Integer, default=0)


class VersionFirstRun(Base):
    """The first accrual run that held each agreement version: what a closed month's sales
    were for a version approved after the month closed (ADR 0010, as amended). Written by
    that run; never changed."""

    __tablename__ = "version_first_run"

    version_id: Mapped[int] = mapped_column(ForeignKey("agreement_version.id"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("accrual_run.id"))


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


class RebatePeriod(Base):
    """A rebate period of an agreement version, as journal lines name it: which agreement, and
    its dates. Written once, before the first line that names it, and never changed (append-
    only, like the journal): a version's terms, and so its periods, never change.

    The lines hold only ``(version_id, period_index)``: three values fewer per line than when
    each carried its agreement code and dates, about a third less to write at every run's
    load (ADR 0004, decision 12)."""

    __tablename__ = "rebate_period"

    version_id: Mapped[int] = mapped_column(ForeignKey("agreement_version.id"), primary_key=True)
    period_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    agreement_code: Mapped[str] = mapped_column(String(64))
    period_start: Mapped[dt.date] = mapped_column(Date)
    period_end: Mapped[dt.date] = mapped_column(Date)  # exclusive

    @classmethod
    def of(cls, line: Any) -> Any:
        """The join condition to the period of ``line`` (``JournalLine`` or an alias)."""
        return and_(cls.version_id == line.version_id, cls.period_index == line.period_index)


class JournalLine(Base):
    """A posting: ``amount`` moves from ``credit_account`` to ``debit_account``.

    Each line debits one account and credits another by the same positive amount, so every entry
    balances by construction (CHECK constraints refuse anything else). The GL export shows each
    line as its debit row and its credit row. The key columns say which agreement version x
    beneficiary x rebate period the amount belongs to; the period's agreement and dates are in
    ``rebate_period``.
    """

    __tablename__ = "journal_line"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("debit_account <> credit_account", name="two_accounts"),
        # Every line names an entry that exists. SQLite checks this foreign key per row at
        # little cost; PostgreSQL checks it once per statement instead (a trigger, migration
        # 0012): its per-row check took 2 of the 4 s that COPY of a full run's 550,025 lines
        # took (ADR 0004, decision 11). Entries are append-only, so none can go missing later.
        ForeignKeyConstraint(["entry_id"], ["journal_entry.id"]).ddl_if(dialect="sqlite"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(Integer, index=True)
    debit_account: Mapped[str] = mapped_column(String(40))
    credit_account: Mapped[str] = mapped_column(String(40))
    amount: Mapped[Decimal] = mapped_column(Amount())
    # No foreign key: lines are written in bulk and never change; the entry is the reference,
    # and the rebate period is written first.
    version_id: Mapped[int] = mapped_column(Integer, index=True)
    beneficiary: Mapped[str] = mapped_column(String(64))
    period_index: Mapped[int] = mapped_column(Integer)
