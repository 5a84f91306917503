"""Golden tests: small literal ledgers in, exact amounts out, to the cent.

Every expected amount is worked out by hand in the comments beside it (never by calling the code
under test). The published examples name their source in the docstring. Each test runs on every
calculator of the ``calculator`` fixture (tests/engine/conftest.py).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from builders import (
    Calculator,
    agreement,
    bands,
    customers_table,
    products_table,
    sale,
    sales_table,
)

from fanli.engine.results import ResultRow
from fanli.kit.errors import InputError

D = Decimal
YEAR_2025 = {"start": "2025-01-01", "end": "2026-01-01"}
QUARTERS = {"kind": "quarter"}


def only(rows: list[ResultRow]) -> ResultRow:
    assert len(rows) == 1, rows
    return rows[0]


def column(rows: list[ResultRow], name: str) -> list[Any]:
    return [getattr(row, name) for row in rows]


def beneficiaries(rows: list[ResultRow]) -> list[str]:
    return sorted({row.beneficiary_id for row in rows})


# ---- tier methods ------------------------------------------------------------------------------

D365_BANDS = [
    {"from": "0", "to": "1000", "rate": "10"},
    {"from": "1000", "to": "2500", "rate": "25"},
]


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        # 10% x 1,000 + 25% x (2,000 - 1,000) = 100 + 250
        ("marginal", D("350.00")),
        # 25% x 2,000
        ("whole_volume", D("500.00")),
        # 10% x 1,000 (the lower band at its full width) + 25% x 2,000 = 100 + 500
        ("rolling", D("600.00")),
        # (10% + 25%) x 2,000
        ("all_reached", D("700.00")),
    ],
)
def test_tier_methods_d365(calculator: Calculator, method: str, expected: Decimal) -> None:
    """Microsoft Dynamics 365 Rebate management documentation: tiers 10% up to 1,000 and 25% up
    to 2,500 on a basis of 2,000."""
    terms = agreement(rebate={"method": method, "tiers": D365_BANDS})
    row = only(calculator([terms], sales=sales_table([("C1", "P1", "2025-05-10", "2000.00")])))
    assert (row.tier, row.rate, row.window_basis) == (2, D("25"), D("2000.0000"))
    assert row.window_rebate == row.rebate == row.cumulative_rebate == row.accrual == expected


# ---- growth ------------------------------------------------------------------------------------

ENABLE_BANDS = bands(("110", "2"), ("115", "3"), ("120", "4"))


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # growth 2,350,000 / 2,000,000 = 117.5% -> band [115, 120): 3%; 3% x 2,350,000
        ("whole_basis", D("70500.00")),
        # 3% x (2,350,000 - 2,000,000) = 3% x 350,000
        ("growth_only", D("10500.00")),
        # 2% x (115% - 110%) x 2,000,000 + 3% x (2,350,000 - 115% x 2,000,000)
        # = 2% x 100,000 + 3% x 50,000 = 2,000 + 1,500
        ("marginal", D("3500.00")),
    ],
)
@pytest.mark.parametrize("baseline", ["fixed", "prior_year"])
def test_growth_enable(calculator: Calculator, mode: str, expected: Decimal, baseline: str) -> None:
    """Enable help centre, "Fully retrospective": baseline 2,000,000, actual 2,350,000, growth
    bands 110% / 115% / 120% paying 2% / 3% / 4%. The baseline is given as a fixed amount, or
    built from last year's lines over the same window (calendar 2024)."""
    growth: dict[str, Any] = {"mode": mode, "baseline": baseline}
    lines = [("C1", "P1", "2025-06-15", "2350000.00")]
    if baseline == "fixed":
        growth["baseline_amount"] = "2000000"
    else:
        # last year's sales, in two lines; the second is in 2023 and outside the baseline window
        lines += [
            ("C1", "P1", "2024-03-01", "1500000.00"),
            ("C1", "P1", "2024-12-31", "500000.00"),
            ("C1", "P1", "2023-12-31", "999999.00"),
        ]
    terms = agreement(rebate={"tiers": ENABLE_BANDS}, growth=growth)
    row = only(calculator([terms], sales=sales_table(lines)))
    assert (row.tier, row.rate) == (2, D("3"))
    assert row.baseline == D("2000000.0000")
    assert row.tier_basis == D("2350000.0000")
    assert row.rebate == expected


def test_prior_year_baseline_is_not_clipped_by_the_effective_date(calculator: Calculator) -> None:
    """Spec, Rating: the prior-year baseline is the window moved back one year; the effective
    date does not restrict it. Version 2 counts from 1 Feb 2025, so Q1 2025 counts only the
    1 Mar line: T = 2,300. B = Q1 2024 = 1,000 (15 Jan) + 1,000 (1 Mar) = 2,000, growth 115%
    -> band [115, 120): 3% x 2,300 = 69.00."""
    terms = agreement(
        version=2,
        effective_from="2025-02-01",
        periods=QUARTERS,
        rebate={"tiers": ENABLE_BANDS},
        growth={"baseline": "prior_year"},
    )
    lines = [
        ("C1", "P1", "2024-01-15", "1000.00"),
        ("C1", "P1", "2024-03-01", "1000.00"),
        ("C1", "P1", "2025-01-15", "500.00"),  # before the effective date
        ("C1", "P1", "2025-03-01", "2300.00"),
    ]
    rows = calculator([terms], sales=sales_table(lines), as_of=dt.date(2025, 3, 31))
    row = only(rows)
    assert (row.tier_basis, row.baseline, row.tier) == (D(2300), D(2000), 2)
    assert row.rebate == D("69.00")


def test_growth_without_baseline_reaches_no_band(calculator: Calculator) -> None:
    """Spec, Rating: with B <= 0 no growth band is reached (no sales last year: B = 0)."""
    terms = agreement(rebate={"tiers": ENABLE_BANDS}, growth={"baseline": "prior_year"})
    row = only(calculator([terms], sales=sales_table([("C1", "P1", "2025-06-15", "1000.00")])))
    assert (row.baseline, row.tier, row.rate, row.rebate) == (D(0), 0, None, D("0.00"))


