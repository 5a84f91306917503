"""Settlements, approvals, payouts, rebate balance credits and uses, idempotency records.

The database itself keeps money moving once and only on the legal path:

- one open (proposed or approved) settlement per agreement x beneficiary x rebate period:
  ``open_key`` is set while it is open and unique (NULLs never collide);
- a payout references its settlement *and the inputs hash the settlement was approved with*
  through a composite foreign key, so a payout of an unapproved settlement cannot be stored;
  ``settlement_id`` is unique (one payout per settlement) and ``journal_entry_id`` is NOT NULL
  and unique (no payout without its own ledger entry);
- a bank transfer names a bank account, a credit note or red invoice its document number;
- a rebate balance credit has at most one live use (``live`` is 1 or NULL, unique per credit);
- ``approved_hash`` is set only while a settlement is approved or paid (a rejected one loses it).
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
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from fanli.db.base import Amount, Base, UtcDateTime


class SettlementStatus(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    PAID = "paid"


# A settlement that may still be approved or paid.
OPEN = (SettlementStatus.PROPOSED, SettlementStatus.APPROVED)


class Settlement(Base):
    __tablename__ = "settlement"
    __table_args__ = (
        UniqueConstraint("open_key"),
        UniqueConstraint("id", "approved_hash"),  # the target of the payout's composite key
        CheckConstraint(
            "approved_hash IS NULL OR status IN ('approved', 'paid')", name="approved_only"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agreement_code: Mapped[str] = mapped_column(String(64), index=True)
    beneficiary: Mapped[str] = mapped_column(String(64), index=True)
    period_start: Mapped[dt.date] = mapped_column(Date)
    period_end: Mapped[dt.date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal] = mapped_column(Amount())
    form: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    # What the amount stands on: per version, the run and rebate read and what was settled
    # before. Approvals are given for ``inputs_hash``; a change needs approving again.
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    inputs_hash: Mapped[str] = mapped_column(String(64))
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # [{role, count}] from the policy
    # What bands and limits are judged on: the larger of the amount and the period's total.
    approval_basis: Mapped[Decimal] = mapped_column(Amount())
    round: Mapped[int] = mapped_column(Integer, default=1)  # +1 at each refresh
    policy_version: Mapped[int] = mapped_column(Integer)
    approved_hash: Mapped[str | None] = mapped_column(String(64))  # set once fully approved
    open_key: Mapped[str | None] = mapped_column(String(200))
    proposed_by: Mapped[str] = mapped_column(String(64))
    proposed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    decided_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    rejection_reason: Mapped[str | None] = mapped_column(String(500))


class SettlementLine(Base):
    """The part of a settlement for one agreement version (its journal key)."""

    __tablename__ = "settlement_line"
    __table_args__ = (UniqueConstraint("settlement_id", "version_id", "period_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    settlement_id: Mapped[int] = mapped_column(ForeignKey("settlement.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("agreement_version.id"))
    period_index: Mapped[int] = mapped_column(Integer)
    amount: Mapped[Decimal] = mapped_column(Amount())


class SettlementApproval(Base):
    """One approval of one round of a settlement (a refresh starts a new round); each person
    counts once per round. ``inputs_hash`` records what the approver saw."""

    __tablename__ = "settlement_approval"
    __table_args__ = (
        UniqueConstraint("settlement_id", "round", "approver"),
        UniqueConstraint("settlement_id", "round", "principal"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    settlement_id: Mapped[int] = mapped_column(ForeignKey("settlement.id"), index=True)
    inputs_hash: Mapped[str] = mapped_column(String(64))
    round: Mapped[int] = mapped_column(Integer)
    approver: Mapped[str] = mapped_column(String(64))
    principal: Mapped[str] = mapped_column(String(64))  # whom it counts for (delegations)
    delegation_id: Mapped[int | None] = mapped_column(ForeignKey("delegation.id"))
    role: Mapped[str] = mapped_column(String(32))
    approved_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class Payout(Base):
    __tablename__ = "payout"
    __table_args__ = (
        UniqueConstraint("settlement_id"),
        UniqueConstraint("journal_entry_id"),
        UniqueConstraint("form", "document_number"),  # a document number is booked once
        ForeignKeyConstraint(
            ["settlement_id", "approved_hash"], ["settlement.id", "settlement.approved_hash"]
        ),
        CheckConstraint(
            "form <> 'bank_transfer' OR bank_account_id IS NOT NULL", name="transfer_account"
        ),
        CheckConstraint(
            "form NOT IN ('credit_note', 'red_invoice') OR document_number IS NOT NULL",
            name="document_number",
        ),
        CheckConstraint("amount <> 0", name="amount_nonzero"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    settlement_id: Mapped[int] = mapped_column(Integer, nullable=False)
    approved_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    journal_entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entry.id"), nullable=False)
    form: Mapped[str] = mapped_column(String(32))
    amount: Mapped[Decimal] = mapped_column(Amount())
    document_number: Mapped[str | None] = mapped_column(String(64))
    original_invoices: Mapped[list[str]] = mapped_column(JSON, default=list)
    bank_account_id: Mapped[int | None] = mapped_column(ForeignKey("bank_account.id"))
    paid_by: Mapped[str] = mapped_column(String(64))
    paid_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class CreditStatus(StrEnum):
    AVAILABLE = "available"
    LOCKED = "locked"  # a use is waiting for approval
    USED = "used"
    EXPIRED = "expired"


class BalanceCredit(Base):
    """Money on a customer's rebate balance account, usable until ``valid_until`` (exclusive).

    A credit is spent once: a use takes all of it, and what the order did not need is a new
    credit (``parent_id``) with the same expiry.
    """

    __tablename__ = "balance_credit"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_code: Mapped[str] = mapped_column(String(64), index=True)
    amount: Mapped[Decimal] = mapped_column(Amount())
    valid_until: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("payout.id"), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("balance_credit.id"), unique=True)
    # The key of the settlement it came from, for its journal lines.
    agreement_code: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(Integer)
    period_index: Mapped[int] = mapped_column(Integer)
    period_start: Mapped[dt.date] = mapped_column(Date)
    period_end: Mapped[dt.date] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    closed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class UseStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class BalanceUse(Base):
    """Spending (part of) one credit against an order, approved by someone else."""

    __tablename__ = "balance_use"
    __table_args__ = (
        UniqueConstraint("credit_id", "live"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("live IS NULL OR live = 1", name="live_flag"),
        CheckConstraint("decided_by IS NULL OR decided_by <> requested_by", name="two_people"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    credit_id: Mapped[int] = mapped_column(ForeignKey("balance_credit.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Amount())
    order_reference: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    live: Mapped[int | None] = mapped_column(Integer)  # 1 while pending or approved
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    reason: Mapped[str | None] = mapped_column(String(500))
    journal_entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entry.id"))


class IdempotencyRecord(Base):
    """The first result of a money-moving call, kept under the caller's key."""

    __tablename__ = "idempotency_record"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    operation: Mapped[str] = mapped_column(String(64))
    request_sha256: Mapped[str] = mapped_column(String(64))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class StatementDecision(StrEnum):
    SIGNED_OFF = "signed_off"  # the customer agrees with the numbers
    DISPUTED = "disputed"  # the customer does not, and says why


