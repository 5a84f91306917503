"""The yardstick: the fastest hand-written DuckDB query for the benchmark's agreements.

It computes the same result rows as ``fanli.engine.columnar.calculate`` (RESULT_SCHEMA), but only
for what the benchmark's agreements use: programme agreements (no parties), the invoice event,
customer filters on attributes, product filters on brand and attributes, calendar-quarter periods
of calendar-year terms, period scope, percent and per-unit forms, the four tier methods, minimum,
caps per period and per term, actual accrual. Anything else is refused, not approximated.

Plan shape (DESIGN.md, "The calculation"): the **eligibility map**. The agreements' filters are
evaluated once, in Python, against each distinct attribute combination of the dimensions
(customer: segment x nation, 125 at any scale; product: manufacturer x brand, 25). Each customer
and each product gets an integer combination key; the map lists, for every combination pair x
calendar quarter, the agreements it feeds. Every line then costs two dimension lookups and ONE
equi-join on a single BIGINT key (customer key + product key + quarter), never a filter
expression per agreement. The tiers are a second tiny join: one row per agreement x band with
its bounds and the linear coefficients ``A`` and ``B`` of the raw rebate ``A x T + B`` (derived
here, once per agreement, like the engine does when an agreement is saved).

Exactness: amounts are summed as DuckDB DECIMAL(18,4) (exact, 128-bit accumulators), then held as
HUGEINT counts of 10**-4; rates are integers in 10**-6 (ppm of the basis for percent, 10**-6 yuan
per unit), so ``A x T + B`` is an exact integer in 10**-10 yuan. It is rounded once, half-up, to
cents with integer ``//`` (DuckDB's ``/`` on integers returns DOUBLE); caps follow, in cents.

Small derived tables are materialised before the fact scan (an inlined map was once joined in the
wrong order and spilled 70 GB), DuckDB runs with 2 threads, a memory limit and a temp directory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from fanli.agreements.terms import (
    Agreement,
    CustomerSelector,
    EligibilityEvent,
    Measure,
    PeriodKind,
    ProductSelector,
    RateForm,
    TierMethod,
    TierScope,
)
from fanli.engine.results import RESULT_SCHEMA

MEASURE_UNIT = 10_000  # facts have 4 decimal places
RATE_UNIT = 1_000_000  # ppm of the basis (percent) or 10**-6 yuan per unit
CENT_DIVISOR = 10**8  # rate x measure is in 10**-10 yuan; a cent is 10**8 of those
MEASURE_COLUMN = {
    Measure.NET: "net_amount",
    Measure.GROSS: "gross_amount",
    Measure.QUANTITY: "quantity",
}
CUSTOMER_ATTRIBUTES = ("segment", "nation")
PRODUCT_ATTRIBUTES = ("manufacturer", "brand")  # brand is a built-in field, the other an attribute
OPEN = 2**62  # upper bound of an open top band, in measure units


def _int(value: Decimal, unit: int) -> int:
    scaled = value * unit
    assert scaled == scaled.to_integral_value(), f"{value} finer than 1/{unit}"
    return int(scaled)


def _check_supported(agreement: Agreement) -> None:
    """Refuse what this query does not implement: it must never silently differ."""
    problems = []
    if agreement.parties is not None or agreement.target is not None or agreement.gate:
        problems.append("parties/target/gate")
    if agreement.growth is not None or agreement.guarantee is not None:
        problems.append("growth/guarantee")
    if agreement.rebate.form is RateForm.FIXED or agreement.rebate.tier_basis not in (
        None,
        agreement.rebate.basis,
    ):
        problems.append("fixed form or separate tier basis")
    if agreement.periods.kind is not PeriodKind.QUARTER or agreement.periods.scope is not (
        TierScope.PERIOD
    ):
        problems.append("periods other than quarters in period scope")
    term = agreement.term_period
    if (term.start.month, term.start.day, term.end.month, term.end.day) != (1, 1, 1, 1) or (
        term.end.year != term.start.year + 1
    ):
        problems.append("term other than one calendar year")
    if (agreement.earning_start, agreement.earning_end) != (term.start, term.end):
        problems.append("effective date or eligibility dates inside the term")
    if agreement.eligibility.event is not EligibilityEvent.INVOICE:
        problems.append("event other than invoice")
    if agreement.eligibility.document_types is not None or agreement.accrual.mode != "actual":
        problems.append("document types or expected accrual")
    if agreement.rounding != "half_up" or agreement.currency != "CNY":
        problems.append("rounding other than half_up or currency other than CNY")
    for selector in (
        agreement.eligibility.customers.include,
        agreement.eligibility.customers.exclude,
    ):
        if selector.id is not None or selector.group is not None:
            problems.append("customer id/group selectors")
        if set(selector.attributes) - set(CUSTOMER_ATTRIBUTES):
            problems.append("customer attributes other than segment/nation")
    for pselector in (
        agreement.eligibility.products.include,
        agreement.eligibility.products.exclude,
    ):
        if pselector.id is not None or pselector.category is not None:
            problems.append("product id/category selectors")
        if set(pselector.attributes) - {"manufacturer"}:
            problems.append("product attributes other than manufacturer")
    if problems:
        raise NotImplementedError(f"{agreement.id}: {', '.join(sorted(set(problems)))}")


def _customer_fields(selector: CustomerSelector) -> list[tuple[str, tuple[str, ...]]]:
    return list(selector.attributes.items())


def _product_fields(selector: ProductSelector) -> list[tuple[str, tuple[str, ...]]]:
    fields = list(selector.attributes.items())
    if selector.brand is not None:
        fields.append(("brand", selector.brand))
    return fields


def _passes(
    values: dict[str, str | None],
    include: list[tuple[str, tuple[str, ...]]],
    exclude: list[tuple[str, tuple[str, ...]]],
) -> bool:
    """docs/calculation.md: include fields AND, values OR; excluded by ANY exclude field; a null
    value never matches a selector."""
    for name, allowed in include:
        if values[name] is None or values[name] not in allowed:
            return False
    return not any(values[name] is not None and values[name] in banned for name, banned in exclude)


def _bands(agreement: Agreement) -> list[dict[str, Any]]:
    """Per band: bounds in measure units and the raw rebate ``A x T + B`` (10**-10 yuan)."""
    rebate = agreement.rebate
    rows = []
    below = 0  # sum of rate x width over the bands below (marginal, rolling)
    rate_sum = 0
    for number, band in enumerate(rebate.tiers, start=1):
        # percent: 2.5 % of 10**-4 units -> 25,000 ppm; per unit: 10**-6 yuan per unit. Either
        # way rate x (measure in 10**-4) is in 10**-10 yuan.
        rate = (
            _int(band.rate, 10_000)
            if rebate.form is RateForm.PERCENT
            else _int(band.rate, RATE_UNIT)
        )
        lower = _int(band.lower, MEASURE_UNIT)
        upper = OPEN if band.upper is None else _int(band.upper, MEASURE_UNIT)
        rate_sum += rate
        method = rebate.method
        if method is TierMethod.WHOLE_VOLUME:
            a, b = rate, 0
        elif method is TierMethod.ALL_REACHED:
            a, b = rate_sum, 0
        elif method is TierMethod.MARGINAL:
            a, b = rate, below - rate * lower
        else:  # rolling
            a, b = rate, below
        rows.append(
            {"tier": number, "lower": lower, "upper": upper, "a": a, "b": b, "rate": band.rate}
        )
        if band.upper is not None:
            below += rate * (upper - lower)
    return rows


def _money(cents: str) -> str:
    """Cents (an integer expression) as RESULT_SCHEMA money, DECIMAL(38,4), exactly."""
    return f"CAST(CAST({cents} AS DECIMAL(18, 0)) * 0.01 AS DECIMAL(38, 4))"


def _measure(units: str) -> str:
    """10**-4 units (an integer expression) as RESULT_SCHEMA's DECIMAL(38,4), exactly."""
    return f"CAST(CAST({units} AS DECIMAL(18, 0)) * 0.0001 AS DECIMAL(38, 4))"


