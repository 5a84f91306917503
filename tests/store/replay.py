"""A calculation from scratch: what the journal should hold if every run were a full one, and
what of it adjustments should hold."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fanli.agreements.queries import RunVersion, terms_for_run
from fanli.engine.columnar import calculate
from fanli.engine.compile import EVENT_COLUMN
from fanli.engine.facts import SALES_SCHEMA
from fanli.ledger.dimensions import customer_table, product_table
from fanli.ledger.late import (
    ClosedMonth,
    as_each_saw_them,
    closed_months,
    covered,
    lines_as_closed,
    sales_batches,
)
from fanli.ledger.models import EntryKind, JournalEntry, JournalLine, RebatePeriod
from fanli.ledger.service import liability_balance, reads_from
from fanli.sales.service import active_sales_files
from fanli.sales.store import FactStore

Key = tuple[int, str, int]  # agreement version id, beneficiary, period index


def from_scratch(session: Session, store: FactStore, as_of: dt.date) -> dict[Key, Decimal]:
    files = [str(path) for _, path in active_sales_files(session, store)]
    if not files:
        return {}
    return {key: share for key, (share, _) in _held(session, store, as_of, files).items()}


def late_effect_from_scratch(
    session: Session, store: FactStore, as_of: dt.date
) -> dict[Key, Decimal]:
    """What adjustments should hold per key whose rebate period has a day still open: the
    liability on the sales as they are less that on the sales as closed (ADR 0010)."""
    months = closed_months(session)
    spans = covered(months)
    batches = sales_batches(session, store)
    files = [str(path) for _, path in active_sales_files(session, store)]
    now = _held(session, store, as_of, files or SALES_SCHEMA.empty_table())
    # Each version's lines are dated by its eligibility event: rate each event's versions on
    # the lines as closed by that date.
    versions = terms_for_run(session)
    as_closed = {}
    # (A prior-year baseline's lines are as closed when active: see lines_as_closed.)
    # Each version sees the closed months as its results first held them (a version approved
    # after a close holds that month's sales as they were at its first run).
    seen = as_each_saw_them(
        session, months, {v.version_id: (reads_from(v), v.counts_until) for v in versions}
    )
    groups: dict[tuple[str, dt.date | None, tuple[ClosedMonth, ...]], list[RunVersion]] = {}
    for version in versions:
        baseline = version.counts_from if version.terms.prior_year_baseline else None
        column = EVENT_COLUMN[version.terms.eligibility.event]
        groups.setdefault((column, baseline, seen[version.version_id]), []).append(version)
    for (column, baseline, its_months), chosen in groups.items():
        lines = lines_as_closed(
            its_months, batches, column, customers=None, where="TRUE", baseline_before=baseline
        )
        as_closed |= _held(session, store, as_of, lines, chosen)
    effect = {}
    for key in {*now, *as_closed}:
        share, (start, end) = now.get(key) or (Decimal(0), as_closed[key][1])
        if any(first <= start and end <= last for first, last in spans):
            continue  # wholly closed: all of its change is an adjustment
        amount = share - as_closed.get(key, (Decimal(0), None))[0]
        if amount:
            effect[key] = amount
    return effect


def _held(
    session: Session,
    store: FactStore,
    as_of: dt.date,
    sales: list[str] | pa.Table,
    versions: list[RunVersion] | None = None,
) -> dict[Key, tuple[Decimal, tuple[dt.date, dt.date]]]:
    """Per key, the liability it should hold and its rebate period (of these versions only,
    when given)."""
    versions = terms_for_run(session) if versions is None else versions
    if not versions:
        return {}
    results = calculate(
        [v.terms for v in versions],
        sales=sales,
        customers=customer_table(session, store),
        products=product_table(session, store),
        as_of=as_of,
    )
    ids = {(v.code, v.version): v.version_id for v in versions}
    windows = {v.version_id: (v.counts_from, v.counts_until) for v in versions}
    held: dict[Key, tuple[Decimal, tuple[dt.date, dt.date]]] = {}
    previous: dict[tuple[int, str], Decimal] = {}
    rows = sorted(
        results.to_pylist(),
        key=lambda r: (r["agreement_id"], r["version"], r["beneficiary_id"], r["period_index"]),
    )
    for row in rows:
        version_id = ids[(row["agreement_id"], row["version"])]
        key = (version_id, row["beneficiary_id"])
        share = row["accrual"] - previous.get(key, Decimal(0))
        previous[key] = row["accrual"]
        counts_from, counts_until = windows[version_id]
        # a version holds only what falls in periods overlapping its own dates
        inside = row["period_end"] > counts_from and row["period_start"] < counts_until
        if share and inside:
            held[(version_id, row["beneficiary_id"], row["period_index"])] = (
                share,
                (row["period_start"], row["period_end"]),
            )
    return held


def adjustments_held(session: Session) -> dict[Key, Decimal]:
    """What adjustment entries of runs hold per key whose rebate period has a day still open."""
    spans = covered(closed_months(session))
    rows = session.execute(
        select(
            JournalLine.version_id,
            JournalLine.beneficiary,
            JournalLine.period_index,
            func.min(RebatePeriod.period_start),
            func.min(RebatePeriod.period_end),
            liability_balance(),
        )
        .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
        .join(RebatePeriod, RebatePeriod.of(JournalLine))
        .where(JournalEntry.run_id.is_not(None), JournalEntry.kind == EntryKind.ADJUSTMENT)
        .group_by(JournalLine.version_id, JournalLine.beneficiary, JournalLine.period_index)
    ).all()
    return {
        (version_id, beneficiary, period): amount
        for version_id, beneficiary, period, start, end, amount in rows
        if amount and not any(first <= start and end <= last for first, last in spans)
    }
