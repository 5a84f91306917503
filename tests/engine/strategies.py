"""Hypothesis strategies for the property tests: random but valid agreements, sales and files.

Every feature of ``fanli.agreements.terms`` is drawn, on coarse grids: band bounds, thresholds,
amounts and rates are picked so that a basis lands exactly on a band edge and a raw rebate on an
exact half minor unit often (1% of 1,000.50 is 10.005). Dates cluster on period boundaries, the
term's ends, the same days one year earlier and 29 February, where off-by-one mistakes live.

A drawn ``Scenario`` prints as literal Python (agreement dicts, sale dicts), ready to paste into a
regression test.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
from builders import customers_table, products_table
from hypothesis import strategies as st

from fanli.agreements.terms import Agreement
from fanli.engine.facts import SALES_SCHEMA
from fanli.kit.periods import add_months, shift_years

D = Decimal

# ---- vocabulary --------------------------------------------------------------------------------

# Ids order as text: "C10" sorts before "C2", and "10" before "7". A scenario uses one set; with
# the numeric one the customer file's id column is sometimes an integer column.
CUSTOMER_IDS = ("C1", "C2", "C3", "C4", "C10")
NUMERIC_CUSTOMER_IDS = ("1", "2", "3", "7", "10")
PRODUCT_IDS = ("P1", "P2", "P3", "P4")
GROUPS = ("KA", "SMB", "VIP")
REGIONS = ("east", "west", "north")
CATEGORIES = ("drinks", "snacks", "dairy")
BRANDS = ("Alpha", "Beta", "Gamma")
PACKS = ("can", "bottle", "box")
DOCUMENT_TYPES = ("invoice", "credit_note", "debit_note", "order")
LINE_CURRENCIES = (None, None, None, "CNY", "CNY", "JPY", "USD")

# Terms the agreements use; each has a leap day nearby (in the term or its prior year).
TERMS = (
    (dt.date(2025, 1, 1), dt.date(2026, 1, 1)),
    (dt.date(2024, 2, 15), dt.date(2025, 2, 15)),
    (dt.date(2025, 3, 1), dt.date(2025, 9, 1)),
    (dt.date(2024, 1, 1), dt.date(2025, 1, 1)),
    (dt.date(2025, 2, 10), dt.date(2025, 5, 20)),
)

# Band bounds per tier unit; growth bounds are percent of the baseline.
AMOUNT_EDGES = ("0", "50", "100", "250", "500", "1000", "1000.5", "1500", "2500", "5000")
QUANTITY_EDGES = ("0", "1", "2", "3", "5", "10", "20", "50")
GROWTH_EDGES = ("0", "50", "90", "100", "105", "110", "112.5", "120", "150", "200")
PERCENT_RATES = ("0", "0.5", "1", "1.5", "2", "2.5", "3", "5", "10", "12.5", "33.3333", "100")
PER_UNIT_RATES = ("0.01", "0.1", "0.5", "1", "2", "0.0015", "1.25", "0.333333")
MONEY = {
    "CNY": ("0", "0.01", "1", "5", "10", "12.34", "50", "100", "1000"),
    "JPY": ("0", "1", "5", "10", "50", "100", "1000"),
}
AMOUNT_BASELINES = ("0.5", "100", "500", "1000", "1234.5", "2000")
QUANTITY_BASELINES = ("1", "2", "5", "10", "20")


# ---- the scenario ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One drawn calculation: the agreements, the sales lines, the two files, the as-of date."""

    agreements: tuple[Agreement, ...]
    sales: tuple[dict[str, Any], ...]
    customers: tuple[dict[str, str | None], ...] | None
    integer_customer_ids: bool  # the customer file's id column holds integers
    products: tuple[dict[str, str | None], ...] | None
    as_of: dt.date | None
    integer_sales_customer_ids: bool = False  # so does the sales table's
    sales_without_currency: bool = False  # the optional currency column is left out
    unstated_currency: str | None = None  # the currency of a line that states none, if any

    def sales_table(self) -> pa.Table:
        table = pa.Table.from_pylist(list(self.sales), schema=SALES_SCHEMA)
        if self.integer_sales_customer_ids:
            ids = pa.array([int(line["customer_id"]) for line in self.sales], pa.int64())
            table = table.set_column(
                table.schema.get_field_index("customer_id"), "customer_id", ids
            )
        if self.sales_without_currency:
            table = table.drop_columns(["currency"])
        return table

    def customers_table(self) -> pa.Table | None:
        if self.customers is None:
            return None
        table = customers_table(list(self.customers))
        if self.integer_customer_ids:
            ids = pa.array([int(row["customer_id"]) for row in self.customers], pa.int64())
            table = table.set_column(0, "customer_id", ids)
        return table

    def products_table(self) -> pa.Table | None:
        return None if self.products is None else products_table(list(self.products))

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # Hypothesis prints falsifying examples with this

    def __repr__(self) -> str:
        terms = [
            a.model_dump(mode="json", by_alias=True, exclude_defaults=True) for a in self.agreements
        ]
        sales = [{k: _literal(v) for k, v in line.items() if v is not None} for line in self.sales]
        return (
            f"Scenario(\n  agreements={terms!r},\n  sales={sales!r},\n"
            f"  customers={self.customers!r},\n"
            f"  integer_customer_ids={self.integer_customer_ids!r},\n"
            f"  products={self.products!r},\n"
            f"  as_of={self.as_of!r},\n"
            f"  integer_sales_customer_ids={self.integer_sales_customer_ids!r},\n"
            f"  sales_without_currency={self.sales_without_currency!r},\n"
            f"  unstated_currency={self.unstated_currency!r},\n)"
        )


