"""Registering and verifying customers' bank accounts, recording due diligence.

Imports of the customer master live in ``fanli.sales.service``; this module holds what people
record about a customer one at a time, each with an audit event.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.audit.service import record
from fanli.customers.models import (
    BankAccount,
    CustomerAssignment,
    DueDiligenceKind,
    DueDiligenceRecord,
)
from fanli.customers.queries import CustomerError, customer_by_code
from fanli.kit.errors import said
from fanli.users.actor import Actor, Role, require


def register_account(
    session: Session,
    customer_code: str,
    *,
    bank_name: str,
    account_number: str,
    holder_name: str,
    country: str,
    actor: Actor,
    now: dt.datetime,
) -> BankAccount:
    """Register a bank account of a customer (the maker). It takes no payment until a second
    person verifies it."""
    require(actor, Role.FINANCE, to=said("register bank accounts"))
    customer = customer_by_code(session, customer_code)
    number = "".join(account_number.split())
    if not number or not bank_name.strip():
        raise CustomerError.said("a bank account needs a bank name and an account number")
    if holder_name.strip() != customer.legal_name:
        # R3: the account must be in the contracting entity's own name.
        raise CustomerError.said(
            "the account holder {holder} is not {customer}'s legal name {name}: a rebate is "
            "paid only to the customer entity itself",
            holder=repr(holder_name),
            customer=customer_code,
            name=repr(customer.legal_name),
        )
    if len(country) != 2 or not country.isalpha():
        raise CustomerError.said(
            "{country} is not a two-letter country code", country=repr(country)
        )
    if session.scalar(
        select(BankAccount.id).where(
            BankAccount.customer_id == customer.id, BankAccount.account_number == number
        )
    ):
        raise CustomerError.said(
            "account {account} of {customer} is registered already",
            account=number,
            customer=customer_code,
        )
    account = BankAccount(
        customer_id=customer.id,
        bank_name=bank_name.strip(),
        account_number=number,
        holder_name=holder_name.strip(),
        country=country.upper(),
        registered_by=actor.code,
        registered_at=now,
    )
    session.add(account)
    session.flush()
    record(
        session,
        type="customer.bank_account.registered",
        actor=actor.code,
        entity_type="bank_account",
        entity_id=account.id,
        inputs={
            "customer": customer_code,
            "bank": account.bank_name,
            "account_number": number,
            "holder": account.holder_name,
            "country": account.country,
        },
        outcome={"id": account.id, "verified": False},
        now=now,
    )
    return account


def verify_account(
    session: Session, account_id: int, *, actor: Actor, now: dt.datetime
) -> BankAccount:
    """Verify a registered account (the checker): someone other than who registered it."""
    require(actor, Role.FINANCE, Role.COMPLIANCE, to=said("verify bank accounts"))
    # Locked and read fresh: a second verification waits for the first, then finds it done.
    account = session.get(BankAccount, account_id, with_for_update=True, populate_existing=True)
    if account is None:
        raise CustomerError.said("there is no bank account {id}", id=account_id)
    if account.verified_by is not None:
        raise CustomerError.said("bank account {id} is verified already", id=account_id)
    if account.registered_by == actor.code:
        raise CustomerError.said(
            "{user} registered bank account {id}; a second person must verify it",
            user=actor.code,
            id=account_id,
        )
    account.verified_by = actor.code
    account.verified_at = now
    session.flush()
    record(
        session,
        type="customer.bank_account.verified",
        actor=actor.code,
        entity_type="bank_account",
        entity_id=account.id,
        inputs={"registered_by": account.registered_by},
        outcome={"verified": True},
        now=now,
    )
    return account


def add_due_diligence(
    session: Session,
    customer_code: str,
    *,
    kind: DueDiligenceKind,
    passed: bool,
    reference: str,
    checked_on: dt.date,
    expires_on: dt.date,
    note: str = "",
    actor: Actor,
    now: dt.datetime,
) -> DueDiligenceRecord:
    """Record one due-diligence check of a customer, valid from ``checked_on`` until
    ``expires_on``. A failed check is recorded too: it blocks until a later check passes."""
    require(actor, Role.COMPLIANCE, to=said("record due diligence"))
    customer = customer_by_code(session, customer_code)
    if checked_on > now.date():  # a check is recorded once made, never ahead of it
        raise CustomerError.said(
            "a check made on {checked} has not been made yet: it is {today} today",
            checked=checked_on,
            today=now.date(),
        )
    if checked_on >= expires_on:
        raise CustomerError.said(
            "a check made on {checked} must expire after it, not {expires}",
            checked=checked_on,
            expires=expires_on,
        )
    if not reference.strip():
        raise CustomerError.said("a due-diligence record needs a reference (document or registry)")
    entry = DueDiligenceRecord(
        customer_id=customer.id,
        kind=DueDiligenceKind(kind).value,
        passed=passed,
        reference=reference.strip(),
        checked_on=checked_on,
        expires_on=expires_on,
        note=note,
        recorded_by=actor.code,
        recorded_at=now,
    )
    session.add(entry)
    session.flush()
    record(
        session,
        type="customer.due_diligence.recorded",
        actor=actor.code,
        entity_type="customer",
        entity_id=customer_code,
        inputs={
            "kind": entry.kind,
            "passed": passed,
            "reference": entry.reference,
            "checked_on": checked_on,
            "expires_on": expires_on,
        },
        outcome={"id": entry.id},
        now=now,
    )
    return entry


def assign(
    session: Session, customer_code: str, user_code: str, *, actor: Actor, now: dt.datetime
) -> CustomerAssignment:
    """Assign a customer to a sales user."""
    require(actor, Role.ADMINISTRATOR, Role.FINANCE, to=said("assign customers"))
    customer = customer_by_code(session, customer_code)
    if session.scalar(
        select(CustomerAssignment.id).where(
            CustomerAssignment.customer_id == customer.id,
            CustomerAssignment.user_code == user_code,
        )
    ):
        raise CustomerError.said(
            "{customer} is assigned to {user} already", customer=customer_code, user=user_code
        )
    row = CustomerAssignment(
        customer_id=customer.id, user_code=user_code, assigned_by=actor.code, assigned_at=now
    )
    session.add(row)
    session.flush()
    record(
        session,
        type="customer.assigned",
        actor=actor.code,
        entity_type="customer",
        entity_id=customer_code,
        inputs={"user": user_code},
        outcome={"id": row.id},
        now=now,
    )
    return row