# ---- marginal brackets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spend", "expected"),
    [
        ("6000", D("300.00")),  # 5% x 6,000
        ("8000", D("400.00")),  # 5% x 8,000
        ("20000", D("1500.00")),  # 5% x 10,000 + 10% x 10,000 = 500 + 1,000
    ],
)
def test_marginal_brackets_phocas(calculator: Calculator, spend: str, expected: Decimal) -> None:
    """Phocas Rebates documentation: 5% on 0-10,000 and 10% above."""
    terms = agreement(rebate={"method": "marginal", "tiers": bands(("0", "5"), ("10000", "10"))})
    row = only(calculator([terms], sales=sales_table([("C1", "P1", "2025-02-01", spend)])))
    assert row.rebate == expected


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ("20", D("20.00")),  # 1 x 20
        ("80", D("80.00")),  # 1 x 80
        ("120", D("140.00")),  # 1 x 100 + 2 x 20
    ],
)
def test_per_unit_brackets_phocas(calculator: Calculator, items: str, expected: Decimal) -> None:
    """Phocas Rebates documentation: 1 per unit for 0-100 items, 2 per unit above."""
    terms = agreement(
        rebate={
            "form": "per_unit",
            "basis": "quantity",
            "method": "marginal",
            "tiers": bands(("0", "1"), ("100", "2")),
        }
    )
    lines = [sale("999.00", date="2025-02-01", quantity=items)]
    row = only(calculator([terms], sales=sales_table(lines)))
    assert row.window_basis == D(items)
    assert row.rebate == expected


# ---- band edges --------------------------------------------------------------------------------


def test_basis_on_a_boundary_belongs_to_the_upper_band(calculator: Calculator) -> None:
    """Spec, Rating: bands are half-open, so 1,000 is in [1,000, 2,500): 25% x 1,000 = 250."""
    terms = agreement(rebate={"tiers": D365_BANDS})
    row = only(calculator([terms], sales=sales_table([("C1", "P1", "2025-05-10", "1000.00")])))
    assert (row.tier, row.rate, row.rebate) == (2, D("25"), D("250.00"))


def test_basis_one_cent_below_a_boundary(calculator: Calculator) -> None:
    """Spec, Rating: 999.99 is still in [0, 1,000): 10% x 999.99 = 99.999 -> 100.00."""
    terms = agreement(rebate={"tiers": D365_BANDS})
    row = only(calculator([terms], sales=sales_table([("C1", "P1", "2025-05-10", "999.99")])))
    assert (row.tier, row.rebate) == (1, D("100.00"))


def test_zero_basis(calculator: Calculator) -> None:
    """Spec, Rating: a sale and its full return leave P = 0, which sits in [0, 1,000): band 1,
    and 10% x 0 = 0."""
    terms = agreement(rebate={"tiers": D365_BANDS})
    lines = [
        ("C1", "P1", "2025-05-10", "800.00"),
        sale("-800.00", date="2025-05-20", quantity="-1", document_type="credit_note"),
    ]
    row = only(calculator([terms], sales=sales_table(lines)))
    assert (row.lines, row.window_basis, row.tier, row.rebate) == (2, D(0), 1, D("0.00"))


def test_negative_basis_reaches_no_band(calculator: Calculator) -> None:
    """Spec, Rating: returns exceed sales, P = 300 - 800 = -500, below every band's from: tier 0,
    nothing earned (no negative rebate)."""
    terms = agreement(rebate={"tiers": D365_BANDS})
    lines = [
        ("C1", "P1", "2025-05-10", "300.00"),
        sale("-800.00", date="2025-05-20", quantity="-2", document_type="credit_note"),
    ]
    row = only(calculator([terms], sales=sales_table(lines)))
    assert (row.window_basis, row.tier, row.rate, row.rebate) == (D("-500"), 0, None, D("0.00"))


# ---- eligibility: customers and products -------------------------------------------------------

CUSTOMERS = customers_table(
    [
        {"customer_id": "C1", "name": "Huadong Foods", "group": "KA", "region": "east"},
        {"customer_id": "C2", "name": "Xibei Trading", "group": "KA", "region": "west"},
        {"customer_id": "C3", "name": "Corner Shop", "group": "SMB", "region": "east"},
        {"customer_id": "C5", "name": "New Account", "group": None, "region": "east"},
        # C4 buys but is missing from the file: no group, no region
    ]
)


@pytest.mark.parametrize(
    ("customer_filter", "expected"),
    [
        ({}, ["C1", "C2", "C3", "C4", "C5"]),  # an empty include admits everyone
        ({"include": {"id": ["C1", "C4"]}}, ["C1", "C4"]),  # ids match even outside the file
        ({"include": {"group": ["KA"]}}, ["C1", "C2"]),
        ({"include": {"group": ["KA", "SMB"]}}, ["C1", "C2", "C3"]),  # values OR; null never
        ({"include": {"attributes": {"region": ["east"]}}}, ["C1", "C3", "C5"]),
        ({"include": {"group": ["KA"], "attributes": {"region": ["east"]}}}, ["C1"]),  # fields AND
        ({"exclude": {"group": ["SMB"]}}, ["C1", "C2", "C4", "C5"]),  # null group not excluded
        (
            {"exclude": {"id": ["C1"], "attributes": {"region": ["west"]}}},  # ANY field excludes
            ["C3", "C4", "C5"],
        ),
        ({"include": {"group": ["KA"]}, "exclude": {"id": ["C2"]}}, ["C1"]),
    ],
)
def test_customer_eligibility(
    calculator: Calculator, customer_filter: dict[str, Any], expected: list[str]
) -> None:
    """Spec, Which lines count: customer filter by id, group and attribute; include AND-of-fields
    and OR-of-values, exclude on ANY field. Each customer buys 1,000 and earns 2% = 20.00."""
    terms = agreement(
        eligibility={"customers": customer_filter},
        rebate={"tiers": [{"from": "0", "rate": "2"}]},
    )
    sales = sales_table(
        [(customer, "P1", "2025-03-10", "1000.00") for customer in ("C1", "C2", "C3", "C4", "C5")]
    )
    rows = calculator([terms], sales=sales, customers=CUSTOMERS)
    assert beneficiaries(rows) == expected
    assert column(rows, "rebate") == [D("20.00")] * len(expected)