def _literal(value: Any) -> Any:
    if isinstance(value, Decimal | dt.date):
        return str(value)
    return value


# ---- helpers -----------------------------------------------------------------------------------


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Draw from one of the strategies with the given weights (``st.one_of`` is not uniform
    over repeated branches, so weights are spelled out)."""
    options = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(options) - 1).flatmap(lambda index: options[index])


# ---- dates -------------------------------------------------------------------------------------


def _interesting_days(start: dt.date, end: dt.date) -> list[dt.date]:
    """Month starts from a year before the term to just after it, the days before them, the
    term's ends and the leap days around."""
    days: set[dt.date] = {start, end, start - dt.timedelta(days=1), end - dt.timedelta(days=1)}
    month = add_months(dt.date(start.year, start.month, 1), -13)
    while month <= end + dt.timedelta(days=40):
        days.update({month, month - dt.timedelta(days=1)})
        month = add_months(month, 1)
    days.update({dt.date(2024, 2, 29), dt.date(2024, 2, 28), dt.date(2023, 3, 1)})
    for day in (start, end):
        days.add(day.replace(year=day.year - 1) if (day.month, day.day) != (2, 29) else day)
    return sorted(days)


def days_around(start: dt.date, end: dt.date) -> st.SearchStrategy[dt.date]:
    """A day from a year before the term to a month after it, often a boundary."""
    return st.one_of(
        st.sampled_from(_interesting_days(start, end)),
        st.integers(-400, (end - start).days + 40).map(lambda n: start + dt.timedelta(days=n)),
    )


def days_within(start: dt.date, end: dt.date) -> st.SearchStrategy[dt.date]:
    """A day in ``[start, end)``, often a month start or the last day of a month."""
    inside = [day for day in _interesting_days(start, end) if start <= day < end]
    return st.one_of(
        st.sampled_from(inside),
        st.integers(0, (end - start).days - 1).map(lambda n: start + dt.timedelta(days=n)),
    )


def as_of_days(start: dt.date, end: dt.date) -> st.SearchStrategy[dt.date]:
    """An as-of day from shortly before the term to a month after it."""
    early = start - dt.timedelta(days=20)
    late = end + dt.timedelta(days=40)
    near = [day for day in _interesting_days(start, end) if early <= day <= late]
    return st.one_of(
        st.sampled_from(near),
        st.integers(0, (late - early).days).map(lambda n: early + dt.timedelta(days=n)),
    )


def sale_days(start: dt.date, end: dt.date) -> st.SearchStrategy[dt.date]:
    """Mostly in the term, often the same day a year earlier (a prior-year baseline)."""
    inside = days_within(start, end)
    return weighted(
        (6, inside), (2, inside.map(lambda day: shift_years(day, -1))), (2, days_around(start, end))
    )


# ---- sales and files ---------------------------------------------------------------------------

