"""What terms would have paid on last year's sales: the agreement editor's preview, before a
draft is saved.

The terms are moved back one year (the term and, if set, the version's effective date). They
are then calculated by the engine, exactly as an accrual would, over every active sales line
of that year, with today's customers and products. Nothing is stored.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.orm import Session

from fanli.agreements.terms import Agreement
from fanli.engine.columnar import calculate
from fanli.engine.results import rows_from_table
from fanli.kit.errors import InputError
from fanli.ledger.dimensions import customer_table, product_table
from fanli.sales.service import active_sales_files
from fanli.sales.store import FactStore

SHOWN = 10  # customers listed; the total covers all


@dataclass(frozen=True)
class Preview:
    start: dt.date
    end: dt.date  # exclusive
    total: Decimal
    beneficiaries: int
    top: list[tuple[str, Decimal, Decimal]]  # (customer, basis, rebate), largest rebate first


def _year_back(day: dt.date) -> dt.date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def preview_last_year(session: Session, store: FactStore, terms: Agreement) -> Preview:
    if terms.term.start is None or terms.term.end is None:
        raise InputError.said_at("a preview needs a term with a start and an end", field="term")
    start, end = _year_back(terms.term.start), _year_back(terms.term.end)
    moved = terms.model_copy(
        update={
            "term": terms.term.model_copy(update={"start": start, "end": end}),
            "effective_from": _year_back(terms.effective_from) if terms.effective_from else None,
        }
    )
    moved = Agreement.model_validate(moved.model_dump(by_alias=True))  # revalidated, derived views
    files = [str(path) for _batch, path in active_sales_files(session, store)]
    if not files:
        return Preview(start, end, Decimal(0), 0, [])
    results = rows_from_table(
        calculate(
            [moved],
            sales=files,
            customers=customer_table(session, store, on=start),
            products=product_table(session, store),
            as_of=end - dt.timedelta(days=1),
        )
    )
    basis: dict[str, Decimal] = {}
    rebate: dict[str, Decimal] = {}
    for row in results:
        basis[row.beneficiary_id] = basis.get(row.beneficiary_id, Decimal(0)) + row.basis
        rebate[row.beneficiary_id] = rebate.get(row.beneficiary_id, Decimal(0)) + row.rebate
    ranked = sorted(rebate, key=lambda code: (-rebate[code], code))
    return Preview(
        start,
        end,
        sum(rebate.values(), Decimal(0)),
        len(rebate),
        [(code, basis[code], rebate[code]) for code in ranked[:SHOWN]],
    )