def test_a_line_is_judged_by_the_group_its_customer_held_on_its_date(
    calculator: Calculator,
) -> None:
    """ADR 0012: customers given in eras (valid_from, valid_to). C1 is in KA until 1 June 2025,
    then in no group; C2 joins KA on 1 June; C3 is in KA throughout. A 2% KA programme, per
    quarter: C1 earns on Q1 and Q2 sales made as a member, not on its August sale; C2 only on
    its August sale; the May sale of C1 counts, the 1 June sale of C2 counts (from is
    inclusive, to exclusive)."""
    terms = agreement(
        periods={"kind": "quarter"},
        eligibility={"customers": {"include": {"group": ["KA"]}}},
        rebate={"tiers": [{"from": "0", "rate": "2"}]},
    )
    eras = pa.table(
        {
            "customer_id": ["C1", "C1", "C2", "C2", "C3"],
            "group": ["KA", None, None, "KA", "KA"],
            "valid_from": pa.array(
                [None, dt.date(2025, 6, 1), None, dt.date(2025, 6, 1), None], pa.date32()
            ),
            "valid_to": pa.array(
                [dt.date(2025, 6, 1), None, dt.date(2025, 6, 1), None, None], pa.date32()
            ),
        }
    )
    sales = sales_table(
        [
            ("C1", "P1", "2025-02-10", "1000.00"),
            ("C1", "P1", "2025-05-31", "500.00"),
            ("C1", "P1", "2025-08-10", "4000.00"),
            ("C2", "P1", "2025-05-31", "3000.00"),
            ("C2", "P1", "2025-06-01", "200.00"),
            ("C3", "P1", "2025-08-10", "100.00"),
        ]
    )
    rows = calculator([terms], sales=sales, customers=eras)
    assert [(r.beneficiary_id, r.period_index, r.basis, r.rebate) for r in rows] == [
        ("C1", 1, D("1000.0000"), D("20.00")),
        ("C1", 2, D("500.0000"), D("10.00")),
        ("C2", 2, D("200.0000"), D("4.00")),
        ("C3", 3, D("100.0000"), D("2.00")),
    ]
    # Overlapping eras would count a line twice: refused by the engine.
    overlapping = eras.set_column(
        3, "valid_to", pa.array([dt.date(2025, 7, 1), None, None, None, None], pa.date32())
    )
    with pytest.raises(InputError, match="customer C1 has eras that overlap"):
        calculator([terms], sales=sales, customers=overlapping)
    # A bound that is not a date is named with its customer and column.
    garbled = eras.set_column(3, "valid_to", pa.array(["2025-06-01", None, "soon", None, None]))
    with pytest.raises(InputError) as raised:
        calculator([terms], sales=sales, customers=garbled)
    assert (raised.value.field, "customer C2: 'soon' is not a date" in str(raised.value)) == (
        "valid_to",
        True,
    )


def test_a_customer_outside_all_its_eras_is_missing_from_the_file(
    calculator: Calculator,
) -> None:
    """On days none of its eras covers (here Q2 2025), C1 is as a customer the file lacks: a
    KA programme does not count its Q2 sale (100 + 400 at 2% = 2.00 + 8.00), a programme for
    everyone and one naming C1 do (10% of each quarter)."""
    eras = pa.table(
        {
            "customer_id": ["C1", "C1"],
            "group": ["KA", "KA"],
            "valid_from": pa.array([None, dt.date(2025, 7, 1)], pa.date32()),
            "valid_to": pa.array([dt.date(2025, 4, 1), None], pa.date32()),
        }
    )
    sales = sales_table(
        [
            ("C1", "P1", "2025-03-10", "100.00"),
            ("C1", "P1", "2025-05-10", "200.00"),
            ("C1", "P1", "2025-08-10", "400.00"),
        ]
    )
    quarterly = {"periods": {"kind": "quarter"}}
    terms = [
        agreement(
            id="KA",
            eligibility={"customers": {"include": {"group": ["KA"]}}},
            rebate={"tiers": [{"from": "0", "rate": "2"}]},
            **quarterly,
        ),
        agreement(id="ALL", **quarterly),
        agreement(id="ONE", eligibility={"customers": {"include": {"id": ["C1"]}}}, **quarterly),
    ]
    rows = calculator(terms, sales=sales, customers=eras)
    assert [(r.agreement_id, r.period_index, r.rebate) for r in rows] == [
        ("ALL", 1, D("10.00")),
        ("ALL", 2, D("20.00")),
        ("ALL", 3, D("40.00")),
        ("KA", 1, D("2.00")),
        ("KA", 3, D("8.00")),
        ("ONE", 1, D("10.00")),
        ("ONE", 2, D("20.00")),
        ("ONE", 3, D("40.00")),
    ]


PRODUCTS = products_table(
    [
        {"product_id": "P1", "category": "drinks", "brand": "Alpha", "pack": "can"},
        {"product_id": "P2", "category": "drinks", "brand": "Beta", "pack": "bottle"},
        {"product_id": "P3", "category": "snacks", "brand": "Alpha", "pack": None},
        # P4 is sold but missing from the file
    ]
)
PRODUCT_SALES = [
    ("C1", "P1", "2025-03-10", "100.00"),
    ("C1", "P2", "2025-03-10", "200.00"),
    ("C1", "P3", "2025-03-10", "400.00"),
    ("C1", "P4", "2025-03-10", "800.00"),
]