# Mostly coarse amounts, whose sums at coarse rates land on exact half minor units.
_COARSE_AMOUNTS = st.one_of(
    st.integers(1, 400).map(lambda n: D(n) / 4),  # quarters: 1% of 0.50 is half a fen
    st.integers(1, 200).map(lambda n: D(n) / 20),
    st.integers(1, 60).map(lambda n: D(n * 50)),
    st.integers(1, 60).map(lambda n: D(n * 50) + D("0.5")),
)
_AMOUNTS = weighted(
    (4, _COARSE_AMOUNTS),
    (
        1,
        st.sampled_from(
            (
                *("0", "0.5", "0.05", "1.5", "2.5", "12.5", "50", "99.99", "100", "250", "500"),
                *("1000", "1000.5", "1234.5", "2500", "5000", "0.0001", "333.3333"),
            )
        ).map(D),
    ),
    (1, st.decimals(min_value=0, max_value=3000, places=4, allow_nan=False, allow_infinity=False)),
    (1, st.integers(1, 300_000).map(lambda n: D(n).scaleb(-2))),
)
_QUANTITIES = st.one_of(
    st.integers(0, 30).map(D), st.sampled_from(["0.5", "2.25", "0.0001", "1.5"]).map(D)
)


@st.composite
def sales_line(
    draw: st.DrawFn, number: int, start: dt.date, end: dt.date, customer_ids: tuple[str, ...]
) -> dict[str, Any]:
    """One invoice, credit-note, debit-note or order line; credit notes are negative."""
    document_type = draw(st.sampled_from(DOCUMENT_TYPES))
    negative = document_type == "credit_note" or draw(st.integers(0, 9)) == 0
    sign = -1 if negative else 1
    net = draw(_AMOUNTS)
    quantity = draw(_QUANTITIES)
    gross = draw(st.sampled_from([net, net, net + 10, net * 2, D(0)]))
    order_date = draw(sale_days(start, end))
    invoice_date = draw(
        st.one_of(
            st.none(),
            st.just(order_date),
            st.integers(0, 40).map(lambda n: order_date + dt.timedelta(days=n)),
            sale_days(start, end),
        )
    )
    paid_date = None
    if invoice_date is not None:
        paid_date = draw(
            st.one_of(
                st.none(),
                st.just(invoice_date),
                st.integers(0, 70).map(lambda n: invoice_date + dt.timedelta(days=n)),
            )
        )
    return {
        "line_id": f"L{number}",
        "document_type": document_type,
        "customer_id": draw(st.sampled_from(customer_ids)),
        "product_id": draw(st.sampled_from(PRODUCT_IDS)),
        "order_date": order_date,
        "invoice_date": invoice_date,
        "paid_date": paid_date,
        "quantity": sign * quantity,
        "net_amount": sign * net,
        "gross_amount": sign * gross,
        "currency": draw(st.sampled_from(LINE_CURRENCIES)),
    }


@st.composite
def customer_rows(
    draw: st.DrawFn, customer_ids: tuple[str, ...]
) -> tuple[dict[str, str | None], ...]:
    """The customer file: most ids, a group and a region each, some of them empty."""
    rows = []
    for customer_id in customer_ids:
        if draw(st.integers(0, 4)) == 0:
            continue  # bought but missing from the file
        rows.append(
            {
                "customer_id": customer_id,
                "name": f"Customer {customer_id}",
                "group": draw(st.sampled_from((*GROUPS, None))),
                "region": draw(st.sampled_from((*REGIONS, None))),
            }
        )
    if not rows:
        # Keep the attribute columns (a file with a header and no rows).
        rows.append({"customer_id": "99", "name": None, "group": None, "region": None})
    return tuple(rows)


@st.composite
def customer_eras(
    draw: st.DrawFn, rows: tuple[dict[str, str | None], ...], start: dt.date, end: dt.date
) -> tuple[dict[str, str | None], ...]:
    """The customer file in eras (ADR 0012): some customers change group on a day of the term,
    some leave the file for a while (a gap: no group then); the others hold always."""
    eras: list[dict[str, str | None]] = []
    for row in rows:
        kind = draw(st.integers(0, 3))
        if kind == 0:  # holds always
            eras.append({**row, "valid_from": None, "valid_to": None})
            continue
        day = draw(days_within(start, end)).isoformat()
        later = draw(st.sampled_from((*GROUPS, None)))
        eras.append({**row, "valid_from": None, "valid_to": day})
        if kind == 1:  # a new group from ``day``
            eras.append({**row, "group": later, "valid_from": day, "valid_to": None})
        elif kind == 2:  # back after a gap of some days
            back = min(
                dt.date.fromisoformat(day) + dt.timedelta(days=draw(st.integers(1, 90))), end
            )
            eras.append({**row, "group": later, "valid_from": back.isoformat(), "valid_to": None})
        # kind 3: gone from ``day`` on
    return tuple(eras)


