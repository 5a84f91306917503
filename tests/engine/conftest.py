"""The ``calculator`` fixture: every golden test runs on the reference and on the engine.

The engine runs twice: as it chooses (small filter sets are evaluated in Python) and with its
filters forced into SQL, the path large customer and product files take. All are normalised to
``list[ResultRow]`` sorted by key.
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
    unstated_currency: str | None = None,
) -> list[ResultRow]:
    table = columnar.calculate(
        agreements,
        sales=sales,
        customers=customers,
        products=products,
        as_of=as_of,
        unstated_currency=unstated_currency,
    )
    return rows_from_table(table)


@pytest.fixture(params=["reference", "columnar", "columnar-sql-filters"])
def calculator(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Calculator:
    if request.param == "reference":
        return calculate_reference
    if request.param == "columnar-sql-filters":
        monkeypatch.setattr(columnar, "PYTHON_FILTER_LIMIT", 0)
    return calculate_columnar