class StatementResponse(Base):
    """A customer's answer to its statement for one rebate period: signed off, or disputed with
    a comment. ``statement_sha256`` pins the numbers it answered, so a later change of them
    shows as a statement nobody has answered yet."""

    __tablename__ = "statement_response"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_code: Mapped[str] = mapped_column(String(64), index=True)
    period_start: Mapped[dt.date] = mapped_column(Date)
    statement_sha256: Mapped[str] = mapped_column(String(64))
    # The digest of the results alone, without the settlements: a correction has come when
    # these change (a settlement proposed meanwhile is not one). Empty on answers recorded
    # before it was kept.
    rows_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    decision: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(String(2000), default="")
    responded_by: Mapped[str] = mapped_column(String(64))
    responded_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class DisputeOutcome(StrEnum):
    UPHELD = "upheld"  # the numbers stand; the answer explains them
    CORRECTING = "correcting"  # they are wrong; a correction follows and the statement changes


class DisputeAnswer(Base):
    """The company's answer to a disputed statement, once: the numbers stand (and why), or a
    correction is under way (and what). The customer sees it beside its dispute and may then
    sign off, or dispute again; a corrected statement has new numbers and is answered afresh."""

    __tablename__ = "dispute_answer"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # unique: a dispute has one answer; the customer's next word is a new response
    response_id: Mapped[int] = mapped_column(ForeignKey("statement_response.id"), unique=True)
    outcome: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(String(2000))
    answered_by: Mapped[str] = mapped_column(String(64))
    answered_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