@st.composite
def product_rows(draw: st.DrawFn) -> tuple[dict[str, str | None], ...]:
    rows = []
    for product_id in PRODUCT_IDS:
        if draw(st.integers(0, 4)) == 0:
            continue
        rows.append(
            {
                "product_id": product_id,
                "name": f"Product {product_id}",
                "category": draw(st.sampled_from((*CATEGORIES, None))),
                "brand": draw(st.sampled_from((*BRANDS, None))),
                "pack": draw(st.sampled_from((*PACKS, None))),
            }
        )
    if not rows:
        rows.append(
            {"product_id": "P99", "name": None, "category": None, "brand": None, "pack": None}
        )
    return tuple(rows)


# ---- agreements --------------------------------------------------------------------------------


def _some(values: tuple[str, ...]) -> st.SearchStrategy[list[str]]:
    """A few values; rarely none at all (a selector field that matches nothing)."""
    return st.integers(0, 9).flatmap(
        lambda n: (
            st.just([])
            if n == 0
            else st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True)
        )
    )


@st.composite
def customer_selector(draw: st.DrawFn, customer_ids: tuple[str, ...]) -> dict[str, Any]:
    selector: dict[str, Any] = {}
    if draw(st.booleans()):
        selector["id"] = draw(_some(customer_ids))
    if draw(st.booleans()):
        selector["group"] = draw(_some(GROUPS))
    if draw(st.integers(0, 2)) == 0:
        selector["attributes"] = {"region": draw(_some(REGIONS))}
    return selector


@st.composite
def product_selector(draw: st.DrawFn) -> dict[str, Any]:
    selector: dict[str, Any] = {}
    if draw(st.booleans()):
        selector["id"] = draw(_some(PRODUCT_IDS))
    if draw(st.integers(0, 2)) == 0:
        selector["category"] = draw(_some(CATEGORIES))
    if draw(st.integers(0, 2)) == 0:
        selector["brand"] = draw(_some(BRANDS))
    if draw(st.integers(0, 2)) == 0:
        selector["attributes"] = {"pack": draw(_some(PACKS))}
    return selector


@st.composite
def line_set(draw: st.DrawFn, customer_ids: tuple[str, ...]) -> dict[str, Any]:
    """Customer and product filters, each usually empty (everyone) or a short include/exclude."""
    result: dict[str, Any] = {}
    selectors = (
        ("customers", customer_selector(customer_ids)),
        ("products", product_selector()),
    )
    for name, selector in selectors:
        chosen: dict[str, Any] = {}
        if draw(st.integers(0, 2)) == 0:
            chosen["include"] = draw(selector)
        if draw(st.integers(0, 3)) == 0:
            chosen["exclude"] = draw(selector)
        if chosen:
            result[name] = chosen
    return result


@st.composite
def tiers(draw: st.DrawFn, edges: tuple[str, ...], rates: tuple[str, ...]) -> list[dict[str, str]]:
    """1-4 contiguous bands on the edge grid; the top band is open or closed."""
    count = draw(st.integers(1, 4))
    closed_top = draw(st.integers(0, 3)) == 0
    chosen = sorted(
        draw(st.lists(st.sampled_from(edges), min_size=count + closed_top, unique=True)),
        key=D,
    )
    if draw(st.integers(0, 2)):
        chosen[0] = edges[0]  # usually the first band starts at 0
        chosen = sorted(set(chosen), key=D)
    bands = []
    for index in range(len(chosen) - closed_top):
        band = {"from": chosen[index], "rate": draw(st.sampled_from(rates))}
        if index + 1 < len(chosen):
            band["to"] = chosen[index + 1]
        bands.append(band)
    return bands


