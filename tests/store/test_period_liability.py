"""What each result period adds to the liability (``fanli.ledger.service._with_liability``):
the period's running accrual less the previous period's, per agreement version and beneficiary,
whatever order the rows come in."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from fanli.engine.results import RESULT_SCHEMA
from fanli.ledger.service import _with_liability

# (agreement, version, beneficiary, period, running accrual): key order, as the engine returns
ROWS = [
    ("RB-A", 1, "C1", 1, "100.0000"),
    ("RB-A", 1, "C1", 2, "250.5000"),
    ("RB-A", 1, "C1", 3, "240.2500"),  # a tier lost: the period takes some back
    ("RB-A", 1, "C2", 2, "10.0001"),  # a beneficiary whose first row is not period 1
    ("RB-A", 2, "C1", 1, "7.0000"),  # the next version starts again from zero
    ("RB-B", 1, "C1", 1, "0.0000"),
    ("RB-B", 1, "C1", 2, "3.3300"),
]
EXPECTED = {
    ("RB-A", 1, "C1", 1): Decimal("100.0000"),
    ("RB-A", 1, "C1", 2): Decimal("150.5000"),
    ("RB-A", 1, "C1", 3): Decimal("-10.2500"),
    ("RB-A", 1, "C2", 2): Decimal("10.0001"),
    ("RB-A", 2, "C1", 1): Decimal("7.0000"),
    ("RB-B", 1, "C1", 1): Decimal("0.0000"),
    ("RB-B", 1, "C1", 2): Decimal("3.3300"),
}


def _table(rows: list[tuple[str, int, str, int, str]]) -> pa.Table:
    columns: dict[str, list[object]] = {name: [] for name in RESULT_SCHEMA.names}
    for agreement, version, beneficiary, period, accrual in rows:
        values = {
            "agreement_id": agreement,
            "version": version,
            "beneficiary_id": beneficiary,
            "period_index": period,
            "period_start": dt.date(2026, period, 1),
            "period_end": dt.date(2026, period + 1, 1),
            "currency": "CNY",
            "lines": 1,
            "tier": 1,
            "accrual": Decimal(accrual),
        }
        for name in RESULT_SCHEMA.names:
            columns[name].append(values.get(name, Decimal(0) if name != "rate" else None))
    return pa.table(columns, schema=RESULT_SCHEMA)


def _liabilities(table: pa.Table) -> dict[tuple[str, int, str, int], Decimal]:
    return {
        (row["agreement_id"], row["version"], row["beneficiary_id"], row["period_index"]): row[
            "liability"
        ]
        for row in table.to_pylist()
    }


def test_each_period_adds_its_accrual_less_the_previous_one() -> None:
    table = _with_liability(_table(ROWS))
    assert table.schema.field("liability").type == pa.decimal128(38, 4)
    assert _liabilities(table) == EXPECTED
    assert sum(EXPECTED.values()) == Decimal("260.5801")


def test_rows_out_of_key_order_give_the_same_liabilities() -> None:
    shuffled = [ROWS[i] for i in (6, 2, 0, 4, 1, 5, 3)]
    assert _liabilities(_with_liability(_table(shuffled))) == EXPECTED


def test_rows_in_chunks_give_the_same_liabilities() -> None:
    table = _table(ROWS)
    chunked = pa.concat_tables([table.slice(0, 2), table.slice(2, 3), table.slice(5)])
    assert _liabilities(_with_liability(chunked)) == EXPECTED


def test_one_row_and_no_rows() -> None:
    assert _liabilities(_with_liability(_table(ROWS[1:2]))) == {
        ("RB-A", 1, "C1", 2): Decimal("250.5000")
    }
    empty = _with_liability(RESULT_SCHEMA.empty_table())
    assert empty.num_rows == 0
    assert empty.schema.field("liability").type == pa.decimal128(38, 4)


def test_a_result_without_its_beneficiary_is_refused() -> None:
    table = _table(ROWS)
    beneficiaries = table.column("beneficiary_id").to_pylist()
    beneficiaries[3] = None
    broken = table.set_column(2, "beneficiary_id", pa.array(beneficiaries, pa.string()))
    with pytest.raises(ValueError, match="a result without its beneficiary_id"):
        _with_liability(broken)
