"""Reading the ledger: liabilities per key, the latest results, account movements."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fanli.agreements.queries import DEFAULT_CURRENCY, version_currencies
from fanli.engine.results import COLUMNS as RESULT_COLUMNS
from fanli.engine.results import ResultRow
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


_Run = tuple[int, frozenset[int], frozenset[int], frozenset[str], str | None]


def _replay(
    session: Session, store: FactStore, columns: str, where: str
) -> dict[Key, tuple[int, tuple[Any, ...]]]:
    """Each key's latest row (with the run that wrote it) among the rows matching ``where``,
    replayed run by run: a run replaces every key of the versions it re-rated whole, and the
    keys of the touched customers of the versions it re-rated for them.

    Runs and their result files never change, so the replay is cached per list of runs: a
    statement read again after no new run costs one query for the run list. Callers must not
    change the returned dict."""
    runs: tuple[_Run, ...] = tuple(
        (
            run_id,
            frozenset(int(v) for v in inputs.get("rerated", [])),
            frozenset(int(v) for v in inputs.get("rerated_for_customers", [])),
            frozenset(inputs.get("customers", [])),
            results_file,
        )
        for run_id, inputs, results_file in session.execute(
            select(AccrualRun.id, AccrualRun.inputs, AccrualRun.results_file).order_by(
                AccrualRun.id
            )
        )
    )
    return _replay_runs(runs, str(store.root), columns, where)


@lru_cache(maxsize=512)
def _replay_runs(
    runs: tuple[_Run, ...], root: str, columns: str, where: str
) -> dict[Key, tuple[int, tuple[Any, ...]]]:
    held: dict[Key, tuple[int, tuple[Any, ...]]] = {}
    store = FactStore(Path(root))
    # A DuckDB connection of its own: the process-wide default one must not be shared by the
    # threads of concurrent requests.
    with duckdb.connect() as connection:
        for run_id, whole, partial, customers, results_file in runs:
            held = {
                key: row
                for key, row in held.items()
                if key[0] not in whole and not (key[0] in partial and key[1] in customers)
            }
            if results_file is None:
                continue
            rows = connection.execute(
                f"""SELECT version_id, beneficiary, period_index, {columns}
                FROM read_parquet({sql_literal(store.path(results_file))}) WHERE {where}"""
            ).fetchall()
            for version_id, beneficiary, period_index, *rest in rows:
                held[(int(version_id), beneficiary, int(period_index))] = (run_id, tuple(rest))
    return held


def latest_results(session: Session, store: FactStore) -> dict[Key, Decimal]:
    """Each key's liability in the latest run that rated it (non-zero)."""
    return {
        key: row[0]
        for key, (_run, row) in _replay(session, store, "liability", "liability <> 0").items()
    }


@dataclass(frozen=True)
class EarnedRow:
    """What the latest run says one version earned for a beneficiary in one rebate period."""

    run_id: int | None  # None: no run holds a row for it any more (its rebate is zero)
    version_id: int
    period_index: int
    period_start: dt.date
    period_end: dt.date
    currency: str
    rebate: Decimal  # the period's rebate on the basis so far (actual, after caps)


def earned(
    session: Session, store: FactStore, agreement_code: str, beneficiary: str
) -> list[EarnedRow]:
    """The latest result rows of every version of one agreement for one beneficiary."""
    where = (
        f"agreement_id = {sql_literal(agreement_code)} AND beneficiary = {sql_literal(beneficiary)}"
    )
    rows = _replay(session, store, "period_start, period_end, currency, rebate", where)
    return sorted(
        (
            EarnedRow(run_id, key[0], key[2], start, end, currency, Decimal(rebate))
            for key, (run_id, (start, end, currency, rebate)) in rows.items()
        ),
        key=lambda row: (row.period_start, row.version_id),
    )


def account_movements(
    session: Session, period_code: str
) -> dict[str, dict[str, tuple[Decimal, Decimal]]]:
    """Per currency, debit and credit totals per Fanli account for one accounting period (an
    amount is in its agreement's currency, and two currencies never add up)."""
    currencies = version_currencies(session)
    movements: dict[str, dict[str, tuple[Decimal, Decimal]]] = {}
    for side, column in (
        ("debit", JournalLine.debit_account),
        ("credit", JournalLine.credit_account),
    ):
        rows = session.execute(
            select(JournalLine.version_id, column, func.sum(JournalLine.amount))
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .join(AccountingPeriod, AccountingPeriod.id == JournalEntry.accounting_period_id)
            .where(AccountingPeriod.code == period_code)
            .group_by(JournalLine.version_id, column)
        ).all()
        for version_id, account, total in rows:
            held = movements.setdefault(currencies.get(version_id, DEFAULT_CURRENCY), {})
            debit, credit = held.get(account, (ZERO, ZERO))
            held[account] = (debit + total, credit) if side == "debit" else (debit, credit + total)
    return movements


