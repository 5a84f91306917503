"""Rebate balance accounts (返利账户): credits from settlements paid as a balance, spent against
later orders, locked while a use waits for approval, released when they expire.

Journal: a payout credits ``rebate_balance`` (from the refund liability); an approved use moves
it to ``accounts_receivable`` (the order is partly paid by the balance); an expiry releases it
to ``rebate_contra_revenue`` (the revenue reduction is reversed). Each is one entry.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.audit.service import record
from fanli.customers.queries import customer_by_code
from fanli.kit.errors import FanliError, said
from fanli.kit.money import MAX_AMOUNT, decimal_places, minor_unit
from fanli.ledger.models import Account, EntryKind
from fanli.ledger.postings import Posting, post_entry
from fanli.settlements.idempotency import claim, remember
from fanli.settlements.models import (
    BalanceCredit,
    BalanceUse,
    CreditStatus,
    Payout,
    Settlement,
    UseStatus,
)
from fanli.users.actor import Actor, PermissionDeniedError, Role, require


class BalanceError(FanliError):
    code = "balance_refused"


def _posting(credit: BalanceCredit, amount: Decimal, *, debit: Account, to: Account) -> Posting:
    return Posting(
        debit=debit,
        credit=to,
        amount=amount,
        agreement_code=credit.agreement_code,
        version_id=credit.version_id,
        beneficiary=credit.customer_code,
        period_index=credit.period_index,
        period_start=credit.period_start,
        period_end=credit.period_end,
    )


def _currency_of(session: Session, credit: BalanceCredit) -> str:
    """The currency of the settlement whose payout made the credit (or the credit it is
    what was left of)."""
    while credit.payout_id is None:
        assert credit.parent_id is not None  # a credit is a payout's or a remainder
        parent = session.get(BalanceCredit, credit.parent_id)
        assert parent is not None
        credit = parent
    currency = session.scalar(
        select(Settlement.currency)
        .join(Payout, Payout.settlement_id == Settlement.id)
        .where(Payout.id == credit.payout_id)
    )
    assert currency is not None
    return currency


def request_use(
    session: Session,
    customer_code: str,
    *,
    amount: Decimal,
    order_reference: str,
    idempotency_key: str | None,
    actor: Actor,
    now: dt.datetime,
) -> BalanceUse:
    """Ask to spend ``amount`` of a customer's balance on an order. The credit that expires
    first among those large enough is locked until the use is approved or rejected."""
    require(actor, Role.FINANCE, Role.SALES, to=said("request rebate balance uses"))
    request = {
        "customer": customer_code,
        "amount": amount,
        "order": order_reference,
        "actor": actor.code,
    }
    replay = claim(session, idempotency_key, "balance.use", request, now)
    if replay is not None:
        use = session.get(BalanceUse, replay["use_id"])
        assert use is not None
        return use
    assert idempotency_key is not None
    if not 0 < amount < MAX_AMOUNT:
        raise BalanceError.said(
            "a use spends a positive amount below {limit}, not {amount}",
            limit=MAX_AMOUNT,
            amount=amount,
        )
    if not order_reference.strip():
        raise BalanceError.said("a use names the order it pays")
    day = now.date()
    credit = session.scalar(
        select(BalanceCredit)
        .where(
            BalanceCredit.customer_code == customer_code,
            BalanceCredit.status == CreditStatus.AVAILABLE,
            BalanceCredit.valid_until > day,
            BalanceCredit.amount >= amount,
        )
        .order_by(BalanceCredit.valid_until, BalanceCredit.id)
        .limit(1)
        .with_for_update()
    )
    if credit is None:
        raise BalanceError.said(
            "{customer} has no available rebate balance credit of at least {amount} "
            "(`fanli balance {customer}` lists the credits)",
            customer=customer_code,
            amount=amount,
        )
    currency = _currency_of(session, credit)
    if decimal_places(amount) > minor_unit(currency):
        # A fraction of a fen would stay on the balance, and in the journal, for good.
        raise BalanceError.said(
            "an amount in {currency} has at most {places} decimal places, not {amount}",
            currency=currency,
            places=minor_unit(currency),
            amount=amount,
        )
    credit.status = CreditStatus.LOCKED
    use = BalanceUse(
        credit_id=credit.id,
        amount=amount,
        order_reference=order_reference.strip(),
        status=UseStatus.PENDING,
        live=1,
        requested_by=actor.code,
        requested_at=now,
    )
    session.add(use)
    session.flush()
    record(
        session,
        type="balance.use.requested",
        actor=actor.code,
        entity_type="balance_use",
        entity_id=use.id,
        inputs={**request, "idempotency_key": idempotency_key},
        outcome={"credit": credit.id, "status": use.status},
        now=now,
    )
    remember(session, idempotency_key, {"use_id": use.id})
    return use


def decide_use(
    session: Session,
    use_id: int,
    *,
    approve: bool,
    reason: str = "",
    idempotency_key: str | None,
    actor: Actor,
    now: dt.datetime,
) -> BalanceUse:
    """Approve (spend the credit; any remainder becomes a new credit) or reject (unlock it)."""
    require(actor, Role.APPROVER, Role.FINANCE, to=said("decide rebate balance uses"))
    request = {"use": use_id, "approve": approve, "reason": reason, "actor": actor.code}
    replay = claim(session, idempotency_key, "balance.decide", request, now)
    if replay is not None:
        done = session.get(BalanceUse, replay["use_id"])
        assert done is not None
        return done
    assert idempotency_key is not None
    use = session.scalar(select(BalanceUse).where(BalanceUse.id == use_id).with_for_update())
    if use is None:
        raise BalanceError.said("there is no balance use {use}", use=use_id)
    if use.status != UseStatus.PENDING:
        raise BalanceError.said(
            "balance use {id} is {status} already", id=use_id, status=UseStatus(use.status)
        )
    if use.requested_by == actor.code:
        raise PermissionDeniedError.said(
            "{user} requested balance use {use} and cannot decide it", user=actor.code, use=use_id
        )
    if not approve and not reason.strip():
        raise BalanceError.said("rejecting a balance use needs a reason")
    credit = session.scalar(
        select(BalanceCredit).where(BalanceCredit.id == use.credit_id).with_for_update()
    )
    assert credit is not None
    if approve and credit.valid_until <= now.date():
        raise BalanceError.said(
            "credit {credit} expired on {day}: the use cannot be approved; reject it to release "
            "the credit",
            credit=credit.id,
            day=credit.valid_until,
        )
    use.decided_by = actor.code
    use.decided_at = now
    remainder_id = None
    entry_id = None
    if approve:
        use.status = UseStatus.APPROVED
        credit.status = CreditStatus.USED
        credit.closed_at = now
        entry = post_entry(
            session,
            kind=EntryKind.BALANCE_USE,
            day=now.date(),
            memo=f"rebate balance of {credit.customer_code} on order {use.order_reference}",
            postings=[
                _posting(credit, use.amount, debit=Account.REBATE_BALANCE, to=Account.RECEIVABLE)
            ],
            now=now,
        )
        use.journal_entry_id = entry.id
        entry_id = entry.id
        if use.amount < credit.amount:
            remainder = BalanceCredit(
                customer_code=credit.customer_code,
                amount=credit.amount - use.amount,
                valid_until=credit.valid_until,
                status=CreditStatus.AVAILABLE,
                parent_id=credit.id,
                agreement_code=credit.agreement_code,
                version_id=credit.version_id,
                period_index=credit.period_index,
                period_start=credit.period_start,
                period_end=credit.period_end,
                created_at=now,
            )
            session.add(remainder)
            session.flush()
            remainder_id = remainder.id
    else:
        use.status = UseStatus.REJECTED
        use.live = None
        use.reason = reason.strip()
        credit.status = CreditStatus.AVAILABLE
    session.flush()
    record(
        session,
        type="balance.use.approved" if approve else "balance.use.rejected",
        actor=actor.code,
        entity_type="balance_use",
        entity_id=use.id,
        inputs={"reason": reason, "idempotency_key": idempotency_key},
        outcome={
            "status": use.status,
            "credit": credit.id,
            "remainder_credit": remainder_id,
            "journal_entry": entry_id,
        },
        now=now,
    )
    remember(session, idempotency_key, {"use_id": use.id})
    return use


def expire_credits(
    session: Session, *, as_of: dt.date, actor: Actor, now: dt.datetime
) -> list[BalanceCredit]:
    """Expire every available credit whose validity ended by ``as_of`` and release it."""
    require(actor, Role.FINANCE, to=said("expire rebate balances"))
    if as_of > now.date():
        raise BalanceError.said(
            "credits cannot be expired ahead of time ({day} is after today)", day=as_of
        )
    credits = list(
        session.scalars(
            select(BalanceCredit)
            .where(
                BalanceCredit.status == CreditStatus.AVAILABLE,
                BalanceCredit.valid_until <= as_of,
            )
            .order_by(BalanceCredit.id)
            .with_for_update()
        )
    )
    if not credits:
        return []
    for credit in credits:
        credit.status = CreditStatus.EXPIRED
        credit.closed_at = now
    entry = post_entry(
        session,
        kind=EntryKind.BALANCE_EXPIRY,
        day=as_of,
        memo=f"rebate balance credits expired by {as_of}",
        postings=[
            _posting(c, c.amount, debit=Account.REBATE_BALANCE, to=Account.CONTRA_REVENUE)
            for c in credits
        ],
        now=now,
    )
    session.flush()
    record(
        session,
        type="balance.expired",
        actor=actor.code,
        entity_type="balance_credit",
        entity_id=",".join(str(c.id) for c in credits),
        inputs={"as_of": as_of},
        outcome={
            "credits": [
                {"id": c.id, "customer": c.customer_code, "amount": c.amount} for c in credits
            ],
            "journal_entry": entry.id,
        },
        now=now,
    )
    return credits


@dataclass(frozen=True)
class Balance:
    customer_code: str
    available: Decimal  # usable today
    locked: Decimal  # waiting for a use's approval
    credits: list[BalanceCredit]


def balance(session: Session, customer_code: str, day: dt.date) -> Balance:
    customer_by_code(session, customer_code)  # an unknown customer is an error, not zero
    credits = list(
        session.scalars(
            select(BalanceCredit)
            .where(BalanceCredit.customer_code == customer_code)
            .order_by(BalanceCredit.valid_until, BalanceCredit.id)
        )
    )
    available = sum(
        (c.amount for c in credits if c.status == CreditStatus.AVAILABLE and c.valid_until > day),
        Decimal(0),
    )
    locked = sum((c.amount for c in credits if c.status == CreditStatus.LOCKED), Decimal(0))
    return Balance(customer_code, available, locked, credits)