def _round_cents(raw: str) -> str:
    """Half-up (away from zero) to cents of a raw amount in 10**-10 yuan, integers only."""
    half = CENT_DIVISOR // 2
    return (
        f"(CASE WHEN {raw} >= 0 THEN ({raw} + {half}) // {CENT_DIVISOR} "
        f"ELSE -((-({raw}) + {half}) // {CENT_DIVISOR}) END)"
    )


QUARTERS = (1, 2, 3, 4)
MAX_BANDS = 4


def _rating_sql(q: int) -> str:
    """Columns rating quarter ``q`` of one wide row (agreement x customer).

    ``t{q}`` is the quarter's basis in 10**-4 units (BIGINT). The tier is the number of band lower
    bounds at or below it (bands are contiguous; absent bands have the lower bound OPEN), the raw
    rebate the attained band's ``A x T + B`` in 10**-10 yuan, BIGINT: DuckDB raises an error on
    overflow, it never wraps.
    """
    t = f"t{q}"
    tier = " + ".join(f"CAST({t} >= l{b} AS INTEGER)" for b in range(1, MAX_BANDS + 1))
    raw_cases = " ".join(f"WHEN {b} THEN a{b} * {t} + b{b}" for b in range(1, MAX_BANDS + 1))
    rate_cases = " ".join(f"WHEN {b} THEN r{b}" for b in range(1, MAX_BANDS + 1))
    raw = f"(CASE WHEN {t} < minimum THEN 0 ELSE (CASE tier{q} WHEN 0 THEN 0 {raw_cases} END) END)"
    return (
        f"{tier} AS tier{q}, CASE tier{q} {rate_cases} END AS rate{q}, {_round_cents(raw)} AS w{q}"
    )


