"""Small calculations run in the process's shared DuckDB database: they leave nothing behind
there, do not see each other on two threads, and give what a database of their own gives."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pyarrow as pa
import pytest
from builders import agreement, bands, sales_table

from fanli.engine import columnar
from fanli.engine.results import rows_from_table
from fanli.kit import duck


def _objects() -> set[tuple[str, str]]:
    """What any connection to the shared database can see: its tables, views and macros."""
    with duck.connection() as connection:
        rows = connection.execute(
            """SELECT 'table', table_name FROM duckdb_tables()
            UNION ALL SELECT 'view', view_name FROM duckdb_views() WHERE NOT internal
            UNION ALL SELECT 'macro', function_name FROM duckdb_functions()
                      WHERE function_type = 'macro' AND NOT internal"""
        ).fetchall()
    return {(kind, name) for kind, name in rows}


def _tiered(code: str) -> columnar.Agreement:
    return agreement(id=code, rebate={"tiers": bands(("0", "1"), ("1000", "5"))})


def _sales(customer: str, amounts: list[str]) -> pa.Table:
    return sales_table(
        (customer, "P1", dt.date(2025, 3, day), amount)
        for day, amount in enumerate(amounts, start=1)
    )


def _rebates(table: pa.Table) -> dict[tuple[str, str], Decimal]:
    return {(row.agreement_id, row.beneficiary_id): row.rebate for row in rows_from_table(table)}


def test_a_small_calculation_leaves_nothing_in_the_shared_database() -> None:
    before = _objects()
    table = columnar.calculate([_tiered("A1")], sales=_sales("C1", ["600.00", "500.00"]))
    assert _rebates(table) == {("A1", "C1"): Decimal("55.0000")}
    assert _objects() == before


def test_two_threads_calculate_apart_in_the_shared_database() -> None:
    # The same names (sales_raw, sales, the temporary tables) on both threads at once: each
    # calculation sees only its own.
    inputs = [
        ([_tiered("A1")], _sales("C1", ["600.00", "500.00"])),
        ([_tiered("A2")], _sales("C2", ["100.00", "200.00", "300.00"])),
    ] * 8
    with ThreadPoolExecutor(max_workers=4) as pool:
        tables = list(pool.map(lambda given: columnar.calculate(given[0], sales=given[1]), inputs))
    for table, (terms, _) in zip(tables, inputs, strict=True):
        expected = (
            {("A1", "C1"): Decimal("55.0000")}
            if terms[0].id == "A1"
            else {("A2", "C2"): Decimal("6.0000")}
        )
        assert _rebates(table) == expected


def test_a_database_of_its_own_gives_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    terms = [_tiered("A1"), _tiered("A2")]
    sales = pa.concat_tables([_sales("C1", ["600.00", "500.00"]), _sales("C2", ["1.25"])])
    shared = columnar.calculate(terms, sales=sales)
    monkeypatch.setattr(columnar, "SHARED_DATABASE_LINES", 0)
    own = columnar.calculate(terms, sales=sales)
    assert own.equals(shared)
    assert _rebates(own) == {
        ("A1", "C1"): Decimal("55.0000"),
        ("A1", "C2"): Decimal("0.0100"),  # 1% of 1.25, to the fen
        ("A2", "C1"): Decimal("55.0000"),
        ("A2", "C2"): Decimal("0.0100"),  # 1% of 1.25, to the fen
    }
