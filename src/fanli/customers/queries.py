"""Reading customers: by code, their verified accounts, and what their due diligence lacks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.customers.models import BankAccount, Customer, CustomerAssignment, DueDiligenceRecord
from fanli.kit.errors import Code, FanliError, NotFoundError, Said, said


class CustomerError(FanliError):
    code = "customer_error"


class CustomerNotFoundError(CustomerError, NotFoundError):
    code = "not_found"


def customer_by_code(session: Session, code: str) -> Customer:
    customer = session.scalar(select(Customer).where(Customer.code == code))
    if customer is None:
        raise CustomerNotFoundError.said("there is no customer {customer}", customer=code)
    return customer


def assigned_codes(session: Session, user_code: str) -> set[str]:
    """The customers assigned to a sales user."""
    return set(
        session.scalars(
            select(Customer.code)
            .join(CustomerAssignment, CustomerAssignment.customer_id == Customer.id)
            .where(CustomerAssignment.user_code == user_code)
        )
    )


def bank_accounts(session: Session, customer_code: str) -> list[BankAccount]:
    customer = customer_by_code(session, customer_code)
    return list(
        session.scalars(
            select(BankAccount)
            .where(BankAccount.customer_id == customer.id)
            .order_by(BankAccount.id)
        )
    )


def due_diligence_gaps(
    session: Session, customer: Customer, required: Iterable[str], day: dt.date
) -> list[Said]:
    """For each required kind, why the customer's due diligence does not cover ``day``: no
    record, only expired ones, or the latest check failed. Empty when it is complete."""
    records = session.scalars(
        select(DueDiligenceRecord)
        .where(DueDiligenceRecord.customer_id == customer.id)
        .order_by(DueDiligenceRecord.checked_on, DueDiligenceRecord.id)
    ).all()
    gaps = []
    for kind in sorted(set(required)):
        of_kind = [r for r in records if r.kind == kind and r.checked_on <= day]
        if not of_kind:
            gaps.append(said("{kind}: never recorded", kind=Code(kind)))
            continue
        latest = of_kind[-1]
        if not latest.passed:
            gaps.append(
                said(
                    "{kind}: the check of {day} failed ({reference})",
                    kind=Code(kind),
                    day=latest.checked_on,
                    reference=latest.reference,
                )
            )
        elif latest.expires_on <= day:
            gaps.append(said("{kind}: lapsed on {day}", kind=Code(kind), day=latest.expires_on))
    return gaps