def build_sql(sales: Sequence[str | Path], *, years: tuple[int, int]) -> str:
    """The one query (after ``prepare_tables``) that returns the result rows."""
    files = ", ".join(f"'{Path(path)}'" for path in sales)
    first_year, last_year = years
    measure = (
        "CAST((CASE m.basis WHEN 0 THEN s.net_amount WHEN 1 THEN s.gross_amount "
        f"ELSE s.quantity END) * {MEASURE_UNIT} AS BIGINT)"
    )
    # Per-quarter sums as branch-free products (measured 2.5x faster than sum() FILTER or
    # sum(CASE)); counts with FILTER, which stay BIGINT.
    sums = ", ".join(
        f"count(*) FILTER (WHERE q = {q}) AS n{q}, "
        f"CAST(sum(v * CAST(q = {q} AS BIGINT)) AS BIGINT) AS t{q}"
        for q in QUARTERS
    )
    ratings = ",\n            ".join(_rating_sql(q) for q in QUARTERS)
    # Caps in cents after the one rounding: per period, then on the running total of the term.
    capped = ", ".join(f"least(w{q}, cap_period) AS c{q}" for q in QUARTERS)
    running = ", ".join(
        f"least({' + '.join(f'c{j}' for j in range(1, q + 1))}, cap_term) AS s{q}" for q in QUARTERS
    )
    rows = "\n        UNION ALL ".join(
        f"""SELECT agreement_id, version, customer_id, currency, {q} AS period_index,
            start{q} AS period_start, end{q} AS period_end, n{q} AS lines, t{q} AS t,
            tier{q} AS tier, rate{q} AS rate, w{q} AS w,
            s{q} - {"0" if q == 1 else f"s{q - 1}"} AS f, s{q} AS cum
        FROM rated WHERE n{q} > 0"""
        for q in QUARTERS
    )
    # 1. lines: one pass over the facts; each line probes the customer and product keys and
    #    then the map with ONE equi-join on a single BIGINT key.
    # 2. agg: one wide row per agreement x customer, a column pair per quarter, so the running
    #    totals of the term (caps per term) need no window function.
    # 3. rated: four band lookups per wide row as CASE on the agreement's (tiny) band columns.
    # 4. the quarters of a wide row become result rows (UNION ALL of the CTE); a quiet quarter
    #    (no line) is omitted, as docs/calculation.md says: nothing changes in it (no guarantee
    #    or fixed amount here), and its running total carries on into the next.
    return f"""
    WITH lines AS (
        SELECT s.customer_id, m.k, quarter(s.invoice_date) AS q, {measure} AS v
        FROM read_parquet([{files}]) AS s
        JOIN cust AS c ON c.customer_id = s.customer_id
        JOIN prod AS p ON p.product_id = s.product_id
        JOIN emap AS m ON m.key = c.ckey + p.pkey
            + ((year(s.invoice_date) - {first_year}) * 4 + quarter(s.invoice_date) - 1)
        WHERE s.invoice_date >= DATE '{first_year}-01-01'
          AND s.invoice_date < DATE '{last_year + 1}-01-01'
          AND (s.currency IS NULL OR s.currency = 'CNY')
    ), agg AS (
        SELECT customer_id, k, {sums} FROM lines GROUP BY customer_id, k
    ), tiered AS (
        SELECT agg.*, g.*,
            {ratings}
        FROM agg JOIN agr AS g USING (k)
    ), capped AS (
        SELECT tiered.*, {capped} FROM tiered
    ), rated AS (
        SELECT capped.*, {running} FROM capped
    ), long AS (
        {rows}
    ), money AS (
        SELECT *, {_money("cum")} AS cum_money, {_measure("t")} AS basis FROM long
    )
    SELECT agreement_id, CAST(version AS INTEGER) AS version,
        CAST(customer_id AS VARCHAR) AS beneficiary_id,
        CAST(period_index AS INTEGER) AS period_index, period_start, period_end, currency,
        CAST(lines AS BIGINT) AS lines, basis, basis AS window_basis, basis AS tier_basis,
        CAST(NULL AS DECIMAL(38, 4)) AS baseline, CAST(NULL AS DECIMAL(38, 4)) AS gate_basis,
        CAST(tier AS INTEGER) AS tier, rate,
        {_money("w")} AS window_rebate, {_money("f")} AS rebate,
        cum_money AS cumulative_rebate, cum_money AS accrual
    FROM money
    """


