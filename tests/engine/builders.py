"""Small literal inputs for engine tests: sales lines, customer and product files, agreements.

Tests read like ledgers, so these builders take the few fields a test cares about and fill the
rest with plain defaults. Amounts are given as strings or ints and become exact ``Decimal``s
(a float is refused, as everywhere in Fanli).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa

from fanli.agreements.terms import Agreement
from fanli.engine.facts import SALES_SCHEMA
from fanli.engine.results import ResultRow
from fanli.kit.money import D

# A calculator: ``calculate_reference``'s signature, results normalised to sorted rows.
Calculator = Callable[..., list[ResultRow]]

Day = dt.date | str
Amount = Decimal | int | str

# A sale as a tuple: (customer_id, product_id, invoice date, net amount[, quantity]).
SaleTuple = tuple[str, str, Day, Amount] | tuple[str, str, Day, Amount, Amount]


def day(value: Day | None) -> dt.date | None:
    """A date from ``2025-03-31`` or a ``date``."""
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(value)


def _amount(value: Amount | None) -> Decimal | None:
    return None if value is None else D(value)


def sale(
    net_amount: Amount,
    *,
    date: Day | None = None,
    customer_id: str = "C1",
    product_id: str = "P1",
    quantity: Amount = 1,
    gross_amount: Amount | None = None,
    document_type: str = "invoice",
    order_date: Day | None = None,
    invoice_date: Day | None = None,
    paid_date: Day | None = None,
    currency: str | None = None,
    line_id: str | None = None,
) -> dict[str, Any]:
    """One sales line. ``date`` is the invoice date and, unless given, the order date; the gross
    amount defaults to the net amount."""
    invoiced = day(invoice_date) if invoice_date is not None else day(date)
    ordered = day(order_date) if order_date is not None else invoiced
    return {
        "line_id": line_id,
        "document_type": document_type,
        "customer_id": customer_id,
        "product_id": product_id,
        "order_date": ordered,
        "invoice_date": invoiced,
        "paid_date": day(paid_date),
        "quantity": D(quantity),
        "net_amount": D(net_amount),
        "gross_amount": _amount(gross_amount) if gross_amount is not None else D(net_amount),
        "currency": currency,
    }


def sales_table(lines: Iterable[Mapping[str, Any] | SaleTuple]) -> pa.Table:
    """A sales table in ``SALES_SCHEMA`` from ``sale(...)`` dicts or short tuples.

    Lines without a ``line_id`` are numbered L1, L2, ... in the order given."""
    rows: list[dict[str, Any]] = []
    for number, item in enumerate(lines, start=1):
        if isinstance(item, tuple):
            customer_id, product_id, date, net_amount, *rest = item
            row = sale(
                net_amount,
                date=date,
                customer_id=customer_id,
                product_id=product_id,
                quantity=rest[0] if rest else 1,
            )
        else:
            row = sale(item["net_amount"]) | dict(item)
        if row.get("line_id") is None:
            row["line_id"] = f"L{number}"
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=SALES_SCHEMA)


def dimension_table(id_column: str, rows: Sequence[Mapping[str, str | None]]) -> pa.Table:
    """A customer or product file: every column text, ``None`` for an empty cell."""
    columns: list[str] = [id_column]
    for row in rows:
        columns.extend(column for column in row if column not in columns)
    return pa.table(
        {column: pa.array([row.get(column) for row in rows], pa.string()) for column in columns}
    )


def customers_table(rows: Sequence[Mapping[str, str | None]]) -> pa.Table:
    return dimension_table("customer_id", rows)


def products_table(rows: Sequence[Mapping[str, str | None]]) -> pa.Table:
    return dimension_table("product_id", rows)


def agreement(**terms: Any) -> Agreement:
    """An agreement from terms as they would be written in YAML (numbers as strings).

    Defaults: id ``A1``, CNY, calendar year 2025, one yearly period, 10% whole-volume from 0."""
    data: dict[str, Any] = {
        "id": "A1",
        "currency": "CNY",
        "term": {"start": "2025-01-01", "end": "2026-01-01"},
        "periods": {"kind": "year"},
        "rebate": {"tiers": [{"from": "0", "rate": "10"}]},
    }
    data.update(terms)
    return Agreement.model_validate(data)


def bands(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    """Contiguous bands from ``(from, rate)`` pairs; each band ends where the next begins."""
    result: list[dict[str, str]] = []
    for index, (lower, rate) in enumerate(pairs):
        band = {"from": lower, "rate": rate}
        if index + 1 < len(pairs):
            band["to"] = pairs[index + 1][0]
        result.append(band)
    return result