@st.composite
def custom_periods(draw: st.DrawFn, start: dt.date, end: dt.date) -> list[dict[str, str]]:
    cuts = sorted(set(draw(st.lists(days_within(start + dt.timedelta(days=1), end), max_size=4))))
    bounds = [start, *cuts, end]
    return [
        {"start": bounds[i].isoformat(), "end": bounds[i + 1].isoformat()}
        for i in range(len(bounds) - 1)
    ]


def _money(currency: str) -> st.SearchStrategy[str]:
    return st.sampled_from(MONEY[currency])


@st.composite
def agreement_terms(
    draw: st.DrawFn,
    *,
    agreement_id: str,
    version: int,
    term: tuple[dt.date, dt.date],
    customer_ids: tuple[str, ...] = CUSTOMER_IDS,
) -> Agreement:
    """One valid agreement version exercising any combination of the terms' features."""
    start, end = term
    currency = draw(st.sampled_from(("CNY", "CNY", "JPY")))
    data: dict[str, Any] = {
        "id": agreement_id,
        "version": version,
        "currency": currency,
        "term": {"start": start.isoformat(), "end": end.isoformat()},
        "rounding": draw(st.sampled_from(("half_up", "half_even"))),
        "accrual": {"mode": draw(st.sampled_from(("actual", "expected")))},
    }
    if draw(st.integers(0, 3)) == 0:
        data["effective_from"] = draw(days_within(start, end)).isoformat()

    eligibility = draw(line_set(customer_ids))
    eligibility["event"] = draw(st.sampled_from(("order", "invoice", "paid_invoice")))
    if draw(st.integers(0, 2)) == 0:
        eligibility["document_types"] = draw(
            st.lists(st.sampled_from(DOCUMENT_TYPES), min_size=1, max_size=3, unique=True)
        )
    if draw(st.integers(0, 3)) == 0:
        first, second = sorted(
            draw(
                st.lists(
                    days_within(start, end + dt.timedelta(days=1)),
                    min_size=2,
                    max_size=2,
                    unique=True,
                )
            )
        )
        dates = {}
        if draw(st.booleans()):
            dates["start"] = first.isoformat()
        if draw(st.booleans()) or not dates:
            dates["end"] = second.isoformat()
        eligibility["dates"] = dates
    data["eligibility"] = eligibility
    if draw(st.integers(0, 3)) == 0:
        data["target"] = draw(line_set(customer_ids))

    growth = draw(st.integers(0, 3)) == 0
    form = draw(st.sampled_from(("percent", "percent", "percent", "per_unit", "fixed")))
    basis = (
        "quantity" if form == "per_unit" else draw(st.sampled_from(("net", "gross", "quantity")))
    )
    rebate: dict[str, Any] = {"form": form, "basis": basis}
    tier_measure = basis
    if draw(st.integers(0, 2)) == 0:
        tier_measure = draw(st.sampled_from(("net", "gross", "quantity")))
        rebate["tier_basis"] = tier_measure
    if growth:
        method = "whole_volume"
    elif form == "fixed":
        method = draw(st.sampled_from(("whole_volume", "all_reached")))
    else:
        method = draw(st.sampled_from(("whole_volume", "all_reached", "marginal", "rolling")))
    rebate["method"] = method
    measure_edges = QUANTITY_EDGES if tier_measure == "quantity" else AMOUNT_EDGES
    rates = {"percent": PERCENT_RATES, "per_unit": PER_UNIT_RATES, "fixed": MONEY[currency][1:]}
    rebate["tiers"] = draw(tiers(GROWTH_EDGES if growth else measure_edges, rates[form]))
    data["rebate"] = rebate

    if growth:
        spec: dict[str, Any] = {
            "mode": "whole_basis"
            if form == "fixed"
            else draw(st.sampled_from(("whole_basis", "growth_only", "marginal")))
        }
        if draw(st.integers(0, 2)) == 0:
            spec["baseline"] = "fixed"
            baselines = QUANTITY_BASELINES if tier_measure == "quantity" else AMOUNT_BASELINES
            spec["baseline_amount"] = draw(st.sampled_from(baselines))
        else:
            spec["baseline"] = "prior_year"
        data["growth"] = spec
    if draw(st.integers(0, 4)) == 0:
        data["minimum"] = draw(st.sampled_from(measure_edges))
    if draw(st.integers(0, 4)) == 0:
        gate = draw(line_set(customer_ids))
        gate["measure"] = draw(st.sampled_from(("net", "gross", "quantity")))
        gate_edges = QUANTITY_EDGES if gate["measure"] == "quantity" else AMOUNT_EDGES
        gate["target"] = draw(st.sampled_from(gate_edges))
        data["gate"] = gate

    cap: dict[str, str] = {}
    if draw(st.integers(0, 4)) == 0:
        cap["per_period"] = draw(_money(currency))
    if draw(st.integers(0, 4)) == 0:
        cap["per_term"] = draw(_money(currency))
    if cap:
        data["cap"] = cap
    if draw(st.integers(0, 3)) == 0:
        amount = draw(_money(currency))
        if "per_period" in cap and D(amount) > D(cap["per_period"]):
            amount = cap["per_period"]
        data["guarantee"] = {"amount": amount, "carry_forward": draw(st.booleans())}

    if draw(st.integers(0, 2)) == 0:
        counterparty = draw(st.sampled_from(customer_ids))
        others = tuple(c for c in customer_ids if c != counterparty)
        members = draw(st.lists(st.sampled_from(others), max_size=3, unique=True))
        split = (
            draw(st.sampled_from(("counterparty", "pro_rata", "pro_rata")))
            if members
            else "counterparty"
        )
        data["parties"] = {"counterparty": counterparty, "members": members, "split": split}

    kind = draw(st.sampled_from(("month", "quarter", "half", "year", "custom")))
    periods: dict[str, Any] = {"kind": kind, "scope": draw(st.sampled_from(("period", "term")))}
    if kind == "custom":
        periods["custom"] = draw(custom_periods(start, end))
    data["periods"] = periods
    return Agreement.model_validate(data)


