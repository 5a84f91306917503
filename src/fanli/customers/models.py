"""Customers (legal entities), buying groups, dated group membership, the bank accounts a
rebate may be paid to, and due-diligence records."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Date, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fanli.db.base import Base, UtcDateTime


class Customer(Base):
    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)  # the id in sales files
    legal_name: Mapped[str] = mapped_column(String(200))
    credit_code: Mapped[str | None] = mapped_column(String(18), unique=True)  # 统一社会信用代码
    tax_number: Mapped[str | None] = mapped_column(String(32))
    segment: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(64))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CustomerGroup(Base):
    __tablename__ = "customer_group"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)


class GroupMembership(Base):
    """A customer belongs to a group from ``valid_from`` until ``valid_to`` (exclusive)."""

    __tablename__ = "group_membership"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("customer_group.id"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date | None] = mapped_column(Date)


class BankAccount(Base):
    """A bank account registered to a customer. A transfer may go only to an account whose holder
    is the customer itself and which a second person verified (maker-checker, by constraint)."""

    __tablename__ = "bank_account"
    __table_args__ = (
        UniqueConstraint("customer_id", "account_number"),
        CheckConstraint("verified_by IS NULL OR verified_by <> registered_by", name="two_people"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    bank_name: Mapped[str] = mapped_column(String(200))
    account_number: Mapped[str] = mapped_column(String(64))
    holder_name: Mapped[str] = mapped_column(String(200))  # as the bank holds it
    country: Mapped[str] = mapped_column(String(2))  # ISO 3166-1 alpha-2
    registered_by: Mapped[str] = mapped_column(String(64))
    registered_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    verified_by: Mapped[str | None] = mapped_column(String(64))
    verified_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class DueDiligenceKind(StrEnum):
    BUSINESS_LICENCE = "business_licence"  # 营业执照 seen and current
    REGISTRATION_VERIFIED = "registration_verified"  # credit code checked with the registry
    BENEFICIAL_OWNERS = "beneficial_owners"  # 受益所有人 identified
    BLACKLIST_CHECK = "blacklist_check"  # not on the internal blacklist


class DueDiligenceRecord(Base):
    """One check of one kind for one customer, valid on days in ``[checked_on, expires_on)``."""

    __tablename__ = "due_diligence"
    __table_args__ = (CheckConstraint("checked_on < expires_on", name="dates_ordered"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    passed: Mapped[bool] = mapped_column()
    reference: Mapped[str] = mapped_column(String(200))  # document or registry reference
    checked_on: Mapped[dt.date] = mapped_column(Date)
    expires_on: Mapped[dt.date] = mapped_column(Date)
    note: Mapped[str] = mapped_column(String(500), default="")
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class CustomerAssignment(Base):
    """A sales user looks after a customer: they see its data, and only theirs."""

    __tablename__ = "customer_assignment"
    __table_args__ = (UniqueConstraint("customer_id", "user_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    user_code: Mapped[str] = mapped_column(String(64), index=True)
    assigned_by: Mapped[str] = mapped_column(String(64))
    assigned_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