def _agreement_rows(agreements: Sequence[Agreement]) -> pa.Table:
    """One row per agreement: ids, basis, minimum, caps, periods and up to 4 bands."""
    columns: dict[str, list[Any]] = {}

    def put(name: str, value: Any) -> None:
        columns.setdefault(name, []).append(value)

    for k, agreement in enumerate(agreements):
        put("k", k)
        put("agreement_id", agreement.id)
        put("version", agreement.version)
        put("currency", agreement.currency)
        minimum = agreement.minimum
        put("minimum", None if minimum is None else _int(minimum, MEASURE_UNIT))
        cap = agreement.cap
        put("cap_period", None if cap.per_period is None else _int(cap.per_period, 100))
        put("cap_term", None if cap.per_term is None else _int(cap.per_term, 100))
        periods = agreement.calculation_periods()
        assert len(periods) == 4
        for q, period in enumerate(periods, start=1):
            put(f"start{q}", period.start)
            put(f"end{q}", period.end)
        bands = _bands(agreement)
        if len(bands) > MAX_BANDS:
            raise NotImplementedError(f"{agreement.id}: more than {MAX_BANDS} bands")
        for b in range(1, MAX_BANDS + 1):
            band = bands[b - 1] if b <= len(bands) else None
            put(f"l{b}", OPEN if band is None else band["lower"])
            put(f"a{b}", None if band is None else band["a"])
            put(f"b{b}", None if band is None else band["b"])
            put(f"r{b}", None if band is None else band["rate"])
    types: dict[str, pa.DataType] = {
        "k": pa.int16(),
        "agreement_id": pa.string(),
        "version": pa.int32(),
        "currency": pa.string(),
        "minimum": pa.int64(),
        "cap_period": pa.int64(),
        "cap_term": pa.int64(),
    }
    for q in QUARTERS:
        types[f"start{q}"] = types[f"end{q}"] = pa.date32()
    for b in range(1, MAX_BANDS + 1):
        types[f"l{b}"] = types[f"a{b}"] = types[f"b{b}"] = pa.int64()
        types[f"r{b}"] = pa.decimal128(38, 6)
    return pa.table({name: pa.array(columns[name], type=types[name]) for name in types})


def _combinations(
    con: duckdb.DuckDBPyConnection, path: str | Path, names: Sequence[str]
) -> list[tuple[str | None, ...]]:
    """Distinct attribute combinations of a dimension file (125 customer, 25 product ones)."""
    listed = ", ".join(names)
    return con.execute(
        f"SELECT DISTINCT {listed} FROM read_parquet('{path}') ORDER BY ALL"
    ).fetchall()