@pytest.mark.parametrize(
    ("product_filter", "basis", "expected"),
    [
        ({}, "1500", D("150.00")),  # 100 + 200 + 400 + 800
        ({"include": {"id": ["P4"]}}, "800", D("80.00")),
        ({"include": {"category": ["drinks"]}}, "300", D("30.00")),  # P1 + P2
        ({"include": {"brand": ["Alpha"]}}, "500", D("50.00")),  # P1 + P3
        ({"include": {"category": ["drinks"], "brand": ["Alpha"]}}, "100", D("10.00")),  # P1
        ({"include": {"attributes": {"pack": ["can", "bottle"]}}}, "300", D("30.00")),  # P1 + P2
        ({"exclude": {"brand": ["Beta"]}}, "1300", D("130.00")),  # 100 + 400 + 800
        ({"exclude": {"attributes": {"pack": ["can"]}}}, "1400", D("140.00")),  # null not excluded
        (
            {"exclude": {"category": ["snacks"], "attributes": {"pack": ["can"]}}},  # ANY field
            "1000",  # P2 + P4 = 200 + 800
            D("100.00"),
        ),
        (
            {"include": {"category": ["drinks"]}, "exclude": {"brand": ["Beta"]}},
            "100",
            D("10.00"),
        ),
    ],
)
def test_product_eligibility(
    calculator: Calculator, product_filter: dict[str, Any], basis: str, expected: Decimal
) -> None:
    """Spec, Which lines count: product filter by id, category, brand and attribute; 10% of the
    eligible lines."""
    terms = agreement(eligibility={"products": product_filter})
    rows = calculator([terms], sales=sales_table(PRODUCT_SALES), products=PRODUCTS)
    row = only(rows)
    assert (row.window_basis, row.rebate) == (D(basis), expected)


def test_filter_on_an_attribute_needs_its_file(calculator: Calculator) -> None:
    """Spec, Inputs: a filter naming an attribute needs the file that carries it."""
    terms = agreement(eligibility={"customers": {"include": {"attributes": {"region": ["east"]}}}})
    with pytest.raises(InputError, match="region"):
        calculator([terms], sales=sales_table([("C1", "P1", "2025-03-10", "100.00")]))


def test_integer_ids_compare_as_text(calculator: Calculator) -> None:
    """Spec, Inputs: ids and attribute values are compared as text (an integer id column in the
    customer file matches the text ids of the sales)."""
    customers = pa.table(
        {"customer_id": pa.array([1001, 1002], pa.int64()), "group": pa.array(["KA", "SMB"])}
    )
    terms = agreement(eligibility={"customers": {"include": {"group": ["KA"]}}})
    sales = sales_table(
        [("1001", "P1", "2025-03-10", "100.00"), ("1002", "P1", "2025-03-10", "50")]
    )
    row = only(calculator([terms], sales=sales, customers=customers))
    assert (row.beneficiary_id, row.rebate) == ("1001", D("10.00"))


# ---- eligibility: documents, dates, events, currency -------------------------------------------


@pytest.mark.parametrize(
    ("document_types", "basis", "expected"),
    [
        (None, "5850", D("585.00")),  # 1,000 - 200 + 50 + 5,000: every document type
        (["invoice", "credit_note"], "800", D("80.00")),  # 1,000 - 200
    ],
)
def test_document_types(
    calculator: Calculator, document_types: list[str] | None, basis: str, expected: Decimal
) -> None:
    """Spec, Which lines count, rule 2: only listed document types count (10%)."""
    eligibility: dict[str, Any] = {}
    if document_types is not None:
        eligibility["document_types"] = document_types
    terms = agreement(eligibility=eligibility)
    lines = [
        sale("1000.00", date="2025-03-01", document_type="invoice"),
        sale("-200.00", date="2025-03-05", document_type="credit_note"),
        sale("50.00", date="2025-03-06", document_type="debit_note"),
        sale("5000.00", date="2025-03-07", document_type="proforma"),
    ]
    row = only(calculator([terms], sales=sales_table(lines)))
    assert (row.window_basis, row.rebate) == (D(basis), expected)


def test_date_range_is_half_open(calculator: Calculator) -> None:
    """Spec, Which lines count, rule 1: eligibility.dates [1 Apr, 1 Jul): 31 Mar and 1 Jul are
    out; 200 + 400 = 600 counts, 10% = 60.00."""
    terms = agreement(eligibility={"dates": {"start": "2025-04-01", "end": "2025-07-01"}})
    lines = [
        ("C1", "P1", "2025-03-31", "100.00"),
        ("C1", "P1", "2025-04-01", "200.00"),
        ("C1", "P1", "2025-06-30", "400.00"),
        ("C1", "P1", "2025-07-01", "800.00"),
    ]
    row = only(calculator([terms], sales=sales_table(lines)))
    assert (row.lines, row.window_basis, row.rebate) == (2, D("600"), D("60.00"))


EVENT_LINES = [
    # ordered in 2024, invoiced and paid in 2025
    sale("1000.00", order_date="2024-12-20", invoice_date="2025-01-05", paid_date="2025-02-10"),
    # ordered in 2025, invoiced in 2026, not paid
    sale("2000.00", order_date="2025-12-28", invoice_date="2026-01-03"),
    # ordered and invoiced in 2025, never paid
    sale("4000.00", order_date="2025-06-01", invoice_date="2025-06-02"),
]


@pytest.mark.parametrize(
    ("event", "basis", "expected"),
    [
        ("order", "6000", D("600.00")),  # lines 2 + 3 (line 1 ordered in 2024)
        ("invoice", "5000", D("500.00")),  # lines 1 + 3 (line 2 invoiced in 2026)
        ("paid_invoice", "1000", D("100.00")),  # line 1 only: unpaid lines do not count
    ],
)
def test_eligibility_event(
    calculator: Calculator, event: str, basis: str, expected: Decimal
) -> None:
    """Spec, Which lines count, rule 1: the event's date places the line; 10% of term 2025."""
    terms = agreement(eligibility={"event": event})
    row = only(calculator([terms], sales=sales_table(EVENT_LINES)))
    assert (row.window_basis, row.rebate) == (D(basis), expected)


def test_effective_from(calculator: Calculator) -> None:
    """Spec, Which lines count, rule 1: a sale before an agreement version's effective date never
    counts. Version 2 from 1 Apr: 31 Mar's 1,000 is out, 1 Apr's 2,000 earns 10% = 200.00 in Q2."""
    terms = agreement(version=2, effective_from="2025-04-01", periods=QUARTERS)
    lines = [("C1", "P1", "2025-03-31", "1000.00"), ("C1", "P1", "2025-04-01", "2000.00")]
    rows = calculator([terms], sales=sales_table(lines))
    # Q1's only line is out and Q3, Q4 are quiet: Q2 is the one result row.
    assert column(rows, "period_index") == [2]
    assert column(rows, "version") == [2]
    assert column(rows, "basis") == [D(2000)]
    assert column(rows, "rebate") == [D("200.00")]


