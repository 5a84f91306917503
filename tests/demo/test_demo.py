"""The demo is deterministic: the same seed gives the same lines and the same rebates."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from fanli.demo import demo_agreements, load_demo, run_demo
from fanli.engine.reference import calculate_reference
from fanli.engine.results import ResultRow, rows_from_table


def test_demo_data_is_plausible_and_deterministic() -> None:
    first = load_demo()
    second = load_demo()
    assert first.facts.sales.equals(second.facts.sales)
    sales = first.facts.sales
    assert 40_000 <= sales.num_rows <= 60_000
    assert first.facts.customers is not None
    assert first.facts.customers.num_rows == 30
    assert first.facts.products is not None
    assert first.facts.products.num_rows == 60
    types = Counter(sales.column("document_type").to_pylist())
    assert set(types) == {"invoice", "credit_note"}
    assert sum(1 for day in sales.column("paid_date").to_pylist() if day is None) > 0
    years = Counter(day.year for day in sales.column("invoice_date").to_pylist())
    assert set(years) == {2025, 2026}
    assert len(set(sales.column("line_id").to_pylist())) == sales.num_rows


def test_other_seed_other_lines() -> None:
    assert not load_demo(seed=1).facts.sales.equals(load_demo().facts.sales)


def test_demo_agreements_cover_the_kinds() -> None:
    ids = [agreement.id for agreement in demo_agreements()]
    assert ids == [
        "KA-Q",
        "C001-Y",
        "CVS-GROWTH",
        "WATER-UNIT",
        "SUXIAN-GROUP",
        "ECOM-M",
        "HOME-GATE",
        "NORTH-PAID",
    ]


def test_demo_runs_the_same_twice() -> None:
    first = run_demo()
    assert first.results.num_rows > 0
    assert rows_from_table(first.results) == rows_from_table(run_demo().results)


def test_demo_engine_agrees_with_the_reference() -> None:
    outcome = run_demo(as_of=dt.date(2026, 11, 15))
    facts = outcome.facts
    reference = calculate_reference(
        outcome.agreements,
        sales=facts.sales,
        customers=facts.customers,
        products=facts.products,
        as_of=dt.date(2026, 11, 15),
    )
    assert rows_from_table(outcome.results) == sorted(reference, key=ResultRow.key)
