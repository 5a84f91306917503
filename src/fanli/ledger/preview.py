"""What terms would have paid on last year's sales: the agreement editor's preview, before a
draft is saved.

The terms are moved back one year (the term and, if set, the version's effective date). They
are then calculated by the engine, exactly as an accrual would, over every active sales line
of that year, with today's customers and products. Nothing is stored. A new version of an
active agreement is shown beside the version in force, on the same sales: what the change
would have cost or saved.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from pydantic import ValidationError
from sqlalchemy.orm import Session

from fanli.agreements.queries import DEFAULT_CURRENCY
from fanli.agreements.terms import Agreement
from fanli.engine.columnar import calculate
from fanli.engine.results import rows_from_table
from fanli.kit.errors import InputError
from fanli.ledger.dimensions import customer_table, product_table
from fanli.sales.service import active_sales_files
from fanli.sales.store import FactStore

SHOWN = 10  # customers listed; the total covers all
ZERO = Decimal(0)


@dataclass(frozen=True)
class Preview:
    start: dt.date
    end: dt.date  # exclusive
    total: Decimal
    beneficiaries: int
    # (customer, basis, rebate, rebate under the version in force or None): the largest
    # rebates first, or beside a version in force, the largest changes first
    top: list[tuple[str, Decimal, Decimal, Decimal | None]]
    in_force: int | None = None  # the active version compared with, on the same sales
    in_force_total: Decimal | None = None
    # The customers not listed in ``top``: how many, their rebate and under the version in force
    rest: tuple[int, Decimal, Decimal | None] = (0, Decimal(0), None)

    @property
    def change(self) -> Decimal | None:
        """What the terms would have paid more (or less, negative) than the version in force."""
        return None if self.in_force_total is None else self.total - self.in_force_total


def _year_back(day: dt.date) -> dt.date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def preview_last_year(
    session: Session,
    store: FactStore,
    terms: Agreement,
    *,
    in_force: tuple[int, Agreement] | None = None,
) -> Preview:
    """What ``terms`` would have paid on last year's sales; with ``in_force`` (the active
    version's number and terms), what that version would have paid on the same sales beside
    it: its terms over the same term and from the same effective date, so the two differ only
    by what the new terms change."""
    if terms.term.start is None or terms.term.end is None:
        raise InputError.said_at("a preview needs a term with a start and an end", field="term")
    # The sales counted: from the effective date of a later version, else from the term's start.
    start = _year_back(terms.effective_from or terms.term.start)
    end = _year_back(terms.term.end)
    files = [str(path) for _batch, path in active_sales_files(session, store)]
    if not files:
        return Preview(start, end, Decimal(0), 0, [])
    basis, rebate = _paid(session, store, terms, files)
    before = None
    number = None
    if in_force is not None:
        number, active = in_force
        same = _on_the_same_sales(active, terms)
        if same is not None:
            _basis, before = _paid(session, store, same, files)
    if before is None:
        ranked = sorted(rebate, key=lambda code: (-rebate[code], code))
    else:  # whom the change touches most, then the largest rebates
        ranked = sorted(
            set(rebate) | set(before),
            key=lambda code: (
                -abs(rebate.get(code, ZERO) - before.get(code, ZERO)),
                -rebate.get(code, ZERO),
                code,
            ),
        )
    rest = ranked[SHOWN:]
    return Preview(
        start,
        end,
        sum(rebate.values(), ZERO),
        len(rebate),
        [
            (
                code,
                basis.get(code, ZERO),
                rebate.get(code, ZERO),
                None if before is None else before.get(code, ZERO),
            )
            for code in ranked[:SHOWN]
        ],
        number if before is not None else None,
        None if before is None else sum(before.values(), ZERO),
        (
            len(rest),
            sum((rebate.get(code, ZERO) for code in rest), ZERO),
            None if before is None else sum((before.get(code, ZERO) for code in rest), ZERO),
        ),
    )


def _on_the_same_sales(active: Agreement, terms: Agreement) -> Agreement | None:
    """The version in force, counted over the new terms' term and from their effective date;
    None when its own terms do not fit that window (a period calendar of its own dates)."""
    moved = active.model_copy(update={"term": terms.term, "effective_from": terms.effective_from})
    try:
        return Agreement.model_validate(moved.model_dump(by_alias=True))
    except ValidationError:
        return None


def _paid(
    session: Session, store: FactStore, terms: Agreement, files: list[str]
) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """The basis and the rebate per beneficiary of ``terms`` moved back one year."""
    assert terms.term.start is not None
    assert terms.term.end is not None
    start, end = _year_back(terms.term.start), _year_back(terms.term.end)
    moved = terms.model_copy(
        update={
            "term": terms.term.model_copy(update={"start": start, "end": end}),
            "effective_from": _year_back(terms.effective_from) if terms.effective_from else None,
        }
    )
    moved = Agreement.model_validate(moved.model_dump(by_alias=True))  # revalidated, derived views
    results = rows_from_table(
        calculate(
            [moved],
            sales=files,
            customers=customer_table(session, store),
            products=product_table(session, store),
            as_of=end - dt.timedelta(days=1),
            unstated_currency=DEFAULT_CURRENCY,
        )
    )
    basis: dict[str, Decimal] = {}
    rebate: dict[str, Decimal] = {}
    for row in results:
        basis[row.beneficiary_id] = basis.get(row.beneficiary_id, ZERO) + row.basis
        rebate[row.beneficiary_id] = rebate.get(row.beneficiary_id, ZERO) + row.rebate
    return basis, rebate