def test_sale_only_before_effective_from_gives_no_result(calculator: Calculator) -> None:
    """Spec, Windows: results exist only for a beneficiary with a counting line."""
    terms = agreement(version=2, effective_from="2025-04-01")
    assert calculator([terms], sales=sales_table([("C1", "P1", "2025-03-31", "1000.00")])) == []


def test_currency(calculator: Calculator) -> None:
    """Spec, Which lines count, rule 3: a line with a currency counts only for agreements in it;
    a line without one counts. USD agreement: 1,000 USD + 300 (none) = 1,300, 10% = 130.00."""
    terms = agreement(currency="USD")
    lines = [
        sale("1000.00", date="2025-03-01", currency="USD"),
        sale("5000.00", date="2025-03-01", currency="CNY"),
        sale("300.00", date="2025-03-01"),
    ]
    row = only(calculator([terms], sales=sales_table(lines)))
    assert (row.currency, row.lines, row.rebate) == ("USD", 2, D("130.00"))


def test_unstated_currency(calculator: Calculator) -> None:
    """Rule 3 with an implied currency (a store's runs: its default, CNY): a line without one
    is in CNY, so it counts for the CNY agreement and not for the USD or the JPY one. USD:
    1,000 x 10% = 100.00; CNY: 5,000 + 300 = 5,300 x 10% = 530.00; JPY: nothing."""
    terms = [agreement(currency="USD"), agreement(id="A2"), agreement(id="A3", currency="JPY")]
    lines = [
        sale("1000.00", date="2025-03-01", currency="USD"),
        sale("5000.00", date="2025-03-01", currency="CNY"),
        sale("300.00", date="2025-03-01"),
    ]
    rows = calculator(terms, sales=sales_table(lines), unstated_currency="CNY")
    assert [(r.agreement_id, r.currency, r.lines, r.rebate) for r in rows] == [
        ("A1", "USD", 1, D("100.00")),
        ("A2", "CNY", 2, D("530.00")),
    ]
    # No line states one: still only the agreements in the implied currency count them.
    plain = sales_table([sale("300.00", date="2025-03-01"), sale("700.00", date="2025-04-01")])
    rows = calculator(terms, sales=plain, unstated_currency="CNY")
    assert [(r.agreement_id, r.lines, r.rebate) for r in rows] == [("A2", 2, D("100.00"))]
    # Without an implied currency such lines count in every agreement (``fanli calc``).
    rows = calculator(terms, sales=plain)
    assert [(r.agreement_id, r.rebate) for r in rows] == [
        ("A1", D("100.00")),
        ("A2", D("100.00")),
        ("A3", D("100")),
    ]


# ---- modifiers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spend", "expected"),
    [
        ("4999.99", D("0.00")),  # below the minimum: nothing
        ("5000.00", D("150.00")),  # at the minimum: 3% x 5,000
    ],
)
def test_minimum(calculator: Calculator, spend: str, expected: Decimal) -> None:
    """Spec, Rating: nothing is earned when T < minimum (5,000)."""
    terms = agreement(minimum="5000", rebate={"tiers": [{"from": "0", "rate": "3"}]})
    row = only(calculator([terms], sales=sales_table([("C1", "P1", "2025-03-01", spend)])))
    assert row.rebate == expected


# Quarterly sales for the cap and guarantee ledgers; at 10% each quarter's R is
# Q1 100.00, Q2 200.00, Q3 0.00 (no sales), Q4 180.00.
QUARTERLY_SALES = [
    ("C1", "P1", "2025-02-01", "1000.00"),
    ("C1", "P1", "2025-05-01", "2000.00"),
    ("C1", "P1", "2025-11-01", "1800.00"),
]


def test_cap_per_period(calculator: Calculator) -> None:
    """Spec, From windows to periods, step 1: c_i = min(e_i, 150)."""
    terms = agreement(periods=QUARTERS, cap={"per_period": "150"})
    rows = calculator([terms], sales=sales_table(QUARTERLY_SALES))
    # Q3 has no sales: it is omitted (spec, Windows), the running total carries on.
    assert column(rows, "period_index") == [1, 2, 4]
    assert column(rows, "window_rebate") == [D("100.00"), D("200.00"), D("180.00")]
    # min(100, 150), min(200, 150), min(180, 150)
    assert column(rows, "rebate") == [D("100.00"), D("150.00"), D("150.00")]
    assert column(rows, "cumulative_rebate") == [D(100), D(250), D(400)]


def test_cap_per_term(calculator: Calculator) -> None:
    """Spec, step 3: the running total is capped at 250: 100, min(300, 250), 250, min(430, 250)."""
    terms = agreement(periods=QUARTERS, cap={"per_term": "250"})
    rows = calculator([terms], sales=sales_table(QUARTERLY_SALES))
    assert column(rows, "period_index") == [1, 2, 4]  # Q3 is quiet
    assert column(rows, "cumulative_rebate") == [D(100), D(250), D(250)]
    assert column(rows, "rebate") == [D("100.00"), D("150.00"), D("0.00")]


def test_guarantee(calculator: Calculator) -> None:
    """Spec, step 2: g_i = max(c_i, 120): 120, 200, 120 (a quarter without sales), 180."""
    terms = agreement(periods=QUARTERS, guarantee={"amount": "120"})
    rows = calculator([terms], sales=sales_table(QUARTERLY_SALES))
    assert column(rows, "rebate") == [D("120.00"), D("200.00"), D("120.00"), D("180.00")]
    assert column(rows, "cumulative_rebate") == [D(120), D(320), D(440), D(620)]