@dataclass(frozen=True)
class RunEntry:
    """One journal entry a run posted: its kind (accrual, adjustment), where and how much."""

    kind: str
    period: str  # the accounting period it was posted in
    entry_date: dt.date
    lines: int
    change: Decimal  # on the rebate liability


def run_entries(session: Session, run_id: int) -> list[RunEntry]:
    rows = session.execute(
        select(
            JournalEntry.kind,
            AccountingPeriod.code,
            JournalEntry.entry_date,
            func.count(JournalLine.id),
            liability_balance(),
        )
        .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
        .join(AccountingPeriod, AccountingPeriod.id == JournalEntry.accounting_period_id)
        .where(JournalEntry.run_id == run_id)
        .group_by(
            JournalEntry.id, JournalEntry.kind, AccountingPeriod.code, JournalEntry.entry_date
        )
        .order_by(JournalEntry.id)
    ).all()
    return [RunEntry(*row) for row in rows]


def accounting_periods(session: Session) -> Sequence[AccountingPeriod]:
    return session.scalars(select(AccountingPeriod).order_by(AccountingPeriod.start)).all()


@dataclass(frozen=True)
class StatementRow:
    """One agreement version's latest result for a customer in one rebate period."""

    agreement_code: str
    version: int
    period_index: int
    period_start: dt.date
    period_end: dt.date
    currency: str
    lines: int
    basis: Decimal
    tier_basis: Decimal
    tier: int
    rate: Decimal | None
    rebate: Decimal  # earned so far (actual)
    accrued: Decimal  # what the ledger holds for it (expected mode may differ)


def statement_rows(session: Session, store: FactStore, beneficiary: str) -> list[StatementRow]:
    """What every agreement earned for a customer, period by period, from the latest runs:
    the same numbers the accrual posted and settlements are computed from."""
    rows = _replay(
        session,
        store,
        "agreement_id, version, period_start, period_end, currency, lines, basis, tier_basis, "
        "tier, rate, rebate, liability",
        f"beneficiary = {sql_literal(beneficiary)}",
    )
    return sorted(
        (
            StatementRow(
                code,
                int(version),
                key[2],
                start,
                end,
                currency,
                int(lines),
                Decimal(basis),
                Decimal(tier_basis),
                int(tier),
                None if rate is None else Decimal(rate),
                Decimal(rebate),
                Decimal(liability),
            )
            for key, (
                _run,
                (
                    code,
                    version,
                    start,
                    end,
                    currency,
                    lines,
                    basis,
                    tier_basis,
                    tier,
                    rate,
                    rebate,
                    liability,
                ),
            ) in rows.items()
        ),
        key=lambda row: (row.agreement_code, row.period_start, row.version),
    )


def results_between(
    session: Session, store: FactStore, start: dt.date, end: dt.date
) -> list[tuple[str, str, Decimal, Decimal]]:
    """(beneficiary, agreement code, basis, rebate) of every rebate period that overlaps
    ``[start, end]``, from the latest runs (what the periodic audit compares between peers)."""
    rows = _replay(
        session,
        store,
        "agreement_id, basis, rebate",
        # Rebate periods end exclusive: one ending on ``start`` does not overlap.
        f"period_start <= DATE {sql_literal(end.isoformat())} "
        f"AND period_end > DATE {sql_literal(start.isoformat())}",
    )
    return [
        (key[1], code, Decimal(basis), Decimal(rebate))
        for key, (_run, (code, basis, rebate)) in rows.items()
    ]


@dataclass(frozen=True)
class TierStanding:
    """Where a customer stands in one agreement's rebate period that contains a day."""

    beneficiary: str
    agreement_code: str
    version: int
    period_start: dt.date
    tier: int
    tier_basis: Decimal
    rebate: Decimal