# ---- the whole scenario ------------------------------------------------------------------------


@st.composite
def scenarios(draw: st.DrawFn, max_agreements: int = 4, max_lines: int = 40) -> Scenario:
    """1-4 agreement versions (ids may repeat with another version) over one set of sales."""
    term = draw(st.sampled_from(TERMS))
    start, end = term
    numeric = draw(st.integers(0, 3)) == 0
    customer_ids = NUMERIC_CUSTOMER_IDS if numeric else CUSTOMER_IDS
    count = draw(st.integers(1, max_agreements))
    agreements: list[Agreement] = []
    keys: set[tuple[str, int]] = set()
    for number in range(1, count + 1):
        agreement_id = draw(st.sampled_from(("A1", "A2")))
        version = draw(st.integers(1, 2))
        if (agreement_id, version) in keys:
            agreement_id = f"A{number + 10}"
        keys.add((agreement_id, version))
        own_term = term if draw(st.integers(0, 4)) else draw(st.sampled_from(TERMS))
        agreements.append(
            draw(
                agreement_terms(
                    agreement_id=agreement_id,
                    version=version,
                    term=own_term,
                    customer_ids=customer_ids,
                )
            )
        )
    size = draw(st.integers(0, max_lines))
    sales = tuple(
        draw(sales_line(number, start, end, customer_ids)) for number in range(1, size + 1)
    )
    customers = None if draw(st.integers(0, 19)) == 0 else draw(customer_rows(customer_ids))
    if customers is not None and draw(st.integers(0, 3)) == 0:
        customers = draw(customer_eras(customers, start, end))
    integer_ids = numeric and draw(st.booleans())
    products = None if draw(st.integers(0, 19)) == 0 else draw(product_rows())
    as_of = draw(
        weighted((1, st.none()), (2, days_within(start, end)), (1, as_of_days(start, end)))
    )
    if draw(st.integers(0, 9)) == 0:
        sales = tuple({**line, "currency": None} for line in sales)  # none, as when left out
        without_currency = draw(st.booleans())
    else:
        without_currency = False
    return Scenario(
        agreements=tuple(agreements),
        sales=sales,
        customers=customers,
        integer_customer_ids=integer_ids,
        products=products,
        as_of=as_of,
        integer_sales_customer_ids=numeric and draw(st.booleans()),
        sales_without_currency=without_currency,
        # A store's runs imply their default currency; ``fanli calc`` implies none.
        unstated_currency=draw(st.sampled_from((None, None, "CNY", "JPY"))),
    )