def test_guarantee_carried_forward(calculator: Calculator) -> None:
    """Spec, step 2 with carry_forward: the running total is max(sum c, i x 120):
    max(100, 120) = 120, max(300, 240) = 300, max(300, 360) = 360, max(480, 480) = 480;
    the periods' rebates are the differences 120, 180, 60, 120."""
    terms = agreement(periods=QUARTERS, guarantee={"amount": "120", "carry_forward": True})
    rows = calculator([terms], sales=sales_table(QUARTERLY_SALES))
    assert column(rows, "cumulative_rebate") == [D(120), D(300), D(360), D(480)]
    assert column(rows, "rebate") == [D("120.00"), D("180.00"), D("60.00"), D("120.00")]


@pytest.mark.parametrize(
    ("snacks", "expected"),
    [
        ("500.00", D("100.00")),  # G = 500 reaches the target 500: 10% x 1,000 drinks
        ("499.99", D("0.00")),  # G < 500: nothing
    ],
)
def test_gate(calculator: Calculator, snacks: str, expected: Decimal) -> None:
    """Spec, Rating: the rebate on drinks is paid only if snacks reach 500 in the same window."""
    terms = agreement(
        eligibility={"products": {"include": {"category": ["drinks"]}}},
        gate={"products": {"include": {"category": ["snacks"]}}, "target": "500"},
    )
    lines = [("C1", "P1", "2025-03-01", "1000.00"), ("C1", "P3", "2025-03-02", snacks)]
    row = only(calculator([terms], sales=sales_table(lines), products=PRODUCTS))
    assert (row.window_basis, row.gate_basis, row.tier) == (D(1000), D(snacks), 1)
    assert row.rebate == expected


TARGET_SALES = [
    ("C1", "P1", "2025-03-01", "600.00"),  # drinks, Alpha
    ("C1", "P2", "2025-03-01", "500.00"),  # drinks, Beta
    ("C1", "P3", "2025-03-01", "300.00"),  # snacks, Alpha
]


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        # T = drinks = 600 + 500 = 1,100 -> band [1,000, ...): 5%; P = Alpha = 600 + 300 = 900;
        # 5% x 900
        ("whole_volume", D("45.00")),
        # (1% x 1,000 + 5% x 100) x P / T = 15 x 900 / 1,100 = 12.2727... -> 12.27
        ("marginal", D("12.27")),
    ],
)
def test_separate_target_and_earning_sets(
    calculator: Calculator, method: str, expected: Decimal
) -> None:
    """Spec, Rating: tiers judged on the target set (drinks), paid on the earning set (Alpha)."""
    terms = agreement(
        eligibility={"products": {"include": {"brand": ["Alpha"]}}},
        target={"products": {"include": {"category": ["drinks"]}}},
        rebate={"method": method, "tiers": bands(("0", "1"), ("1000", "5"))},
    )
    row = only(calculator([terms], sales=sales_table(TARGET_SALES), products=PRODUCTS))
    assert (row.window_basis, row.tier_basis, row.tier) == (D(900), D(1100), 2)
    assert row.rebate == expected


@pytest.mark.parametrize(
    ("units", "expected"),
    [
        # average price 290,000.00 / 10,000 = 29; (2% x 5,000 + 4% x 5,000) x 29 = 300 x 29
        ("10000", D("8700.00")),
        # average price 290,000.00 / 7,000 = 41.428571...; (2% x 5,000 + 4% x 2,000) = 180 units
        # of value: 180 x 290,000 / 7,000 = 7,457.142857... -> 7,457.14
        # (rounding the price early to 41.43 would give 7,457.40)
        ("7000", D("7457.14")),
    ],
)
def test_quantity_tiers_paid_as_percent_of_value(
    calculator: Calculator, units: str, expected: Decimal
) -> None:
    """Spec, Rating: quantity bands paid as a percent of value at the average price P / T, never
    rounded. Bands 2% below 5,000 units, 4% from 5,000 units, marginal."""
    terms = agreement(
        rebate={
            "method": "marginal",
            "basis": "net",
            "tier_basis": "quantity",
            "tiers": bands(("0", "2"), ("5000", "4")),
        }
    )
    lines = [
        sale("100000.00", date="2025-03-01", quantity="3000"),
        sale("190000.00", date="2025-04-01", quantity=D(units) - 3000),
    ]
    row = only(calculator([terms], sales=sales_table(lines)))
    assert (row.window_basis, row.tier_basis, row.tier) == (D(290000), D(units), 2)
    assert row.rebate == expected


# ---- buying groups -----------------------------------------------------------------------------

GROUP_SALES = [
    ("G", "P1", "2025-03-01", "1000.00"),
    ("M1", "P1", "2025-03-01", "2000.00"),
    ("M2", "P1", "2025-03-01", "3000.00"),
    ("X", "P1", "2025-03-01", "5000.00"),  # not in the group
]


def test_buying_group_pooled_to_counterparty(calculator: Calculator) -> None:
    """Spec, Windows: the pool's basis 1,000 + 2,000 + 3,000 = 6,000 reaches [5,000, ...): 4%,
    240.00 to the counterparty G. X is outside the group and has no result."""
    terms = agreement(
        parties={"counterparty": "G", "members": ["M1", "M2"]},
        rebate={"tiers": bands(("0", "2"), ("5000", "4"))},
    )
    row = only(calculator([terms], sales=sales_table(GROUP_SALES)))
    assert (row.beneficiary_id, row.lines, row.basis, row.tier) == ("G", 3, D(6000), 2)
    assert row.rebate == D("240.00")


def test_pro_rata_split_by_largest_remainder(calculator: Calculator) -> None:
    """Spec, Pro rata split: pool 2,000 + 3,500 + 4,500 = 10,000 x 3.3333% = 333.33 = 33,333
    fen, split 20% / 35% / 45%: exact shares 6,666.6 / 11,666.55 / 14,999.85 fen; the floors
    6,666 + 11,666 + 14,999 = 33,331 leave 2 fen for the largest remainders, M2 (.85) and G (.6):
    G 66.67, M1 116.66, M2 150.00."""
    terms = agreement(
        parties={"counterparty": "G", "members": ["M1", "M2"], "split": "pro_rata"},
        rebate={"tiers": [{"from": "0", "rate": "3.3333"}]},
    )
    lines = [
        ("G", "P1", "2025-03-01", "2000.00"),
        ("M1", "P1", "2025-03-01", "3500.00"),
        ("M2", "P1", "2025-03-01", "4500.00"),
    ]
    rows = calculator([terms], sales=sales_table(lines))
    assert column(rows, "beneficiary_id") == ["G", "M1", "M2"]
    assert column(rows, "basis") == [D(2000), D(3500), D(4500)]
    assert column(rows, "window_basis") == [D(10000)] * 3
    assert column(rows, "window_rebate") == [D("333.33")] * 3
    assert column(rows, "rebate") == [D("66.67"), D("116.66"), D("150.00")]
    assert column(rows, "accrual") == [D("66.67"), D("116.66"), D("150.00")]