def standings_on(session: Session, store: FactStore, day: dt.date) -> list[TierStanding]:
    """Every customer's tier in the rebate periods that contain ``day``, from the latest runs
    (the dashboard's near-misses: who is close to the next band)."""
    rows = _replay(
        session,
        store,
        "agreement_id, version, period_start, tier, tier_basis, rebate",
        f"period_start <= DATE {sql_literal(day.isoformat())} "
        f"AND period_end > DATE {sql_literal(day.isoformat())}",
    )
    return [
        TierStanding(
            key[1], code, int(version), start, int(tier), Decimal(tier_basis), Decimal(rebate)
        )
        for key, (_run, (code, version, start, tier, tier_basis, rebate)) in rows.items()
    ]


def result_rows(session: Session, store: FactStore, beneficiary: str) -> list[ResultRow]:
    """The latest result rows of a customer, whole (every engine column): what an explanation
    of a statement's line is made from."""
    # The stored results name the beneficiary ``beneficiary`` (the ledger's key).
    columns = ", ".join(
        "beneficiary AS beneficiary_id" if name == "beneficiary_id" else name
        for name in RESULT_COLUMNS
    )
    rows = _replay(session, store, columns, f"beneficiary = {sql_literal(beneficiary)}")
    return sorted((ResultRow(*values) for _key, (_run, values) in rows.items()), key=ResultRow.key)


_RESULT_SELECT = ", ".join(
    # The stored results name the beneficiary ``beneficiary`` (the ledger's key).
    "beneficiary AS beneficiary_id" if name == "beneficiary_id" else name
    for name in RESULT_COLUMNS
)


@dataclass(frozen=True)
class RunResults:
    """One page of the rows an accrual run rated, and how many there are in all."""

    total: int
    rows: list[ResultRow]


def run_results(
    session: Session,
    store: FactStore,
    run_id: int,
    *,
    customers: set[str] | None = None,
    search: str = "",
    offset: int = 0,
    limit: int = 50,
) -> RunResults:
    """The result rows accrual run ``run_id`` wrote (the keys it rated), by agreement, customer
    and period; only of ``customers`` (None: all), and of an agreement or customer code
    containing ``search``."""
    results_file = session.scalar(select(AccrualRun.results_file).where(AccrualRun.id == run_id))
    if results_file is None:
        return RunResults(0, [])
    conditions = ["TRUE"]
    values: list[Any] = [str(store.path(results_file))]
    if customers is not None:
        conditions.append("list_contains(?, beneficiary)")
        values.append(sorted(customers))  # a list parameter
    if search.strip():
        # contains(): the text as typed, % and _ included (LIKE would read them as wildcards).
        conditions.append("(contains(lower(agreement_id), ?) OR contains(lower(beneficiary), ?))")
        values += [search.strip().lower()] * 2
    source = f"read_parquet(?) WHERE {' AND '.join(conditions)}"
    with duckdb.connect() as connection:  # its own: requests run on several threads
        counted = connection.execute(f"SELECT count(*) FROM {source}", values).fetchone()
        rows = connection.execute(
            f"""SELECT {_RESULT_SELECT} FROM {source}
            ORDER BY agreement_id, version, beneficiary, period_index LIMIT ? OFFSET ?""",
            [*values, limit, offset],
        ).fetchall()
    return RunResults(int(counted[0]) if counted else 0, [ResultRow(*row) for row in rows])


def run_result(
    session: Session, store: FactStore, run_id: int, key: tuple[str, int, str, int]
) -> tuple[ResultRow, ResultRow | None] | None:
    """One row of run ``run_id`` by key (agreement, version, beneficiary, period index), with the
    same beneficiary's row of the period before in that run (a term-scope explanation shows the
    difference); None if the run holds no such row."""
    results_file = session.scalar(select(AccrualRun.results_file).where(AccrualRun.id == run_id))
    if results_file is None:
        return None
    agreement, version, beneficiary, period_index = key
    with duckdb.connect() as connection:
        rows = connection.execute(
            f"""SELECT {_RESULT_SELECT} FROM read_parquet(?)
            WHERE agreement_id = ? AND version = ? AND beneficiary = ?
              AND period_index IN (?, ?) ORDER BY period_index DESC""",
            [
                str(store.path(results_file)),
                agreement,
                version,
                beneficiary,
                period_index,
                period_index - 1,
            ],
        ).fetchall()
    found = [ResultRow(*row) for row in rows]
    if not found or found[0].period_index != period_index:
        return None
    return found[0], (found[1] if len(found) > 1 else None)
