"""The shape of a calculation result, shared by the columnar engine and the reference calculator.

One ``ResultRow`` per agreement x beneficiary x period. Measures carry four decimal places,
money the currency's minor unit; all are ``Decimal``. Column meanings are in
docs/calculation.md.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import astuple, dataclass, fields
from decimal import Decimal
from typing import Any

import pyarrow as pa

MEASURE_TYPE = pa.decimal128(38, 4)
MONEY_TYPE = pa.decimal128(38, 4)
RATE_TYPE = pa.decimal128(38, 6)


@dataclass(frozen=True)
class ResultRow:
    agreement_id: str
    version: int
    beneficiary_id: str
    period_index: int  # 1-based position of the period in the term
    period_start: dt.date
    period_end: dt.date  # exclusive
    currency: str
    lines: int  # earning lines of this beneficiary dated in the period
    basis: Decimal  # P over the period alone (for a pro-rata member: its own)
    window_basis: Decimal  # P over the window (period, or term to date); the pool's
    tier_basis: Decimal  # T over the window; the pool's
    baseline: Decimal | None  # B, growth rebates only
    gate_basis: Decimal | None  # G, gated agreements only
    tier: int  # attained band, 1-based; 0 when none
    rate: Decimal | None  # the attained band's rate as written in the terms
    window_rebate: Decimal  # R: the window's raw rebate rounded once, before caps and guarantees
    rebate: Decimal  # f: the period's rebate after caps and guarantees (a member's share)
    cumulative_rebate: Decimal  # running total of ``rebate`` over the term
    accrual: Decimal  # running total to hold as liability (= cumulative_rebate in actual mode)

    def key(self) -> tuple[str, int, str, int]:
        return (self.agreement_id, self.version, self.beneficiary_id, self.period_index)


RESULT_SCHEMA = pa.schema(
    [
        ("agreement_id", pa.string()),
        ("version", pa.int32()),
        ("beneficiary_id", pa.string()),
        ("period_index", pa.int32()),
        ("period_start", pa.date32()),
        ("period_end", pa.date32()),
        ("currency", pa.string()),
        ("lines", pa.int64()),
        ("basis", MEASURE_TYPE),
        ("window_basis", MEASURE_TYPE),
        ("tier_basis", MEASURE_TYPE),
        ("baseline", MEASURE_TYPE),
        ("gate_basis", MEASURE_TYPE),
        ("tier", pa.int32()),
        ("rate", RATE_TYPE),
        ("window_rebate", MONEY_TYPE),
        ("rebate", MONEY_TYPE),
        ("cumulative_rebate", MONEY_TYPE),
        ("accrual", MONEY_TYPE),
    ]
)

COLUMNS = [field.name for field in fields(ResultRow)]
assert RESULT_SCHEMA.names == COLUMNS


def rows_from_table(table: pa.Table) -> list[ResultRow]:
    """Result rows from an Arrow table, sorted by key (tests must not depend on row order)."""
    data: dict[str, list[Any]] = table.select(COLUMNS).to_pydict()
    rows = [ResultRow(*values) for values in zip(*(data[name] for name in COLUMNS), strict=True)]
    return sorted(rows, key=ResultRow.key)


def table_from_rows(rows: list[ResultRow]) -> pa.Table:
    """Arrow table in ``RESULT_SCHEMA`` from result rows."""
    columns = list(zip(*(astuple(row) for row in rows), strict=True)) if rows else []
    arrays = [
        pa.array(list(columns[index]) if columns else [], type=field.type)
        for index, field in enumerate(RESULT_SCHEMA)
    ]
    return pa.Table.from_arrays(arrays, schema=RESULT_SCHEMA)
