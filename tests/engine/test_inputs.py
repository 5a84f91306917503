"""Facts the engine cannot hold exactly are refused with the field named, never rounded."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import agreement

from fanli.engine.columnar import calculate
from fanli.kit.errors import InputError


def _sales(net_type: pa.DataType, net: object) -> pa.Table:
    return pa.table(
        {
            "line_id": ["L1"],
            "customer_id": ["C1"],
            "product_id": ["P1"],
            "invoice_date": [dt.date(2025, 3, 1)],
            "quantity": pa.array([Decimal("1")], pa.decimal128(18, 4)),
            "net_amount": pa.array([net], net_type),
        }
    )


@pytest.mark.parametrize(
    ("net_type", "net", "message"),
    [
        (pa.float64(), 100.5, "binary float"),
        (pa.decimal128(18, 6), Decimal("100.123456"), "more than 4 decimal places"),
    ],
)
def test_inexact_measures_are_refused(
    tmp_path: Path, net_type: pa.DataType, net: object, message: str
) -> None:
    table = _sales(net_type, net)
    path = tmp_path / "sales.parquet"
    pq.write_table(table, path)
    for sales in (table, [path]):
        with pytest.raises(InputError, match=message) as raised:
            calculate([agreement()], sales=sales)
        assert raised.value.field == "net_amount"


def test_a_file_that_is_not_parquet_is_named(tmp_path: Path) -> None:
    path = tmp_path / "sales.parquet"
    path.write_text("line_id,net_amount\nL1,1\n")
    with pytest.raises(InputError, match="not a readable Parquet file") as raised:
        calculate([agreement()], sales=[path])
    assert raised.value.file == str(path)
