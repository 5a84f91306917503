"""Entries posted by people's actions rather than accrual runs: payouts, rebate balance uses
and expiries. Each line is a posting between two accounts for one agreement version x
beneficiary x rebate period, so the liability per key stays accrued minus settled."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from fanli.kit.sql import chunks
from fanli.ledger.models import Account, EntryKind, JournalEntry, JournalLine, RebatePeriod
from fanli.ledger.periods import posting_period

# version id, period index -> agreement code, period start, period end (exclusive)
PeriodKey = tuple[int, int]
PeriodOf = tuple[str, dt.date, dt.date]


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
    record_periods(
        session,
        [
            ((p.version_id, p.period_index), (p.agreement_code, p.period_start, p.period_end))
            for p in lines
        ],
    )
    for p in lines:
        if p.amount < 0:
            raise ValueError("a posting amount is positive; swap the accounts instead")
        session.add(
            JournalLine(
                entry_id=entry.id,
                debit_account=p.debit,
                credit_account=p.credit,
                amount=p.amount,
                version_id=p.version_id,
                beneficiary=p.beneficiary,
                period_index=p.period_index,
            )
        )
    session.flush()
    return entry


def record_periods(session: Session, periods: list[tuple[PeriodKey, PeriodOf]]) -> int:
    """Store the rebate periods that lines are about to name and the journal does not hold
    yet; the number stored. A period is written once: one the journal holds already must be
    given as it was (a version's periods follow from its terms, which never change), so a
    disagreement is a fault in Fanli, refused before any line is written."""
    wanted: dict[PeriodKey, PeriodOf] = {}
    for key, period in periods:
        if wanted.setdefault(key, period) != period:
            raise RuntimeError(
                f"rebate period {key[1]} of agreement version {key[0]} given twice: "
                f"{wanted[key]} and {period}"
            )
    if not wanted:
        return 0
    versions = sorted({version_id for version_id, _index in wanted})
    held: dict[PeriodKey, PeriodOf] = {}
    # A run's versions number some hundreds at most; chunks keep SQLite's parameters bounded.
    for chunk in chunks(versions):
        for row in session.execute(
            select(
                RebatePeriod.version_id,
                RebatePeriod.period_index,
                RebatePeriod.agreement_code,
                RebatePeriod.period_start,
                RebatePeriod.period_end,
            ).where(RebatePeriod.version_id.in_(chunk))
        ):
            held[(row[0], row[1])] = (row[2], row[3], row[4])
    new = []
    for key, period in sorted(wanted.items()):
        stored = held.get(key)
        if stored is None:
            new.append(
                {
                    "version_id": key[0],
                    "period_index": key[1],
                    "agreement_code": period[0],
                    "period_start": period[1],
                    "period_end": period[2],
                }
            )
        elif stored != period:
            raise RuntimeError(
                f"rebate period {key[1]} of agreement version {key[0]} is held as {stored}, "
                f"not {period}"
            )
    if new:
        session.execute(insert(RebatePeriod), new)
    return len(new)
