"""A calculation from scratch: what the journal should hold if every run were a full one."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy.orm import Session

from fanli.agreements.queries import terms_for_run
from fanli.engine.columnar import calculate
from fanli.ledger.dimensions import customer_table, product_table
from fanli.sales.service import active_sales_files
from fanli.sales.store import FactStore


def from_scratch(
    session: Session, store: FactStore, as_of: dt.date
) -> dict[tuple[int, str, int], Decimal]:
    versions = terms_for_run(session)
    files = [str(path) for _, path in active_sales_files(session, store)]
    if not versions or not files:
        return {}
    results = calculate(
        [v.terms for v in versions],
        sales=files,
        customers=customer_table(session, store, on=as_of),
        products=product_table(session, store),
        as_of=as_of,
    )
    ids = {(v.code, v.version): v.version_id for v in versions}
    windows = {v.version_id: (v.counts_from, v.counts_until) for v in versions}
    held: dict[tuple[int, str, int], Decimal] = {}
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
            held[(version_id, row["beneficiary_id"], row["period_index"])] = share
    return held
