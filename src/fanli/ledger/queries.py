"""Reading the ledger: liabilities per key, the latest results, account movements."""

from __future__ import annotations

from decimal import Decimal

import duckdb
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fanli.kit.money import ZERO
from fanli.ledger.models import AccountingPeriod, AccrualRun, JournalEntry, JournalLine
from fanli.ledger.service import liability_balance
from fanli.sales.store import FactStore

Key = tuple[int, str, int]  # version id, beneficiary, period index


def liabilities(session: Session) -> dict[Key, Decimal]:
    """What the journal holds per agreement version x beneficiary x rebate period (non-zero)."""
    rows = session.execute(
        select(
            JournalLine.version_id,
            JournalLine.beneficiary,
            JournalLine.period_index,
            liability_balance(),
        ).group_by(JournalLine.version_id, JournalLine.beneficiary, JournalLine.period_index)
    ).all()
    return {(v, b, p): amount for v, b, p, amount in rows if amount != ZERO}


def latest_results(session: Session, store: FactStore) -> dict[Key, Decimal]:
    """The liability of each key in the latest run that rated its version (non-zero)."""
    latest: dict[int, int] = {}
    files: dict[int, str | None] = {}
    for run_id, inputs, results_file in session.execute(
        select(AccrualRun.id, AccrualRun.inputs, AccrualRun.results_file).order_by(AccrualRun.id)
    ):
        files[run_id] = results_file
        for version_id in inputs.get("rerated", []):
            latest[int(version_id)] = run_id
    result: dict[Key, Decimal] = {}
    by_run: dict[int, list[int]] = {}
    for version_id, run_id in latest.items():
        by_run.setdefault(run_id, []).append(version_id)
    for run_id, version_ids in by_run.items():
        name = files[run_id]
        if name is None:
            continue  # the run found nothing to hold for these versions
        rows = duckdb.execute(
            f"""SELECT version_id, beneficiary, period_index, liability
            FROM read_parquet('{store.path(name)}')
            WHERE version_id IN ({", ".join(str(v) for v in version_ids)}) AND liability <> 0"""
        ).fetchall()
        for version_id, beneficiary, period_index, liability in rows:
            result[(int(version_id), beneficiary, int(period_index))] = liability
    return result


def account_movements(session: Session, period_code: str) -> dict[str, tuple[Decimal, Decimal]]:
    """Debit and credit totals per Fanli account for one accounting period."""
    movements: dict[str, tuple[Decimal, Decimal]] = {}
    for side, column in (
        ("debit", JournalLine.debit_account),
        ("credit", JournalLine.credit_account),
    ):
        rows = session.execute(
            select(column, func.sum(JournalLine.amount))
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .join(AccountingPeriod, AccountingPeriod.id == JournalEntry.accounting_period_id)
            .where(AccountingPeriod.code == period_code)
            .group_by(column)
        ).all()
        for account, total in rows:
            debit, credit = movements.get(account, (ZERO, ZERO))
            movements[account] = (
                (debit + total, credit) if side == "debit" else (debit, credit + total)
            )
    return movements
