"""Reading the ledger: liabilities per key, the latest results, account movements."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import duckdb
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fanli.kit.money import ZERO
from fanli.kit.sql import sql_literal
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
    """Each key's liability in the latest run that rated it (non-zero), replayed run by run:
    a run replaces every key of the versions it re-rated whole, and the keys of the touched
    customers of the versions it re-rated for them."""
    held: dict[Key, Decimal] = {}
    for inputs, results_file in session.execute(
        select(AccrualRun.inputs, AccrualRun.results_file).order_by(AccrualRun.id)
    ):
        whole = {int(v) for v in inputs.get("rerated", [])}
        partial = {int(v) for v in inputs.get("rerated_for_customers", [])}
        customers = set(inputs.get("customers", []))
        held = {
            key: amount
            for key, amount in held.items()
            if key[0] not in whole and not (key[0] in partial and key[1] in customers)
        }
        if results_file is None:
            continue
        rows = duckdb.execute(
            f"""SELECT version_id, beneficiary, period_index, liability
            FROM read_parquet({sql_literal(store.path(results_file))}) WHERE liability <> 0"""
        ).fetchall()
        for version_id, beneficiary, period_index, liability in rows:
            held[(int(version_id), beneficiary, int(period_index))] = liability
    return held


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


def accounting_periods(session: Session) -> Sequence[AccountingPeriod]:
    return session.scalars(select(AccountingPeriod).order_by(AccountingPeriod.start)).all()
