"""Entries posted by people's actions rather than accrual runs: payouts, rebate balance uses
and expiries. Each line is a posting between two accounts for one agreement version x
beneficiary x rebate period, so the liability per key stays accrued minus settled."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.orm import Session

from fanli.ledger.models import Account, EntryKind, JournalEntry, JournalLine
from fanli.ledger.periods import posting_period


@dataclass(frozen=True)
class Posting:
    """``amount`` (positive) from ``credit`` to ``debit`` for one key."""

    debit: Account
    credit: Account
    amount: Decimal
    agreement_code: str
    version_id: int
    beneficiary: str
    period_index: int
    period_start: dt.date
    period_end: dt.date


def signed(amount: Decimal, *, debit: Account, credit: Account) -> tuple[Account, Account, Decimal]:
    """(debit, credit, amount) for a signed amount: a negative one swaps the two accounts."""
    return (debit, credit, amount) if amount > 0 else (credit, debit, -amount)


def post_entry(
    session: Session,
    *,
    kind: EntryKind,
    day: dt.date,
    memo: str,
    postings: list[Posting],
    now: dt.datetime,
) -> JournalEntry:
    """One entry dated ``day`` (in the first open accounting period from there) with these
    postings. Zero postings are dropped; an entry needs at least one line."""
    lines = [p for p in postings if p.amount != 0]
    if not lines:
        raise ValueError("an entry needs at least one non-zero posting")
    period = posting_period(session, day)
    entry = JournalEntry(
        accounting_period_id=period.id,
        run_id=None,
        kind=kind,
        entry_date=day if period.start <= day < period.end else period.start,
        memo=memo[:300],
        posted_at=now,
    )
    session.add(entry)
    session.flush()
    for p in lines:
        if p.amount < 0:
            raise ValueError("a posting amount is positive; swap the accounts instead")
        session.add(
            JournalLine(
                entry_id=entry.id,
                debit_account=p.debit,
                credit_account=p.credit,
                amount=p.amount,
                agreement_code=p.agreement_code,
                version_id=p.version_id,
                beneficiary=p.beneficiary,
                period_index=p.period_index,
                period_start=p.period_start,
                period_end=p.period_end,
            )
        )
    session.flush()
    return entry