def prepare_tables(
    con: duckdb.DuckDBPyConnection,
    agreements: Sequence[Agreement],
    *,
    customers: str | Path,
    products: str | Path,
) -> tuple[int, int]:
    """Create the small tables (cust, prod, emap, agr); returns the years the map covers."""
    for agreement in agreements:
        _check_supported(agreement)
    if len(agreements) > 2**15:
        raise NotImplementedError("agreement numbers are SMALLINT")
    customer_combos = _combinations(con, customers, CUSTOMER_ATTRIBUTES)
    product_combos = _combinations(con, products, PRODUCT_ATTRIBUTES)
    first_year = min(a.term_period.start.year for a in agreements)
    last_year = max(a.term_period.start.year for a in agreements)
    quarters = 4 * (last_year - first_year + 1)
    # Key layout: customer combination, product combination, quarter since first_year.
    product_stride = quarters
    customer_stride = quarters * len(product_combos)
    used_customers: set[int] = set()
    used_products: set[int] = set()
    keys: list[int] = []
    numbers: list[int] = []
    basis: list[int] = []
    basis_code = {Measure.NET: 0, Measure.GROSS: 1, Measure.QUANTITY: 2}
    for k, agreement in enumerate(agreements):
        cfilter = agreement.eligibility.customers
        pfilter = agreement.eligibility.products
        cinc, cexc = _customer_fields(cfilter.include), _customer_fields(cfilter.exclude)
        pinc, pexc = _product_fields(pfilter.include), _product_fields(pfilter.exclude)
        matching_customers = [
            index
            for index, combo in enumerate(customer_combos)
            if _passes(dict(zip(CUSTOMER_ATTRIBUTES, combo, strict=True)), cinc, cexc)
        ]
        matching_products = [
            index
            for index, combo in enumerate(product_combos)
            if _passes(dict(zip(PRODUCT_ATTRIBUTES, combo, strict=True)), pinc, pexc)
        ]
        used_customers.update(matching_customers)
        used_products.update(matching_products)
        first_quarter = 4 * (agreement.term_period.start.year - first_year)
        for ci in matching_customers:
            for pi in matching_products:
                base = ci * customer_stride + pi * product_stride + first_quarter
                for q in range(4):
                    keys.append(base + q)
                    numbers.append(k)
                    basis.append(basis_code[agreement.rebate.basis])
    emap = pa.table(
        {
            "key": pa.array(keys, pa.int64()),
            "k": pa.array(numbers, pa.int16()),
            "basis": pa.array(basis, pa.int8()),
        }
    )
    customer_keys = pa.table(
        {
            **{
                name: pa.array([combo[i] for combo in customer_combos], pa.string())
                for i, name in enumerate(CUSTOMER_ATTRIBUTES)
            },
            "ckey": pa.array(
                [
                    i * customer_stride if i in used_customers else None
                    for i in range(len(customer_combos))
                ],
                pa.int64(),
            ),
        }
    )
    product_keys = pa.table(
        {
            **{
                name: pa.array([combo[i] for combo in product_combos], pa.string())
                for i, name in enumerate(PRODUCT_ATTRIBUTES)
            },
            "pkey": pa.array(
                [
                    i * product_stride if i in used_products else None
                    for i in range(len(product_combos))
                ],
                pa.int64(),
            ),
        }
    )
    agr = _agreement_rows(agreements)
    for name, table in (
        ("emap", emap),
        ("ckeys", customer_keys),
        ("pkeys", product_keys),
        ("agr", agr),
    ):
        con.register(f"{name}_arrow", table)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
        con.unregister(f"{name}_arrow")
    # Only customers and products that feed some agreement: the others' lines are dropped by
    # the first (inner) join instead of travelling to the map.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE cust AS
        SELECT d.customer_id, k.ckey FROM read_parquet('{customers}') AS d
        JOIN ckeys AS k USING ({", ".join(CUSTOMER_ATTRIBUTES)}) WHERE k.ckey IS NOT NULL"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE prod AS
        SELECT d.product_id, k.pkey FROM read_parquet('{products}') AS d
        JOIN pkeys AS k USING ({", ".join(PRODUCT_ATTRIBUTES)}) WHERE k.pkey IS NOT NULL"""
    )
    return first_year, last_year


def connect(
    *, threads: int = 2, memory_limit: str = "4GB", temp_directory: str | Path | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with bounded threads, memory and spill space."""
    con = duckdb.connect()
    spill = Path(temp_directory or tempfile.gettempdir()) / "fanli-bench-duckdb"
    con.execute(f"SET threads = {threads}")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET temp_directory = '{spill}'")
    con.execute("SET max_temp_directory_size = '20GB'")
    con.execute("SET enable_progress_bar = false")
    # Row order is not part of the result; not preserving it lets the sinks run in parallel.
    con.execute("SET preserve_insertion_order = false")
    return con


def calculate(
    agreements: Sequence[Agreement],
    *,
    sales: Sequence[str | Path],
    customers: str | Path,
    products: str | Path,
    threads: int = 2,
    memory_limit: str = "4GB",
    con: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """Results for the benchmark agreements, as an Arrow table in RESULT_SCHEMA."""
    own = con is None
    con = con or connect(threads=threads, memory_limit=memory_limit)
    try:
        years = prepare_tables(con, agreements, customers=customers, products=products)
        table = con.sql(build_sql(sales, years=years)).to_arrow_table()
        return table.cast(RESULT_SCHEMA)
    finally:
        if own:
            con.close()


def explain(
    agreements: Sequence[Agreement], *, sales: Sequence[str | Path], customers: str, products: str
) -> str:
    """EXPLAIN ANALYZE of each statement, for the report."""
    con = connect()
    years = prepare_tables(con, agreements, customers=customers, products=products)
    rows = con.execute(f"EXPLAIN ANALYZE {build_sql(sales, years=years)}").fetchall()
    con.close()
    return "\n".join(str(row[-1]) for row in rows)