def test_pro_rata_tie_goes_to_the_smaller_customer_id(calculator: Calculator) -> None:
    """Spec, Pro rata split: a fixed 1.00 split three equal ways is 33.33... fen each; the floors
    leave 1 fen, and the tied remainders give it to the smallest id, G."""
    terms = agreement(
        parties={"counterparty": "G", "members": ["M1", "M2"], "split": "pro_rata"},
        rebate={"form": "fixed", "tiers": [{"from": "0", "rate": "1.00"}]},
    )
    lines = [(customer, "P1", "2025-03-01", "100.00") for customer in ("M2", "M1", "G")]
    rows = calculator([terms], sales=sales_table(lines))
    assert column(rows, "rebate") == [D("0.34"), D("0.33"), D("0.33")]


def test_pro_rata_zero_and_negative_contributions(calculator: Calculator) -> None:
    """Spec, Pro rata split: negative contributions count as zero; when all are zero the
    counterparty takes everything. Quarters, 10%, guarantee 50 per quarter:
    Q1 M1 buys 1,000: 10% = 100, all to M1 (G's own basis is 0);
    Q2 no sales: the guarantee 50 goes to G (every contribution is 0);
    Q3 G 100, M1 returns 200: pool -100 reaches no band, guarantee 50; M1's -200 counts as 0,
    so G takes 50;
    Q4 no sales: 50 to G. M2 never buys: no rows."""
    terms = agreement(
        parties={"counterparty": "G", "members": ["M1", "M2"], "split": "pro_rata"},
        periods=QUARTERS,
        guarantee={"amount": "50"},
    )
    lines = [
        ("M1", "P1", "2025-02-01", "1000.00"),
        ("G", "P1", "2025-08-01", "100.00"),
        sale("-200.00", date="2025-08-02", customer_id="M1", quantity="-1"),
    ]
    rows = calculator([terms], sales=sales_table(lines))
    assert beneficiaries(rows) == ["G", "M1"]
    g_rows = [row for row in rows if row.beneficiary_id == "G"]
    m1_rows = [row for row in rows if row.beneficiary_id == "M1"]
    assert column(g_rows, "basis") == [D(0), D(0), D(100), D(0)]
    assert column(m1_rows, "basis") == [D(1000), D(0), D(-200), D(0)]
    assert column(g_rows, "window_basis") == [D(1000), D(0), D(-100), D(0)]
    assert column(g_rows, "rebate") == [D("0.00"), D("50.00"), D("50.00"), D("50.00")]
    assert column(g_rows, "cumulative_rebate") == [D(0), D(50), D(100), D(150)]
    assert column(m1_rows, "rebate") == [D("100.00"), D("0.00"), D("0.00"), D("0.00")]
    assert column(m1_rows, "cumulative_rebate") == [D(100), D(100), D(100), D(100)]


# ---- scope term, rounding, currencies ----------------------------------------------------------


def test_scope_term_claw_back(calculator: Calculator) -> None:
    """Spec, From windows to periods: term-to-date windows, each period earns R_i - R_{i-1}.
    Bands 2% below 10,000 and 4% from 10,000, whole volume:
    Q1 6,000 -> R1 = 2% x 6,000 = 120;
    Q2 +5,000 -> 11,000 -> R2 = 4% x 11,000 = 440, e2 = 320;
    Q3 a return of 2,000 -> 9,000 -> R3 = 2% x 9,000 = 180, e3 = -260 (claw-back);
    Q4 nothing -> R4 = 180, e4 = 0."""
    terms = agreement(
        periods={"kind": "quarter", "scope": "term"},
        rebate={"tiers": bands(("0", "2"), ("10000", "4"))},
    )
    lines = [
        ("C1", "P1", "2025-02-01", "6000.00"),
        ("C1", "P1", "2025-05-01", "5000.00"),
        sale("-2000.00", date="2025-08-01", quantity="-1", document_type="credit_note"),
    ]
    rows = calculator([terms], sales=sales_table(lines))
    # Q4 is quiet and omitted: R4 = R3, nothing changes.
    assert column(rows, "basis") == [D(6000), D(5000), D(-2000)]
    assert column(rows, "window_basis") == [D(6000), D(11000), D(9000)]
    assert column(rows, "window_rebate") == [D(120), D(440), D(180)]
    assert column(rows, "rebate") == [D("120.00"), D("320.00"), D("-260.00")]
    assert column(rows, "cumulative_rebate") == [D(120), D(440), D(180)]


@pytest.mark.parametrize(
    ("rounding", "expected"),
    [
        ("half_up", D("12.35")),  # 1% x 1,234.50 = 12.345: the half goes up
        ("half_even", D("12.34")),  # ... to the even neighbour, 12.34
    ],
)
def test_rounding_an_exact_half_cent(
    calculator: Calculator, rounding: str, expected: Decimal
) -> None:
    """Spec, Rating: rounded once, to the minor unit, with the agreement's rounding mode."""
    terms = agreement(rounding=rounding, rebate={"tiers": [{"from": "0", "rate": "1"}]})
    row = only(calculator([terms], sales=sales_table([("C1", "P1", "2025-03-01", "1234.50")])))
    assert row.rebate == expected


