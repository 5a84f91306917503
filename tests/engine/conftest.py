"""The ``calculator`` fixture: every golden test runs on the reference and on the engine.

Both are normalised to ``list[ResultRow]`` sorted by key. The columnar engine is skipped, with the
reason shown, for as long as it raises ``NotImplementedError``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pyarrow as pa
import pytest
from builders import Calculator

from fanli.agreements.terms import Agreement
from fanli.engine import columnar
from fanli.engine.reference import calculate_reference
from fanli.engine.results import ResultRow, rows_from_table


def calculate_columnar(
    agreements: Sequence[Agreement],
    *,
    sales: pa.Table,
    customers: pa.Table | None = None,
    products: pa.Table | None = None,
    as_of: dt.date | None = None,
) -> list[ResultRow]:
    try:
        table = columnar.calculate(
            agreements, sales=sales, customers=customers, products=products, as_of=as_of
        )
    except NotImplementedError as error:
        pytest.skip(f"columnar engine raises NotImplementedError: {error or 'not written yet'}")
    return rows_from_table(table)


@pytest.fixture(
    params=[
        pytest.param(calculate_reference, id="reference"),
        pytest.param(calculate_columnar, id="columnar"),
    ]
)
def calculator(request: pytest.FixtureRequest) -> Calculator:
    calculate: Calculator = request.param
    return calculate
