"""Reading the ledger: liabilities per key, account movements, and the invariants' inputs."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select, type_coerce
from sqlalchemy.orm import Session

from fanli.db.base import Amount
from fanli.kit.money import ZERO
from fanli.ledger.models import (
    Account,
    AccountingPeriod,
    AccrualResult,
    AccrualRun,
    JournalEntry,
    JournalLine,
)

Key = tuple[int, str, int]  # version id, beneficiary, period index


def liabilities(session: Session) -> dict[Key, Decimal]:
    """What the journal holds per agreement version x beneficiary x rebate period (non-zero)."""
    rows = session.execute(
        select(
            JournalLine.version_id,
            JournalLine.beneficiary,
            JournalLine.period_index,
            type_coerce(func.sum(JournalLine.credit) - func.sum(JournalLine.debit), Amount()),
        )
        .where(JournalLine.account == Account.LIABILITY)
        .group_by(JournalLine.version_id, JournalLine.beneficiary, JournalLine.period_index)
    ).all()
    return {(v, b, p): amount for v, b, p, amount in rows if amount != ZERO}


def latest_results(session: Session) -> dict[Key, Decimal]:
    """The liability of each key in the latest run that rated its version (non-zero)."""
    latest: dict[int, int] = {}
    for run_id, inputs in session.execute(select(AccrualRun.id, AccrualRun.inputs)):
        for version_id in inputs.get("rerated", []):
            latest[int(version_id)] = max(latest.get(int(version_id), 0), run_id)
    result: dict[Key, Decimal] = {}
    for version_id, run_id in latest.items():
        for beneficiary, period_index, liability in session.execute(
            select(
                AccrualResult.beneficiary, AccrualResult.period_index, AccrualResult.liability
            ).where(AccrualResult.run_id == run_id, AccrualResult.version_id == version_id)
        ):
            if liability != ZERO:
                result[(version_id, beneficiary, period_index)] = liability
    return result


def unbalanced_entries(session: Session) -> list[int]:
    """Entries whose debits and credits differ (there must be none)."""
    rows = session.execute(
        select(JournalLine.entry_id)
        .group_by(JournalLine.entry_id)
        .having(func.sum(JournalLine.debit) != func.sum(JournalLine.credit))
    ).all()
    return [row[0] for row in rows]


def account_movements(session: Session, period_code: str) -> dict[str, tuple[Decimal, Decimal]]:
    """Debit and credit totals per Fanli account for one accounting period."""
    rows = session.execute(
        select(JournalLine.account, func.sum(JournalLine.debit), func.sum(JournalLine.credit))
        .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
        .join(AccountingPeriod, AccountingPeriod.id == JournalEntry.accounting_period_id)
        .where(AccountingPeriod.code == period_code)
        .group_by(JournalLine.account)
    ).all()
    return {account: (debit or ZERO, credit or ZERO) for account, debit, credit in rows}