@pytest.mark.parametrize(
    ("spend", "expected"),
    [
        ("12345", D("185")),  # 1.5% x 12,345 = 185.175 -> 185
        ("12350", D("185")),  # 1.5% x 12,350 = 185.25 -> 185
        ("12300", D("185")),  # 1.5% x 12,300 = 184.5 -> 185 (half up)
    ],
)
def test_jpy_has_no_minor_unit(calculator: Calculator, spend: str, expected: Decimal) -> None:
    """Spec, Rating: JPY rounds to whole yen (0 minor units)."""
    terms = agreement(currency="JPY", rebate={"tiers": [{"from": "0", "rate": "1.5"}]})
    row = only(calculator([terms], sales=sales_table([("C1", "P1", "2025-03-01", spend)])))
    assert row.rebate == expected


# ---- as-of and accrual -------------------------------------------------------------------------


def test_as_of_excludes_later_lines_and_periods(calculator: Calculator) -> None:
    """Spec, Inputs: with as-of 15 Apr only lines dated on or before it count, and only Q1 and Q2
    have started. Q1 1,000 -> 100.00; Q2 counts the 10 Apr and 15 Apr lines, 2,000 + 500 -> 250.00;
    the 20 Apr and August lines wait. C2's only line is after the as-of date: no result."""
    terms = agreement(periods=QUARTERS)
    lines = [
        ("C1", "P1", "2025-01-10", "1000.00"),
        ("C1", "P1", "2025-04-10", "2000.00"),
        ("C1", "P1", "2025-04-15", "500.00"),
        ("C1", "P1", "2025-04-20", "4000.00"),
        ("C1", "P1", "2025-08-01", "8000.00"),
        ("C2", "P1", "2025-04-16", "9000.00"),
    ]
    rows = calculator([terms], sales=sales_table(lines), as_of=dt.date(2025, 4, 15))
    assert [(row.beneficiary_id, row.period_index) for row in rows] == [("C1", 1), ("C1", 2)]
    assert column(rows, "lines") == [1, 2]
    assert column(rows, "rebate") == [D("100.00"), D("250.00")]


def test_accrual_expected_run_rate_in_a_quarter(calculator: Calculator) -> None:
    """Spec, Accrual: as-of 10 Feb inside Q1 (H = 31 + 28 + 31 = 90 days, E = 31 + 10 = 41).
    Sales to date T = P = 6,000; marginal bands 2% below 10,000, 5% from 10,000.
    Actual: 2% x 6,000 = 120.00.
    Projected T' = 6,000 x 90 / 41 = 540,000 / 41 = 13,170.73...; raw
    2% x 10,000 + 5% x (540,000 / 41 - 10,000) = 200 + 5% x 130,000 / 41 = 200 + 6,500 / 41
    = 14,700 / 41, times E / H = 41 / 90: 14,700 / 90 = 163.333... -> 163.33."""
    terms = agreement(
        periods=QUARTERS,
        accrual={"mode": "expected"},
        rebate={"method": "marginal", "tiers": bands(("0", "2"), ("10000", "5"))},
    )
    lines = [
        ("C1", "P1", "2025-01-10", "4000.00"),
        ("C1", "P1", "2025-02-10", "2000.00"),
        ("C1", "P1", "2025-02-11", "50000.00"),  # after the as-of date
    ]
    row = only(calculator([terms], sales=sales_table(lines), as_of=dt.date(2025, 2, 10)))
    assert (row.tier_basis, row.tier) == (D(6000), 1)
    assert (row.rebate, row.cumulative_rebate) == (D("120.00"), D("120.00"))
    assert row.accrual == D("163.33")


def test_accrual_actual_is_the_cumulative_rebate(calculator: Calculator) -> None:
    """Spec, Accrual: mode actual accrues the cumulative rebate, 2% x 6,000 = 120.00."""
    terms = agreement(
        periods=QUARTERS,
        rebate={"method": "marginal", "tiers": bands(("0", "2"), ("10000", "5"))},
    )
    lines = [("C1", "P1", "2025-01-10", "4000.00"), ("C1", "P1", "2025-02-10", "2000.00")]
    row = only(calculator([terms], sales=sales_table(lines), as_of=dt.date(2025, 2, 10)))
    assert row.accrual == D("120.00")


def test_accrual_expected_over_the_term(calculator: Calculator) -> None:
    """Spec, Accrual, scope term: the horizon is the term (H = 365), as-of 15 May (E = 31 + 28 +
    31 + 30 + 15 = 135). Whole volume, 2% below 20,000 and 4% from 20,000.
    Q1 6,000 ended: R1 = 120, accrual 120.00.
    Q2 to date 4,000: term to date 10,000, R2 = 2% x 10,000 = 200, rebate e2 = 200 - 120 = 80.
    Projection: T' = 10,000 x 365 / 135 = 27,037.03... -> 4%; raw 4% x 10,000 x 365 / 135,
    times 135 / 365 = 400.00, which replaces R2: e2' = 400 - 120 = 280, accrual 120 + 280 = 400.00.
    Q3 and Q4 have not started."""
    terms = agreement(
        periods={"kind": "quarter", "scope": "term"},
        accrual={"mode": "expected"},
        rebate={"tiers": bands(("0", "2"), ("20000", "4"))},
    )
    lines = [("C1", "P1", "2025-02-01", "6000.00"), ("C1", "P1", "2025-05-15", "4000.00")]
    rows = calculator([terms], sales=sales_table(lines), as_of=dt.date(2025, 5, 15))
    assert column(rows, "period_index") == [1, 2]
    assert column(rows, "rebate") == [D("120.00"), D("80.00")]
    assert column(rows, "cumulative_rebate") == [D("120.00"), D("200.00")]
    assert column(rows, "accrual") == [D("120.00"), D("400.00")]


def test_programme_rates_each_customer_on_its_own(calculator: Calculator) -> None:
    """Spec, Windows: in a programme each customer is a beneficiary with its own tier.
    C1 1,200 -> 25% x 1,200 = 300.00; C2 800 -> 10% x 800 = 80.00."""
    terms = agreement(rebate={"tiers": D365_BANDS})
    lines = [("C1", "P1", "2025-03-01", "1200.00"), ("C2", "P1", "2025-03-01", "800.00")]
    rows = calculator([terms], sales=sales_table(lines))
    assert [(row.beneficiary_id, row.tier, row.rebate) for row in rows] == [
        ("C1", 2, D("300.00")),
        ("C2", 1, D("80.00")),
    ]
