"""The columnar engine: DuckDB SQL compiled from agreement terms, exact to the cent.

The plan follows what DESIGN.md measured as fastest (ADR 0003 has the details and reasons):

1. **Classes.** Customers (products) are classed by the set of line sets whose filter they pass;
   the filters are evaluated once per distinct combination of the columns they read.
2. **Eligibility map.** (customer class, product class, month) -> (line set, period), keyed by
   one packed BIGINT and materialised: usually a few thousand rows.
3. **One pass over the facts.** Each line costs two dimension lookups and one equi-join on the
   map key, adds the one measure its set needs, and is aggregated to line set x customer x
   period. No OR-ed filters, no per-row Python.
4. **Rating** on the small aggregate: term-to-date windows, the band by a hash join with a range
   condition, integer formulas (``docs/calculation.md``) in 128-bit integers rounded once (ADR
   0001), then caps, guarantees and pro-rata splits in minor units with window functions.

Only periods with lines give rows (ADR 0002). Measures are integers in 10**-4 units and rates in
10**-6 (see ``fanli.engine.compile``); no floating-point value appears anywhere.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TypeAlias

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fanli.agreements.terms import (
    MOST_PERIODS,
    Agreement,
    CustomerSelector,
    LineSet,
    ProductSelector,
)
from fanli.engine.compile import (
    GROWTH_SCALE,
    CompiledAgreement,
    LineSetSpec,
    Role,
    compile_agreement,
    compile_sets,
)
from fanli.engine.facts import (
    CUSTOMER_BUILTINS,
    DATE_COLUMNS,
    PRODUCT_BUILTINS,
    REQUIRED_SALES_COLUMNS,
    check_fact_types,
)
from fanli.engine.results import MEASURE_TYPE, MONEY_TYPE, RATE_TYPE, RESULT_SCHEMA
from fanli.kit import duck
from fanli.kit.errors import FanliError, InputError
from fanli.kit.periods import add_months
from fanli.kit.sql import sql_literal

SalesInput: TypeAlias = "pa.Table | Sequence[str | Path]"


class CalculationError(FanliError):
    """The calculation could not run (an overflow, an engine failure)."""

    code = "calculation_failed"


# ---------------------------------------------------------------------------------------------
# SQL text helpers


_literal = sql_literal


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _in_list(column: str, values: Sequence[str]) -> str:
    if not values:
        return "FALSE"
    return f"{column} IN ({', '.join(_literal(v) for v in values)})"


def _selector_fields(
    selector: CustomerSelector | ProductSelector,
) -> list[tuple[str, tuple[str, ...]]]:
    """(column, values) pairs of a selector; columns are those of the dimension table."""
    fields: list[tuple[str, tuple[str, ...]]] = []
    if selector.id is not None:
        fields.append(("id_text", selector.id))
    if isinstance(selector, CustomerSelector):
        if selector.group is not None:
            fields.append(("group", selector.group))
    else:
        if selector.category is not None:
            fields.append(("category", selector.category))
        if selector.brand is not None:
            fields.append(("brand", selector.brand))
    fields.extend((f"attr:{name}", values) for name, values in selector.attributes.items())
    return fields


def _column_of(field: str) -> str:
    if field == "id_text":
        return "id_text"
    return _identifier(field.removeprefix("attr:"))


def _predicate(
    include: CustomerSelector | ProductSelector,
    exclude: CustomerSelector | ProductSelector,
    pool: tuple[str, ...] | None,
) -> str:
    """Boolean SQL over a dimension row; NULL never matches (coalesce to FALSE)."""
    included = [
        f"coalesce({_in_list(_column_of(f), v)}, FALSE)" for f, v in _selector_fields(include)
    ]
    if pool is not None:
        included.append(f"coalesce({_in_list('id_text', pool)}, FALSE)")
    excluded = [
        f"coalesce({_in_list(_column_of(f), v)}, FALSE)" for f, v in _selector_fields(exclude)
    ]
    condition = " AND ".join(included) if included else "TRUE"
    if excluded:
        condition = f"({condition}) AND NOT ({' OR '.join(excluded)})"
    return condition


# ---------------------------------------------------------------------------------------------
# Inputs


# Up to this many sales lines given as an Arrow table, the engine works in the process's shared
# DuckDB database (``fanli.kit.duck``) instead of opening one of its own. Opening and closing a
# database costs 20-25 ms, which is a sixth of rating the 34,000 lines an incremental run reads;
# what a run this small needs the shared database to keep is a few MB.
SHARED_DATABASE_LINES = 500_000


@contextmanager
def _connection(sales: SalesInput | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for one calculation. Everything it creates is temporary (or registered) and
    so belongs to the connection alone: calculations on other threads never see it."""
    if isinstance(sales, pa.Table) and sales.num_rows <= SHARED_DATABASE_LINES:
        with duck.connection() as connection:
            yield connection
        return
    # A database of its own: large inputs may spill, and not keeping the insertion order saves
    # memory and time on millions of lines (both are database-wide settings).
    with tempfile.TemporaryDirectory(prefix="fanli-duckdb-") as spill:
        connection = duckdb.connect(config={"temp_directory": spill})
        try:
            connection.execute("SET preserve_insertion_order = false")
            yield connection
        finally:
            connection.close()


def _register_sales(connection: duckdb.DuckDBPyConnection, sales: SalesInput) -> list[str]:
    """Register the facts as ``sales_raw``; returns its column names."""
    if isinstance(sales, pa.Table):
        check_fact_types(sales.schema)
        connection.register("sales_raw", sales)
    else:
        paths = [str(path) for path in sales]
        if not paths:
            raise InputError("no sales files given", field="sales")
        for path in paths:
            if not Path(path).exists():
                raise InputError("file not found", file=path)
        for path in paths:
            try:
                schema = pq.read_schema(path)
            except (OSError, pa.ArrowInvalid) as error:
                raise InputError(f"not a readable Parquet file: {error}", file=path) from None
            check_fact_types(schema, source=path)
        listing = ", ".join(_literal(p) for p in paths)
        connection.execute(f"CREATE TEMP VIEW sales_raw AS SELECT * FROM read_parquet([{listing}])")
    names = [row[0] for row in connection.execute("DESCRIBE sales_raw").fetchall()]
    for required in REQUIRED_SALES_COLUMNS:
        if required not in names:
            raise InputError("required column is missing", file="sales", field=required)
    if not set(DATE_COLUMNS) & set(names):
        raise InputError("no date column (invoice_date, order_date or paid_date)", file="sales")
    defaults = {
        "line_id": "NULL::VARCHAR",
        "document_type": "'invoice'",
        "gross_amount": "net_amount",
        "invoice_date": "NULL::DATE",
        "order_date": "invoice_date" if "invoice_date" in names else "NULL::DATE",
        "paid_date": "NULL::DATE",
        "currency": "NULL::VARCHAR",
    }
    columns = [
        f"{name}" if name in names else f"{default} AS {name}" for name, default in defaults.items()
    ]
    connection.execute(
        "CREATE TEMP VIEW sales AS SELECT customer_id, product_id, quantity, net_amount, "
        f"{', '.join(columns)} FROM sales_raw"
    )
    return names


def _id_type(connection: duckdb.DuckDBPyConnection, column: str) -> str:
    for name, column_type, *_ in connection.execute("DESCRIBE sales").fetchall():
        if name == column:
            return str(column_type)
    raise InputError("required column is missing", file="sales", field=column)


# Built-in dimension columns a file may lack (they are then empty); attributes may not.
_BUILTIN_COLUMNS = {"customer": CUSTOMER_BUILTINS, "product": PRODUCT_BUILTINS}


def _build_dimension(
    connection: duckdb.DuckDBPyConnection,
    *,
    kind: str,
    table: pa.Table | None,
    needed: set[str],
    referenced_ids: set[str],
    compiled: list[CompiledAgreement],
) -> None:
    """``{kind}_dim``: id (the facts' type), id_text and the filter columns (as text).

    Rows come from the dimension file and from ids the terms name that the file lacks. Built-in
    columns (group, category, brand) the file lacks are empty; a missing attribute is an error.
    A customers table with ``valid_from``/``valid_to`` holds eras (``_in_eras``): then
    ``customer_dim`` carries them too, and a customer may have several rows.
    """
    id_column = f"{kind}_id"
    id_type = _id_type(connection, id_column)
    columns = sorted(needed)
    present = set(table.column_names) if table is not None else set()
    if table is not None and id_column not in present:
        raise InputError("required column is missing", file=f"{kind}s", field=id_column)
    missing = [c for c in columns if c not in present and c not in _BUILTIN_COLUMNS[kind]]
    if missing:
        users = sorted(c.agreement.id for c in compiled if missing[0] in _filter_columns(c, kind))
        source = (
            f"the {kind}s file has no such column"
            if table is not None
            else f"no {kind}s file was given"
        )
        raise InputError(
            f"agreement {users[0] if users else '?'} filters {kind}s on attribute "
            f"{missing[0]!r}, but {source}",
            file=f"{kind}s",
            field=missing[0],
        )

    def column_sql(name: str, source_has: bool) -> str:
        value = f"CAST({_identifier(name)} AS VARCHAR)" if source_has else "NULL::VARCHAR"
        return f"{value} AS {_identifier(name)}"

    file_columns = "".join(f", {column_sql(c, c in present)}" for c in columns)
    empty_columns = "".join(f", {column_sql(c, False)}" for c in columns)
    eras = kind == "customer" and _in_eras(table)
    null_filters = empty_columns  # the filter columns alone, as NULL: a gap's values
    if eras:
        _check_eras(connection, table)
        file_columns += (
            ", CAST(valid_from AS DATE) AS valid_from, CAST(valid_to AS DATE) AS valid_to"
        )
        empty_columns += ", NULL::DATE AS valid_from, NULL::DATE AS valid_to"
    _create_table(
        connection,
        f"{kind}_named",
        [("id_text", "VARCHAR")],
        [(v,) for v in sorted(referenced_ids)],
    )
    # A view: the dimension is read once, when the items are keyed (see _classify).
    named = f"SELECT TRY_CAST(id_text AS {id_type}) AS id, id_text{empty_columns} FROM {kind}_named"
    if table is not None:
        connection.register(f"{kind}s_raw", table)
        from_file = (
            f"SELECT TRY_CAST({id_column} AS {id_type}) AS id, "
            f"CAST({id_column} AS VARCHAR) AS id_text{file_columns} "
            f"FROM {kind}s_raw WHERE {id_column} IS NOT NULL"
        )
        if eras:
            from_file = _with_gaps(from_file, null_filters)
        if referenced_ids:
            from_file += (
                f" UNION ALL {named} WHERE id_text NOT IN "
                f"(SELECT CAST({id_column} AS VARCHAR) FROM {kind}s_raw)"
            )
        connection.execute(f"CREATE TEMP VIEW {kind}_dim AS {from_file}")
    else:
        connection.execute(f"CREATE TEMP VIEW {kind}_dim AS {named}")


# A customer's eras: rows of the customers table that hold from ``valid_from`` (empty: always)
# until ``valid_to`` (exclusive; empty: for good). A line is judged by the era its event date
# falls in (ADR 0012): a customer's group on the day of the sale, not on the as-of day.
_ERA_COLUMNS = {"valid_from", "valid_to"}


def _with_gaps(eras: str, empty_columns: str) -> str:
    """The customers' eras and, for the days none of a customer's eras covers, rows without
    values (``empty_columns``: the filter columns as NULL): on those days it is a customer
    missing from the file (it matches ``id`` selectors and empty includes only), as the
    reference reads it."""
    return f"""WITH given AS ({eras}), ordered AS (
            SELECT id, id_text, valid_from, valid_to,
                   lag(valid_to) OVER w AS before_to,
                   row_number() OVER w AS k, count(*) OVER (PARTITION BY id_text) AS n
            FROM given WINDOW w AS (PARTITION BY id_text ORDER BY valid_from NULLS FIRST))
        SELECT * FROM given
        UNION ALL SELECT id, id_text{empty_columns}, before_to, valid_from
        FROM ordered WHERE k > 1 AND before_to < valid_from
        UNION ALL SELECT id, id_text{empty_columns}, NULL::DATE, valid_from
        FROM ordered WHERE k = 1 AND valid_from IS NOT NULL
        UNION ALL SELECT id, id_text{empty_columns}, valid_to, NULL::DATE
        FROM ordered WHERE k = n AND valid_to IS NOT NULL"""


def _check_eras(connection: duckdb.DuckDBPyConnection, table: pa.Table | None) -> None:
    """A customer's eras must not overlap, or a line would count twice."""
    assert table is not None
    connection.register("customer_eras_given", table.select(["customer_id", *sorted(_ERA_COLUMNS)]))
    for column in sorted(_ERA_COLUMNS):  # dates, or ISO text as a file gives them
        bad = connection.execute(
            f"""SELECT CAST(customer_id AS VARCHAR), CAST({column} AS VARCHAR)
            FROM customer_eras_given
            WHERE {column} IS NOT NULL AND TRY_CAST({column} AS DATE) IS NULL
            ORDER BY 1 LIMIT 1"""
        ).fetchall()
        if bad:
            connection.unregister("customer_eras_given")
            raise InputError(
                f"customer {bad[0][0]}: {bad[0][1]!r} is not a date", file="customers", field=column
            )
    found = connection.execute(
        """WITH customer_eras_raw AS (
            SELECT CAST(customer_id AS VARCHAR) AS customer_id,
                   CAST(valid_from AS DATE) AS valid_from, CAST(valid_to AS DATE) AS valid_to
            FROM customer_eras_given)
        SELECT customer_id FROM (
            SELECT customer_id, valid_from,
                   lag(coalesce(valid_to, DATE '9999-12-31'))
                     OVER (PARTITION BY customer_id ORDER BY valid_from NULLS FIRST) AS before_end
            FROM customer_eras_raw WHERE customer_id IS NOT NULL)
        WHERE before_end IS NOT NULL
          AND coalesce(valid_from, DATE '0001-01-01') < before_end
        ORDER BY customer_id LIMIT 1"""
    ).fetchall()
    connection.unregister("customer_eras_given")
    if found:
        raise InputError(
            f"customer {found[0][0]} has eras that overlap (valid_from, valid_to)",
            file="customers",
            field="valid_from",
        )


def _in_eras(customers: pa.Table | None) -> bool:
    """Whether the customers are given in eras."""
    return customers is not None and _ERA_COLUMNS.issubset(customers.column_names)


def _filter_columns(compiled: CompiledAgreement, kind: str) -> set[str]:
    agreement = compiled.agreement
    sets: list[LineSet] = [agreement.eligibility]
    if agreement.target:
        sets.append(agreement.target)
    if agreement.gate:
        sets.append(agreement.gate)
    columns: set[str] = set()
    for line_set in sets:
        line_filter = line_set.customers if kind == "customer" else line_set.products
        for selector in (line_filter.include, line_filter.exclude):
            for field, _values in _selector_fields(selector):
                if field != "id_text":
                    columns.add(field.removeprefix("attr:"))
    return columns


@dataclass(frozen=True)
class _SetFilter:
    """One line set's filter on one dimension."""

    set_no: int
    include: CustomerSelector | ProductSelector
    exclude: CustomerSelector | ProductSelector
    pool: tuple[str, ...] | None

    def sql(self) -> str:
        return _predicate(self.include, self.exclude, self.pool)

    def matcher(self) -> Callable[[dict[str, str | None]], bool]:
        """The same rule as ``sql()``, in Python: fields AND, values OR, any exclude field
        excludes, NULL never matches. Fields and value sets are prepared once."""

        def prepared(
            selector: CustomerSelector | ProductSelector,
        ) -> list[tuple[str, frozenset[str]]]:
            return [
                (field.removeprefix("attr:"), frozenset(values))
                for field, values in _selector_fields(selector)
            ]

        include = prepared(self.include)
        if self.pool is not None:
            include.append(("id_text", frozenset(self.pool)))
        exclude = prepared(self.exclude)

        def matches(row: dict[str, str | None]) -> bool:
            # None (an empty value) is never in a set of text values: NULL never matches.
            if any(row[column] not in values for column, values in include):
                return False
            return all(row[column] not in values for column, values in exclude)

        return matches


# Above this many (combination x line set) checks the filters run as one SQL expression.
PYTHON_FILTER_LIMIT = 200_000


def _classify(
    connection: duckdb.DuckDBPyConnection,
    kind: str,
    filters: list[_SetFilter],
    filter_columns: list[str],
    *,
    named_ids: set[str],
    ordered: bool,
    eras: bool = False,
) -> None:
    """``{kind}_class(id, cls, no)`` and ``{kind}_class_sets(cls, set_no)``; with ``eras``
    (customers only), ``customer_class`` also has each row's ``valid_from`` and ``valid_to``.

    ``cls`` numbers the distinct sets-of-line-sets the item belongs to; ``no`` numbers the items
    (customers become beneficiaries by it). The filters are evaluated once per distinct
    combination of the columns they read (an id counts only when some filter names it), not once
    per item: 125 segment x nation combinations instead of 150,000 customers. Few combinations
    are evaluated in Python (planning one SQL expression of hundreds of filters costs more than
    evaluating them); many, in SQL.

    An item the dimension lacks has no attributes: when such an item belongs to some line set
    (an include without fields), every id the facts use is added to the dimension first, so that
    the probe stays an inner equi-join.
    """
    columns = ", ".join(_identifier(c) for c in filter_columns)
    dimension_columns = "".join(f", d.{_identifier(c)}" for c in filter_columns)
    null_columns = "".join(f", NULL::VARCHAR AS {_identifier(c)}" for c in filter_columns)
    era_columns = ", d.valid_from, d.valid_to" if eras else ""
    named = bool(named_ids)
    named_id = (
        f"CASE WHEN d.id_text IN (SELECT id_text FROM {kind}_named) THEN d.id_text END"
        if named
        else "NULL::VARCHAR"
    )
    # A view: read twice (combinations, numbering) straight from the Arrow dimension, which is
    # cheaper than materialising it; materialised only if ids must be added (below).
    connection.execute(
        f"""CREATE TEMP VIEW {kind}_keyed AS
        SELECT d.id, d.id_text, {named_id} AS named_id{dimension_columns}{era_columns}
        FROM {kind}_dim d"""
    )
    # Distinct combinations by hashing (no sort of every item). In a combination, id_text is the
    # id only when some filter names it (otherwise NULL: it matches no id selector, exactly as
    # the real id would not). The all-NULL combination stands for items the dimension lacks.
    distinct = (
        f"SELECT DISTINCT named_id AS id_text{', ' + columns if columns else ''} "
        f"FROM {kind}_keyed UNION SELECT NULL::VARCHAR AS id_text{null_columns}"
    )
    most = PYTHON_FILTER_LIMIT // max(len(filters), 1)
    fetched = connection.execute(f"{distinct} LIMIT {most + 1}").fetchall()
    unknown_matches: bool | None = None
    if len(fetched) <= most:
        names = ["id_text", *filter_columns]
        rows = [dict(zip(names, values, strict=True)) for values in fetched]
        matchers = [(str(f.set_no), f.matcher()) for f in filters]
        signatures = [",".join(no for no, matches in matchers if matches(row)) for row in rows]
        _create_table(
            connection,
            f"{kind}_combo",
            [*((name, "VARCHAR") for name in names), ("sig", "VARCHAR")],
            [(*row.values(), sig) for row, sig in zip(rows, signatures, strict=True)],
        )
        unknown_matches = any(
            sig and all(value is None for value in row.values())
            for row, sig in zip(rows, signatures, strict=True)
        )
    else:
        signature = (
            "concat_ws(',', "
            + ", ".join(f"CASE WHEN {f.sql()} THEN '{f.set_no}' END" for f in filters)
            + ")"
        )
        connection.execute(
            f"CREATE TEMP TABLE {kind}_combo AS SELECT *, {signature} AS sig FROM ({distinct})"
        )
    if unknown_matches is None:
        unknown_null = " AND ".join(
            ["id_text IS NULL", *(f"{_identifier(c)} IS NULL" for c in filter_columns)]
        )
        row = connection.execute(
            f"SELECT sig FROM {kind}_combo WHERE {unknown_null} AND sig <> ''"
        ).fetchone()
        unknown_matches = row is not None
    if unknown_matches:
        # Items missing from the dimension belong to a line set: add every id the facts use,
        # so that the probe stays an inner equi-join.
        connection.execute(f"ALTER VIEW {kind}_keyed RENAME TO {kind}_keyed_view")
        connection.execute(f"CREATE TEMP TABLE {kind}_keyed AS SELECT * FROM {kind}_keyed_view")
        connection.execute(
            f"""INSERT INTO {kind}_keyed BY NAME
            SELECT id, CAST(id AS VARCHAR) AS id_text
            FROM (SELECT DISTINCT {kind}_id AS id FROM sales WHERE {kind}_id IS NOT NULL)
            WHERE CAST(id AS VARCHAR) NOT IN (SELECT id_text FROM {kind}_keyed)"""
        )
    connection.execute(
        f"""CREATE TEMP TABLE {kind}_classes AS
        SELECT sig, CAST(row_number() OVER (ORDER BY sig) AS INTEGER) AS cls
        FROM (SELECT DISTINCT sig FROM {kind}_combo WHERE sig <> '')"""
    )
    numbering = (
        # customers become beneficiaries by number: in text order, so sorting by number is
        # sorting by id; a customer's eras share its number
        "CAST(dense_rank() OVER (ORDER BY k.id_text) AS INTEGER)"
        if eras
        else f"CAST(row_number() OVER ({'ORDER BY k.id_text' if ordered else ''}) AS INTEGER)"
        if kind == "customer"
        else "0"
    )
    era_dates = ", valid_from, valid_to" if eras else ""
    item_era_dates = ", k.valid_from, k.valid_to" if eras else ""
    # Join the items back to their combination: an equi-join on a hash of the columns, checked
    # column by column with NULL-safe equality (a hash alone could collide).
    pairs = [("named_id", "id_text"), *((_identifier(c), _identifier(c)) for c in filter_columns)]
    item_hash = "hash(" + ", ".join(f"k.{item}" for item, _ in pairs) + ")"
    combo_hash = "hash(" + ", ".join(f"c.{combo}" for _, combo in pairs) + ")"
    null_safe = " AND ".join(f"k.{item} IS NOT DISTINCT FROM c.{combo}" for item, combo in pairs)
    # Customers' numbers are read three times (classes, names, the limit); products' once.
    materialised = "TABLE" if kind == "customer" else "VIEW"
    connection.execute(
        f"""CREATE TEMP {materialised} {kind}_numbered AS
        SELECT k.id, k.id_text, {numbering} AS no, cl.cls{item_era_dates}
        FROM {kind}_keyed k
        JOIN (SELECT *, {combo_hash} AS h FROM {kind}_combo c) c
          ON {item_hash} = c.h AND {null_safe}
        LEFT JOIN {kind}_classes cl ON cl.sig = c.sig"""
    )
    if kind == "customer":
        row = connection.execute("SELECT coalesce(max(no), 0) FROM customer_numbered").fetchone()
        if row is not None and row[0] >= 1 << _CUSTOMER_BITS:
            raise CalculationError(
                f"{row[0]:,} customers; one run supports fewer than {1 << _CUSTOMER_BITS:,}"
            )
    connection.execute(
        f"""CREATE TEMP TABLE {kind}_class AS
        SELECT id, cls, no{era_dates}
        FROM {kind}_numbered WHERE id IS NOT NULL AND cls IS NOT NULL"""
    )
    connection.execute(
        f"""CREATE TEMP TABLE {kind}_class_sets AS
        SELECT cls, CAST(unnest(string_split(sig, ',')) AS INTEGER) AS set_no
        FROM {kind}_classes"""
    )
    if kind == "customer":
        connection.execute(
            "CREATE TEMP TABLE customer_names AS SELECT DISTINCT no, id_text FROM customer_numbered"
        )


def _referenced_ids(specs: list[LineSetSpec], kind: str) -> set[str]:
    ids: set[str] = set()
    for spec in specs:
        line_filter = spec.customers if kind == "customer" else spec.products
        for selector in (line_filter.include, line_filter.exclude):
            ids.update(selector.id or ())
        if kind == "customer" and spec.pool:
            ids.update(spec.pool)
    return ids


# ---------------------------------------------------------------------------------------------
# Small tables from the compiled terms


_ARROW_TYPES: dict[str, pa.DataType] = {
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "HUGEINT": pa.decimal128(38, 0),  # Arrow has no 128-bit integer; decimal(38, 0) is exact
    "VARCHAR": pa.string(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "VARCHAR[]": pa.list_(pa.string()),
}


def _create_table(
    connection: duckdb.DuckDBPyConnection,
    name: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[object]],
) -> None:
    """A temp table from Python rows, through one Arrow table (row-wise INSERTs cost ~1 ms
    each in DuckDB: 2,000 band and segment rows took seconds)."""
    values = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    arrays = []
    for (_, sql_type), column in zip(columns, values, strict=True):
        items = list(column)
        if sql_type == "HUGEINT":
            items = [None if v is None else Decimal(v) for v in items]
        arrays.append(pa.array(items, type=_ARROW_TYPES[sql_type]))
    staged = pa.Table.from_arrays(arrays, names=[column for column, _ in columns])
    connection.register(f"{name}_staged", staged)
    casts = ", ".join(
        f"CAST({_identifier(column)} AS {sql_type}) AS {_identifier(column)}"
        for column, sql_type in columns
    )
    connection.execute(f"CREATE TEMP TABLE {name} AS SELECT {casts} FROM {name}_staged")
    connection.unregister(f"{name}_staged")


def _load_small_tables(
    connection: duckdb.DuckDBPyConnection,
    compiled: list[CompiledAgreement],
    specs: list[LineSetSpec],
    as_of: dt.date | None,
) -> None:
    _create_table(
        connection,
        "agreement_params",
        [
            ("agreement_no", "INTEGER"),
            ("agreement_id", "VARCHAR"),
            ("version", "INTEGER"),
            ("currency", "VARCHAR"),
            ("scope_term", "BOOLEAN"),
            ("method", "VARCHAR"),
            ("form", "VARCHAR"),
            ("p_measure", "INTEGER"),
            ("t_measure", "INTEGER"),
            ("g_measure", "INTEGER"),
            ("same_measure", "BOOLEAN"),
            ("separate_target", "BOOLEAN"),
            ("growth_mode", "VARCHAR"),
            ("prior_year", "BOOLEAN"),
            ("baseline_fixed", "HUGEINT"),
            ("minimum", "HUGEINT"),
            ("gate_target", "HUGEINT"),
            ("has_gate", "BOOLEAN"),
            ("cap_period", "HUGEINT"),
            ("cap_term", "HUGEINT"),
            ("guarantee", "HUGEINT"),
            ("carry_forward", "BOOLEAN"),
            ("pooled", "BOOLEAN"),
            ("pro_rata", "BOOLEAN"),
            ("counterparty", "VARCHAR"),
            ("half_even", "BOOLEAN"),
            ("divisor", "HUGEINT"),
            ("money_to_measure", "HUGEINT"),
            ("expected", "BOOLEAN"),
            ("term_start", "DATE"),
            ("term_end", "DATE"),
            ("dense", "BOOLEAN"),
        ],
        [
            (
                c.agreement_no,
                c.agreement.id,
                c.agreement.version,
                c.agreement.currency,
                c.scope_term,
                c.method,
                c.form,
                c.p_measure,
                c.t_measure,
                c.g_measure,
                c.same_measure,
                c.agreement.target is not None,
                c.growth_mode,
                c.agreement.growth is not None and c.baseline_fixed is None,
                c.baseline_fixed,
                c.minimum,
                c.gate_target,
                c.agreement.gate is not None,
                c.cap_period,
                c.cap_term,
                c.guarantee,
                c.carry_forward,
                c.pooled,
                c.pro_rata,
                c.counterparty,
                c.half_even,
                c.divisor,
                c.money_to_measure,
                c.expected,
                c.agreement.term_period.start,
                c.agreement.term_period.end,
                c.dense,
            )
            for c in compiled
        ],
    )
    _create_table(
        connection,
        "periods",
        [
            ("agreement_no", "INTEGER"),
            ("period_index", "INTEGER"),
            ("period_start", "DATE"),
            ("period_end", "DATE"),
        ],
        [
            (c.agreement_no, index, period.start, period.end)
            for c in compiled
            for index, period in enumerate(c.periods, start=1)
            if as_of is None or period.start <= as_of
        ],
    )
    # upper_bound is the next band's lower: the top band also takes values above its own "to".
    _create_table(
        connection,
        "bands",
        [
            ("agreement_no", "INTEGER"),
            ("band_no", "INTEGER"),
            ("lower", "HUGEINT"),
            ("rate", "HUGEINT"),
            ("marginal_below", "HUGEINT"),
            ("rate_sum", "HUGEINT"),
            ("display_rate", "HUGEINT"),
            ("lower_bound", "BIGINT"),
            ("upper_bound", "BIGINT"),
        ],
        [
            (
                b.agreement_no,
                b.band_no,
                b.lower,
                b.rate,
                b.marginal_below,
                b.rate_sum,
                b.display_rate,
                b.lower,
                c.bands[index + 1].lower if index + 1 < len(c.bands) else _BIGINT_TOP,
            )
            for c in compiled
            for index, b in enumerate(c.bands)
        ],
    )
    _create_table(
        connection,
        "line_sets",
        [
            ("set_no", "INTEGER"),
            ("agreement_no", "INTEGER"),
            ("role", "INTEGER"),
            ("event_column", "VARCHAR"),
            ("document_types", "VARCHAR[]"),
            ("currency", "VARCHAR"),
            ("measure", "INTEGER"),
            ("second_measure", "INTEGER"),
        ],
        [
            (
                s.set_no,
                s.agreement_no,
                int(s.role),
                s.event_column,
                list(s.document_types) if s.document_types is not None else None,
                s.currency,
                s.measure,
                s.second_measure,
            )
            for s in specs
        ],
    )
    _create_table(
        connection,
        "segments",
        [
            ("set_no", "INTEGER"),
            ("month", "INTEGER"),
            ("seg_start", "DATE"),
            ("seg_end", "DATE"),
            ("period_index", "INTEGER"),
        ],
        [
            (s.set_no, seg.month.year * 12 + seg.month.month, seg.start, seg.end, seg.period_index)
            for s in specs
            for seg in s.segments
        ],
    )


# ---------------------------------------------------------------------------------------------
# The pass over the facts


_PERIOD_BITS = MOST_PERIODS.bit_length()  # periods per term: 12 bits
_CUSTOMER_BITS = 28  # customers
_SET_SHIFT = _PERIOD_BITS + _CUSTOMER_BITS  # line sets (or agreements): 23 bits left
# A result's key packs (agreement, beneficiary); OR-ing the period index makes a row key that
# also sorts rows by agreement, beneficiary and period.
_RESULT_KEY = (
    f"(CAST(agreement_no AS BIGINT) << {_SET_SHIFT}) | (CAST(bno AS BIGINT) << {_PERIOD_BITS})"
)


_MONTH_BITS = 16  # year * 12 + month stays below 65,536 until the year 5461


def _measure_sql(code: str) -> str:
    """The line's measure chosen by the map row's code, as BIGINT in 10**-4 units.

    Scaling a DECIMAL(18, 4) by 10**4 stays in 64 bits and costs next to nothing, but overflows
    for values of 10**10 and more; those few take the 128-bit path (30x slower per line)."""
    value = f"(CASE {code} WHEN 0 THEN s.net_amount WHEN 1 THEN s.gross_amount ELSE s.quantity END)"
    return (
        f"CASE WHEN {value} > -1000000000 AND {value} < 1000000000 "
        f"THEN CAST({value} * 10000 AS BIGINT) "
        f"ELSE CAST(CAST({value} AS DECIMAL(38, 4)) * 10000 AS BIGINT) END"
    )


def _probe_sql(
    event_column: str,
    map_table: str,
    product_classes: int,
    conditions: list[str],
    *,
    second_measure: bool,
) -> str:
    """One probe of the facts for the line sets of one eligibility event: two dimension lookups
    and ONE equi-join on a packed BIGINT (customer class, product class, month). Each line adds
    only the measure its set needs (a second one only where the tier measure differs)."""
    date = f"s.{event_column}"
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    second = (
        f"sum(CASE WHEN m.second_measure >= 0 THEN {_measure_sql('m.second_measure')} END)"
        if second_measure
        else "NULL::BIGINT"
    )
    return f"""
        SELECT m.set_period | (CAST(c.no AS BIGINT) << {_PERIOD_BITS}) AS group_key,
               sum({_measure_sql("m.measure")}) AS v1, {second} AS v2, count(*) AS lines
        FROM sales s
        JOIN customer_class c ON s.customer_id = c.id
        JOIN product_class p ON s.product_id = p.id
        JOIN {map_table} m
          ON m.map_key = ((CAST(c.cls AS BIGINT) * {product_classes} + p.cls) << {_MONTH_BITS})
                         + year({date}) * 12 + month({date})
        {where}
        GROUP BY group_key"""


def _whole_months(specs: list[LineSetSpec]) -> bool:
    """Whether every segment is a whole calendar month (then the month key decides alone)."""
    return all(
        segment.start.day == 1 and segment.end == add_months(segment.start, 1)
        for spec in specs
        for segment in spec.segments
    )


def _currency_rule(
    connection: duckdb.DuckDBPyConnection,
    specs: list[LineSetSpec],
    sales_columns: list[str],
    unstated_currency: str | None,
) -> str | None:
    """Rule 3 as a condition on a matched line ``s`` and its map row ``m``, or None where it
    cannot drop a line: no line states a currency and none is implied, or every line is in the
    implied currency and so is every agreement (the store's usual case, at no cost)."""
    stated = False
    if "currency" in sales_columns:
        found = connection.execute(
            "SELECT EXISTS (SELECT 1 FROM sales_raw WHERE currency IS NOT NULL)"
        ).fetchone()
        stated = bool(found and found[0])
    if unstated_currency is None:
        return "(s.currency IS NULL OR s.currency = m.currency)" if stated else None
    if stated or any(spec.currency != unstated_currency for spec in specs):
        return f"coalesce(s.currency, {_literal(unstated_currency)}) = m.currency"
    return None


@dataclass(frozen=True)
class _Probe:
    """How the facts of one eligibility event are matched: its map table and conditions."""

    event_column: str
    map_table: str
    conditions: list[str]


def _build_maps(
    connection: duckdb.DuckDBPyConnection,
    specs: list[LineSetSpec],
    sales_columns: list[str],
    *,
    unstated_currency: str | None,
    eras: bool,
    exact_dates: bool = False,
) -> tuple[list[_Probe], int]:
    """The eligibility map of each event and the conditions a matched line must meet."""
    row = connection.execute("SELECT coalesce(max(cls), 0) + 1 FROM product_classes").fetchone()
    product_classes = int(row[0]) if row else 1
    residuals = []
    if any(spec.document_types is not None for spec in specs):
        residuals.append(
            "(m.document_types IS NULL OR list_contains(m.document_types, s.document_type))"
        )
    currency_rule = _currency_rule(connection, specs, sales_columns, unstated_currency)
    if currency_rule:
        residuals.append(currency_rule)
    probes = []
    for number, event in enumerate(sorted({spec.event_column for spec in specs})):
        event_specs = [spec for spec in specs if spec.event_column == event]
        segments = [segment for spec in event_specs for segment in spec.segments]
        if not segments:
            continue
        map_table = f"event_map_{number}"
        connection.execute(
            f"""CREATE TEMP TABLE {map_table} AS
            SELECT ((CAST(cs.cls AS BIGINT) * {product_classes} + ps.cls) << {_MONTH_BITS})
                     + g.month AS map_key,
                   (CAST(g.set_no AS BIGINT) << {_SET_SHIFT}) | g.period_index AS set_period,
                   g.set_no, g.period_index, l.role,
                   g.seg_start, g.seg_end, l.document_types, l.currency, l.measure,
                   coalesce(l.second_measure, -1) AS second_measure
            FROM customer_class_sets cs
            JOIN product_class_sets ps USING (set_no)
            JOIN segments g USING (set_no)
            JOIN line_sets l USING (set_no)
            WHERE l.event_column = {_literal(event)}"""
        )
        date = f"s.{event}"
        # Lines outside every segment are dropped before any join; the constant bounds also
        # let the Parquet reader skip row groups by their statistics.
        first = min(segment.start for segment in segments)
        last = max(segment.end for segment in segments)
        conditions = [f"{date} >= DATE '{first}'", f"{date} < DATE '{last}'", *residuals]
        if eras:
            conditions += [
                f"(c.valid_from IS NULL OR {date} >= c.valid_from)",
                f"(c.valid_to IS NULL OR {date} < c.valid_to)",
            ]
        if exact_dates or not _whole_months(event_specs):
            conditions += [f"{date} >= m.seg_start", f"{date} < m.seg_end"]
        probes.append(_Probe(event, map_table, conditions))
    return probes, product_classes


def _aggregate_facts(
    connection: duckdb.DuckDBPyConnection,
    specs: list[LineSetSpec],
    sales_columns: list[str],
    unstated_currency: str | None,
    *,
    eras: bool,
) -> None:
    maps, product_classes = _build_maps(
        connection, specs, sales_columns, unstated_currency=unstated_currency, eras=eras
    )
    second_measure = any(spec.second_measure is not None for spec in specs)
    probes = [
        _probe_sql(
            probe.event_column,
            probe.map_table,
            product_classes,
            probe.conditions,
            second_measure=second_measure,
        )
        for probe in maps
    ]
    if not probes:
        probes.append(
            "SELECT 0::BIGINT AS group_key, 0::BIGINT AS v1, 0::BIGINT AS v2, "
            "0::BIGINT AS lines WHERE FALSE"
        )
    # One packed BIGINT group key (set, customer, period) aggregates ~25% faster than three.
    connection.execute(
        f"""CREATE TEMP TABLE fact_sums AS
        SELECT CAST(group_key >> {_SET_SHIFT} AS INTEGER) AS set_no,
               CAST((group_key >> {_PERIOD_BITS}) & {(1 << _CUSTOMER_BITS) - 1} AS INTEGER) AS cno,
               CAST(group_key & {(1 << _PERIOD_BITS) - 1} AS INTEGER) AS period_index,
               v1, v2, lines
        FROM ({" UNION ALL ".join(probes)})"""
    )


# ---------------------------------------------------------------------------------------------
# Rating


def _install_macros(connection: duckdb.DuckDBPyConnection) -> None:
    """Integer helpers. Division of 128-bit integers is slow in DuckDB, so a quotient whose
    operands fit in 62 bits is taken in 64-bit arithmetic; the result is exact either way."""
    connection.execute(
        "CREATE TEMP MACRO exact_div(n, d) AS CASE WHEN n < 4611686018427387904 "
        "AND d < 4611686018427387904 THEN CAST(CAST(n AS BIGINT) // CAST(d AS BIGINT) AS HUGEINT) "
        "ELSE n // d END"
    )
    connection.execute(
        "CREATE TEMP MACRO exact_mod(n, d) AS CASE WHEN n < 4611686018427387904 "
        "AND d < 4611686018427387904 THEN CAST(CAST(n AS BIGINT) % CAST(d AS BIGINT) AS HUGEINT) "
        "ELSE n % d END"
    )


_BIGINT_TOP = 9223372036854775807  # above every band bound
# Columns of ``windows`` the result needs, carried through the rating and settling steps.
_WINDOW_COLUMNS = ("p_period", "lines", "p", "t", "g", "b")


def _rating_sql(source: str, *, projected: bool, carry: tuple[str, ...] = ()) -> str:
    """Tier lookup and exact raw rebate for the rows of ``source``, rounded once.

    ``source`` has key, agreement_no, period_index, t, p, g, b (integers, 10**-4 units) and, when
    ``projected``, the projection factors h (horizon days) and e (elapsed days). The projection
    substitutes T -> T*H, P -> P*H and scales thresholds by E, then divides by H
    (docs/calculation.md, "Accrual"): the raw rebate is homogeneous of degree one. Without a
    projection h = e = 1 and the SQL says so literally, so that no 128-bit division is needed
    for the band lookup.

    The band is found with a hash join on the agreement and a range condition
    ``lower <= lookup < next lower``: measured 6x faster than an ASOF join here. ``carry`` names
    columns of ``source`` passed through to the result (saves joining it back).
    """
    carried = "".join(f", {column}" for column in carry)
    if projected:
        h, e = "r.h", "r.e"
        growth_lookup = (
            f"exact_div(CAST(r.t AS HUGEINT) * r.h * {GROWTH_SCALE}, CAST(r.b AS HUGEINT) * r.e)"
        )
        plain_lookup = "exact_div(CAST(r.t AS HUGEINT) * r.h, CAST(r.e AS HUGEINT))"
    else:
        h, e = "1", "1"
        growth_lookup = f"exact_div(CAST(r.t AS HUGEINT) * {GROWTH_SCALE}, CAST(r.b AS HUGEINT))"
        plain_lookup = "r.t"
    return f"""
    WITH looked AS (
        SELECT r.key, r.agreement_no, r.period_index{"".join(f", r.{c}" for c in carry)},
               CAST(r.t AS HUGEINT) * {h} AS tn, CAST(r.p AS HUGEINT) * {h} AS pn,
               CAST(r.g AS HUGEINT) * {h} AS gn, CAST(r.b AS HUGEINT) * {e} AS be,
               CAST({h} AS HUGEINT) AS h, CAST({e} AS HUGEINT) AS e,
               CAST(CASE
                 WHEN a.growth_mode IS NOT NULL THEN
                   CASE WHEN r.b > 0 AND r.t >= 0
                        THEN least({growth_lookup}, {_BIGINT_TOP - 1}) ELSE -1 END
                 WHEN r.t < 0 THEN -1
                 ELSE least({plain_lookup}, {_BIGINT_TOP - 1})
               END AS BIGINT) AS lookup
        FROM {source} r JOIN agreement_params a USING (agreement_no)
    ),
    banded AS (
        SELECT l.*, b.band_no, b.lower, b.rate, b.marginal_below, b.rate_sum, b.display_rate
        FROM looked l LEFT JOIN bands b
          ON l.agreement_no = b.agreement_no AND l.lookup >= b.lower_bound
         AND l.lookup < b.upper_bound
    ),
    fractions AS (
        SELECT x.key, x.agreement_no, x.period_index{"".join(f", x.{c}" for c in carry)},
          x.band_no, x.display_rate, x.h,
          x.pn, x.tn, a.same_measure, a.form, a.growth_mode, a.method, a.divisor, a.half_even,
          (x.band_no IS NOT NULL
           AND (a.minimum IS NULL OR x.tn >= a.minimum * x.e)
           AND (NOT a.has_gate OR x.gn >= a.gate_target * x.e)) AS earns,
          CASE
            WHEN a.form = 'fixed' AND a.method = 'all_reached' THEN x.rate_sum * x.e
            WHEN a.form = 'fixed' THEN x.rate * x.e
            WHEN a.growth_mode = 'whole_basis' THEN x.rate * x.pn
            WHEN a.growth_mode = 'growth_only' THEN x.rate * greatest(x.tn - x.be, 0)
            WHEN a.growth_mode = 'marginal' THEN
                 x.marginal_below * x.be + x.rate * (x.tn * {GROWTH_SCALE} - x.lower * x.be)
            WHEN a.method = 'whole_volume' THEN x.rate * x.pn
            WHEN a.method = 'all_reached' THEN x.rate_sum * x.pn
            WHEN a.method = 'marginal' THEN x.marginal_below * x.e + x.rate * (x.tn - x.lower * x.e)
            ELSE x.marginal_below * x.e + x.rate * x.tn
          END AS x,
          CASE WHEN a.growth_mode = 'marginal' THEN {GROWTH_SCALE} ELSE 1 END AS x_den
        FROM banded x JOIN agreement_params a USING (agreement_no)
    ),
    raw AS (
        SELECT key, agreement_no, period_index{carried}, band_no, display_rate, half_even, earns,
          -- the band-wise forms value the tier basis at P / T when T and P differ
          (NOT same_measure AND form <> 'fixed'
           AND (growth_mode IN ('growth_only', 'marginal')
                OR (growth_mode IS NULL AND method IN ('marginal', 'rolling')))) AS by_average,
          x, x_den, pn, tn, h, divisor
        FROM fractions
    ),
    fraction AS (
        SELECT key, agreement_no, period_index{carried}, band_no, display_rate, half_even,
          CASE WHEN NOT earns OR (by_average AND tn = 0) THEN 0::HUGEINT
               WHEN by_average THEN x * pn ELSE x END AS numerator,
          -- positive always: a reached band means T >= 0, and T = 0 pays nothing
          CASE WHEN earns AND by_average AND tn <> 0 THEN x_den * tn * h ELSE x_den * h END
            * divisor AS denominator
        FROM raw
    ),
    divided AS (
        -- each quotient and remainder once (the rounding rule reads them twice)
        SELECT *, exact_div(abs(numerator), denominator) AS whole,
               exact_mod(abs(numerator), denominator) AS remainder
        FROM fraction
    )
    SELECT key, agreement_no, period_index{carried}, coalesce(band_no, 0) AS tier, display_rate,
           CAST((CASE WHEN numerator < 0 THEN -1 ELSE 1 END)
                * (whole + CASE WHEN 2 * remainder > denominator
                                  OR (2 * remainder = denominator
                                      AND (NOT half_even OR whole % 2 = 1))
                                THEN 1 ELSE 0 END) AS BIGINT) AS amount
    FROM divided"""


@dataclass(frozen=True)
class _Features:
    """Which term features the agreements of one run use: the SQL leaves out what none needs."""

    several_sets: bool  # a target, gate or baseline set
    pooled: bool
    pro_rata: bool
    scope_term: bool
    prior_year: bool
    cap_period: bool
    cap_term: bool
    guarantee: bool
    carry_forward: bool
    projection: bool
    dense: bool

    @classmethod
    def of(cls, compiled: list[CompiledAgreement], as_of: dt.date | None) -> _Features:
        def some(test: Callable[[CompiledAgreement], bool]) -> bool:
            return any(test(c) for c in compiled)

        return cls(
            several_sets=some(
                lambda c: (
                    c.agreement.target is not None
                    or c.agreement.gate is not None
                    or (c.agreement.growth is not None and c.baseline_fixed is None)
                )
            ),
            pooled=some(lambda c: c.pooled),
            pro_rata=some(lambda c: c.pro_rata),
            scope_term=some(lambda c: c.scope_term),
            prior_year=some(lambda c: c.agreement.growth is not None and c.baseline_fixed is None),
            cap_period=some(lambda c: c.cap_period is not None),
            cap_term=some(lambda c: c.cap_term is not None),
            guarantee=some(lambda c: c.guarantee is not None),
            carry_forward=some(lambda c: c.carry_forward),
            projection=as_of is not None and some(lambda c: c.expected),
            dense=some(lambda c: c.dense),
        )


def _sums_by_beneficiary(connection: duckdb.DuckDBPyConnection, features: _Features) -> None:
    """``customer_period`` (per customer) and ``pool_period`` (per beneficiary) sums P, T, G, B.

    ``v1`` is the set's own measure; an earning set whose tier measure differs also has ``v2``.
    """
    tier_from_earning = "CASE WHEN l.second_measure IS NULL THEN f.v1 ELSE f.v2 END"
    if features.several_sets or features.pooled:
        connection.execute(
            f"""CREATE TEMP TABLE customer_period AS
            SELECT l.agreement_no,
                   CASE WHEN a.pooled THEN ak.counterparty_no ELSE f.cno END AS bno,
                   f.cno, f.period_index,
                   sum(CASE WHEN l.role = {Role.EARNING} THEN f.v1 ELSE 0 END) AS p,
                   sum(CASE WHEN l.role = {Role.TARGET} THEN f.v1
                            WHEN l.role = {Role.EARNING} AND NOT a.separate_target
                            THEN {tier_from_earning} ELSE 0 END) AS t,
                   sum(CASE WHEN l.role = {Role.GATE} THEN f.v1 ELSE 0 END) AS g,
                   sum(CASE WHEN l.role = {Role.BASELINE} THEN f.v1 ELSE 0 END) AS b,
                   sum(CASE WHEN l.role = {Role.EARNING} THEN f.lines ELSE 0 END) AS lines,
                   bool_or(l.role <> {Role.BASELINE}) AS counting
            FROM fact_sums f
            JOIN line_sets l USING (set_no)
            JOIN agreement_params a USING (agreement_no)
            JOIN agreement_keys ak USING (agreement_no)
            GROUP BY ALL"""
        )
    else:
        # One earning set per agreement and no pooling: a projection, no regrouping.
        connection.execute(
            f"""CREATE TEMP VIEW customer_period AS
            SELECT l.agreement_no, f.cno AS bno, f.cno, f.period_index, f.v1 AS p,
                   {tier_from_earning} AS t, 0::BIGINT AS g, 0::BIGINT AS b, f.lines,
                   TRUE AS counting
            FROM fact_sums f JOIN line_sets l USING (set_no)"""
        )
    if features.pooled:
        connection.execute(
            f"""CREATE TEMP TABLE pool_period AS
            SELECT {_RESULT_KEY} AS key,
                   agreement_no, bno,
                   period_index, sum(p) AS p, sum(t) AS t, sum(g) AS g, sum(b) AS b,
                   sum(lines) AS lines, bool_or(counting) AS counting
            FROM customer_period GROUP BY agreement_no, bno, period_index"""
        )
    else:
        connection.execute(
            f"""CREATE TEMP VIEW pool_period AS
            SELECT {_RESULT_KEY} AS key,
                   agreement_no, bno,
                   period_index, p, t, g, b, lines, counting
            FROM customer_period"""
        )


def _rate_and_settle(
    connection: duckdb.DuckDBPyConnection, features: _Features, as_of: dt.date | None
) -> None:
    connection.execute(
        """CREATE TEMP TABLE agreement_keys AS
        SELECT a.agreement_no, n.no AS counterparty_no
        FROM agreement_params a LEFT JOIN customer_names n ON n.id_text = a.counterparty"""
    )
    _sums_by_beneficiary(connection, features)
    if features.several_sets:
        connection.execute(
            """CREATE TEMP TABLE result_keys AS
            SELECT key, any_value(agreement_no) AS agreement_no, any_value(bno) AS bno,
                   sum(b) AS b_total
            FROM pool_period GROUP BY key HAVING bool_or(counting)"""
        )
        key_filter = "SEMI JOIN result_keys k USING (key)"
    else:
        # Every key counts; the distinct list is only needed for the rows added below.
        connection.execute(
            """CREATE TEMP VIEW result_keys AS
            SELECT DISTINCT key, agreement_no, bno, 0::BIGINT AS b_total FROM pool_period"""
        )
        key_filter = ""
    # Rows: the periods with lines; every started period where a quiet period can still pay
    # (dense agreements); the as-of period of expected-mode agreements (it is projected).
    current = (
        f"pr.period_start <= DATE '{as_of}' AND DATE '{as_of}' < pr.period_end"
        if features.projection
        else "FALSE"
    )
    active = f"""
        SELECT pp.key, pp.agreement_no, pp.period_index, pp.p AS p_period, pp.t AS t_period,
               pp.g AS g_period, pp.b AS b_period, pp.lines
        FROM pool_period pp
        {key_filter}
        JOIN periods pr USING (agreement_no, period_index)
        JOIN agreement_params a USING (agreement_no)
        WHERE NOT a.dense"""
    quiet = f"""
        SELECT k.key, k.agreement_no, pr.period_index, coalesce(pp.p, 0), coalesce(pp.t, 0),
               coalesce(pp.g, 0), coalesce(pp.b, 0), coalesce(pp.lines, 0)
        FROM result_keys k
        JOIN periods pr USING (agreement_no)
        JOIN agreement_params a USING (agreement_no)
        LEFT JOIN pool_period pp USING (key, period_index)
        WHERE a.dense OR (a.expected AND {current} AND pp.key IS NULL)"""
    needs_quiet = features.dense or features.projection
    connection.execute(
        f"CREATE TEMP VIEW grid AS {active}" + (f" UNION ALL {quiet}" if needs_quiet else "")
    )
    if features.scope_term:
        window = "OVER w"
        window_clause = """WINDOW w AS (PARTITION BY g.key ORDER BY g.period_index
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"""

        def windowed(column: str) -> str:
            return f"CASE WHEN a.scope_term THEN sum({column}) {window} ELSE {column} END"
    else:
        window_clause = ""

        def windowed(column: str) -> str:
            return column

    connection.execute(
        f"""CREATE TEMP VIEW windows AS
        SELECT g.key, g.agreement_no, g.period_index, g.p_period, g.lines,
          {windowed("p_period")} AS p, {windowed("t_period")} AS t, {windowed("g_period")} AS g,
          CASE WHEN a.baseline_fixed IS NOT NULL THEN a.baseline_fixed
               WHEN NOT a.prior_year THEN 0
               ELSE {windowed("b_period")} END AS b
        FROM grid g JOIN agreement_params a USING (agreement_no)
        {window_clause}"""
    )
    connection.execute("CREATE TEMP VIEW rating_input AS SELECT * FROM windows")
    # Read once (by the settling window pass) unless pro-rata splits read it again.
    materialised = "TABLE" if features.pro_rata else "VIEW"
    connection.execute(
        f"CREATE TEMP {materialised} rated AS "
        + _rating_sql("rating_input", projected=False, carry=_WINDOW_COLUMNS)
    )
    if features.projection:
        day = f"DATE '{as_of}'"
        # Expected mode: the row of the period containing the as-of date is projected.
        connection.execute(
            f"""CREATE TEMP TABLE projection_input AS
            SELECT * FROM (
              SELECT w.key, w.agreement_no, w.period_index, w.t, w.p, w.g,
                     CASE WHEN a.baseline_fixed IS NOT NULL THEN a.baseline_fixed
                          WHEN NOT a.prior_year THEN 0
                          WHEN a.scope_term THEN k.b_total ELSE w.b END AS b,
                     CASE WHEN a.scope_term THEN a.term_end - a.term_start
                          ELSE pr.period_end - pr.period_start END AS h,
                     {day} + 1 - CASE WHEN a.scope_term THEN a.term_start
                                      ELSE pr.period_start END AS e
              FROM windows w JOIN agreement_params a USING (agreement_no)
              JOIN periods pr USING (agreement_no, period_index)
              JOIN result_keys k USING (key)
              WHERE a.expected AND pr.period_start <= {day} AND {day} < pr.period_end)
            WHERE e < h"""
        )
        connection.execute(
            f"CREATE TEMP TABLE projected AS {_rating_sql('projection_input', projected=True)}"
        )
    _settle(connection, features)


def _settle(connection: duckdb.DuckDBPyConnection, features: _Features) -> None:
    """Period amounts in minor units: term-scope deltas, per-period cap, guarantee, term cap.

    ``settled`` gets, per key and period, ``f`` (the period's rebate), ``f_cum`` (its running
    total), ``accrual_cum`` and ``accrual_step``. Running totals and lags are window functions
    over (key, period); steps no agreement of the run uses are left out, and without caps and
    guarantees it is a single window pass: for scope term the running total telescopes to ``R``.
    """
    k = "OVER (PARTITION BY key ORDER BY period_index)"
    running = (
        "OVER (PARTITION BY key ORDER BY period_index "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    )
    # The rating's columns ride along through the window pass: cheaper than joining them back.
    base = "r.*"
    projection = features.projection
    projected = "pj.amount" if projection else "NULL::BIGINT"
    join_projected = "LEFT JOIN projected pj USING (key, period_index)" if projection else ""
    previous_r = f"coalesce(lag(r.amount) {k}, 0)" if features.scope_term else "0"

    if not (features.cap_period or features.guarantee or features.cap_term):
        # f = e; the running total is R itself for scope term, the sum of R for scope period.
        # With a projection the as-of row's R is replaced: the accrual total moves by Rp - R.
        connection.execute(
            f"""CREATE TEMP VIEW settled AS
            SELECT *,
                   coalesce(f_cum + projected - amount, f_cum) AS accrual_cum,
                   coalesce(f_cum + projected - amount, f_cum) - (f_cum - f) AS accrual_step
            FROM (
              SELECT {base}, {projected} AS projected,
                CASE WHEN a.scope_term THEN r.amount - {previous_r} ELSE r.amount END AS f,
                CASE WHEN a.scope_term THEN r.amount ELSE sum(r.amount) {running} END AS f_cum
              FROM rated r JOIN agreement_params a USING (agreement_no) {join_projected})"""
        )
        return

    earned_projected = (
        f"CASE WHEN a.scope_term THEN pj.amount - {previous_r} ELSE pj.amount END"
        if projection
        else "NULL::BIGINT"
    )
    connection.execute(
        f"""CREATE TEMP VIEW earned AS
        SELECT {base},
               CASE WHEN a.scope_term THEN r.amount - {previous_r} ELSE r.amount END AS e,
               {earned_projected} AS e_projected
        FROM rated r JOIN agreement_params a USING (agreement_no) {join_projected}"""
    )

    def capped(column: str, cap: str, used: bool) -> str:
        if not used:
            return column
        # least() skips NULLs in DuckDB: keep a missing projection NULL explicitly
        return (
            f"CASE WHEN a.{cap} IS NULL OR {column} IS NULL THEN {column} "
            f"ELSE least({column}, a.{cap}) END"
        )

    def cap_period(column: str) -> str:
        return capped(column, "cap_period", features.cap_period)

    def cap_term(column: str) -> str:
        return capped(column, "cap_term", features.cap_term)

    def guaranteed(column: str) -> str:
        if not features.guarantee:
            return column
        return (
            f"CASE WHEN a.guarantee IS NULL THEN {column} ELSE greatest({column}, a.guarantee) END"
        )

    # g_cum: the running total after the guarantee; with carry-forward max(sum c, i x amount).
    # g_previous is the previous period's g_cum, derived from this row's sums so that no second
    # window pass is needed (carry-forward agreements have a row for every period).
    if features.carry_forward:
        g_cum = (
            "CASE WHEN a.carry_forward THEN greatest(c_cum, x.period_index * a.guarantee) "
            "ELSE g_plain_cum END"
        )
        g_previous = (
            "CASE WHEN a.carry_forward "
            "THEN greatest(c_cum - c, (x.period_index - 1) * a.guarantee) "
            f"ELSE g_plain_cum - {guaranteed('c')} END"
        )
        carry_projected = (
            "WHEN a.carry_forward "
            "THEN greatest(c_cum - c + c_projected, x.period_index * a.guarantee)"
        )
    else:
        g_cum = "g_plain_cum"
        g_previous = f"g_plain_cum - {guaranteed('c')}"
        carry_projected = ""
    connection.execute(
        f"""CREATE TEMP VIEW guaranteed AS
        SELECT x.*, {g_cum} AS g_cum,
          {g_previous} AS g_previous,
          CASE WHEN c_projected IS NULL THEN NULL
               {carry_projected}
               ELSE g_plain_cum - {guaranteed("c")} + {guaranteed("c_projected")}
          END AS g_cum_projected
        FROM (
          SELECT e.*,
                 sum(c) {running} AS c_cum, sum({guaranteed("c")}) {running} AS g_plain_cum
          FROM (SELECT e.*, {cap_period("e.e")} AS c, {cap_period("e.e_projected")} AS c_projected
                FROM earned e JOIN agreement_params a USING (agreement_no)) e
          JOIN agreement_params a USING (agreement_no)
        ) x JOIN agreement_params a USING (agreement_no)"""
    )
    connection.execute(
        f"""CREATE TEMP VIEW settled AS
        SELECT *, f_cum - f_previous AS f,
          coalesce(f_cum_projected, f_cum) AS accrual_cum,
          coalesce(f_cum_projected, f_cum) - f_previous AS accrual_step
        FROM (SELECT g.*, {cap_term("g.g_cum")} AS f_cum,
                     {cap_term("g.g_previous")} AS f_previous,
                     {cap_term("g.g_cum_projected")} AS f_cum_projected
              FROM guaranteed g JOIN agreement_params a USING (agreement_no))"""
    )


def _split_pro_rata(connection: duckdb.DuckDBPyConnection) -> None:
    """Member rows of pro-rata agreements: largest-remainder shares of each period's amounts."""
    connection.execute(
        """CREATE TEMP TABLE member_rows AS
        WITH pro_rata_keys AS (
            SELECT k.key, k.agreement_no, k.bno
            FROM result_keys k JOIN agreement_params a USING (agreement_no) WHERE a.pro_rata
        ),
        members AS (
            SELECT DISTINCT k.key, cp.cno
            FROM pro_rata_keys k JOIN customer_period cp USING (agreement_no, bno)
            WHERE cp.counting
            UNION
            SELECT key, bno AS cno FROM pro_rata_keys
        ),
        weighted AS (
            SELECT s.key, s.period_index, m.cno, n.id_text AS customer, s.f, s.accrual_step,
                   coalesce(cp.p, 0) AS own_p, coalesce(cp.lines, 0) AS own_lines,
                   greatest(coalesce(cp.p, 0), 0) AS weight,
                   m.cno = k.bno AS is_counterparty
            FROM settled s
            JOIN pro_rata_keys k USING (key)
            JOIN members m USING (key)
            JOIN customer_names n ON n.no = m.cno
            LEFT JOIN customer_period cp
              ON cp.agreement_no = k.agreement_no AND cp.bno = k.bno
             AND cp.period_index = s.period_index AND cp.cno = m.cno
        ),
        totals AS (
            SELECT *, sum(weight) OVER (PARTITION BY key, period_index) AS total_weight
            FROM weighted
        ),
        floors AS (
            SELECT *,
              CASE WHEN total_weight > 0 THEN abs(f) * weight // total_weight END AS f_base,
              CASE WHEN total_weight > 0 THEN abs(f) * weight % total_weight END AS f_rem,
              CASE WHEN total_weight > 0 THEN abs(accrual_step) * weight // total_weight END
                AS a_base,
              CASE WHEN total_weight > 0 THEN abs(accrual_step) * weight % total_weight END
                AS a_rem
            FROM totals
        ),
        ranked AS (
            SELECT *,
              abs(f) - sum(f_base) OVER (PARTITION BY key, period_index) AS f_left,
              abs(accrual_step) - sum(a_base) OVER (PARTITION BY key, period_index) AS a_left,
              row_number() OVER (PARTITION BY key, period_index ORDER BY f_rem DESC, customer)
                AS f_rank,
              row_number() OVER (PARTITION BY key, period_index ORDER BY a_rem DESC, customer)
                AS a_rank
            FROM floors
        )
        SELECT key, period_index, cno, customer, own_p, own_lines,
          CAST(CASE WHEN total_weight = 0 THEN CASE WHEN is_counterparty THEN f ELSE 0 END
               ELSE sign(f) * (f_base + CASE WHEN f_rank <= f_left THEN 1 ELSE 0 END) END
            AS BIGINT) AS share,
          CAST(CASE WHEN total_weight = 0
               THEN CASE WHEN is_counterparty THEN accrual_step ELSE 0 END
               ELSE sign(accrual_step) * (a_base + CASE WHEN a_rank <= a_left THEN 1 ELSE 0 END)
          END AS BIGINT) AS accrual_share
        FROM ranked"""
    )


# Integer columns of the result and the decimal type their unscaled value becomes.
_SCALED_COLUMNS = {
    "basis": MEASURE_TYPE,
    "window_basis": MEASURE_TYPE,
    "tier_basis": MEASURE_TYPE,
    "baseline": MEASURE_TYPE,
    "gate_basis": MEASURE_TYPE,
    "rate": RATE_TYPE,
    "window_rebate": MONEY_TYPE,
    "rebate": MONEY_TYPE,
    "cumulative_rebate": MONEY_TYPE,
    "accrual": MONEY_TYPE,
}


def _result_sql(*, pro_rata: bool) -> str:
    """The result rows with integers only: numbers for the agreement, beneficiary and period;
    measures and money unscaled (10**-4 units, rates 10**-6). ``_to_result_table`` makes the
    text, dates and decimals without arithmetic."""
    # DECIMAL(38, 0) holds the unscaled value in the 128 bits Arrow's decimals use; DuckDB casts
    # in parallel and cheaper than Arrow would.
    money = "CAST(({x}) * a.money_to_measure AS DECIMAL(38, 0))".format
    unscaled = "CAST({x} AS DECIMAL(38, 0))".format
    common = f"""
        {{sort_key}} AS sort_key, s.agreement_no, {{beneficiary}} AS beneficiary_no,
        s.period_index, {{lines}} AS lines,
        {unscaled(x="{basis}")} AS basis, {unscaled(x="s.p")} AS window_basis,
        {unscaled(x="s.t")} AS tier_basis,
        CASE WHEN a.growth_mode IS NOT NULL THEN {unscaled(x="s.b")} END AS baseline,
        CASE WHEN a.has_gate THEN {unscaled(x="s.g")} END AS gate_basis,
        s.tier, CASE WHEN s.tier > 0 THEN {unscaled(x="s.display_rate")} END AS rate,
        {money(x="s.amount")} AS window_rebate"""
    whole = common.format(
        beneficiary=f"CAST((s.key >> {_PERIOD_BITS}) & {(1 << _CUSTOMER_BITS) - 1} AS INTEGER)",
        lines="s.lines",
        basis="s.p_period",
        sort_key="s.key | s.period_index",
    )
    member = common.format(
        beneficiary="m.cno",
        lines="m.own_lines",
        basis="m.own_p",
        sort_key=f"(CAST(s.agreement_no AS BIGINT) << {_SET_SHIFT})"
        f" | (CAST(m.cno AS BIGINT) << {_PERIOD_BITS}) | s.period_index",
    )
    joins = "JOIN agreement_params a ON a.agreement_no = s.agreement_no"
    whole_rows = f"""
        SELECT {whole},
          {money(x="s.f")} AS rebate, {money(x="s.f_cum")} AS cumulative_rebate,
          {money(x="s.accrual_cum")} AS accrual
        FROM settled s {joins}
        WHERE NOT a.pro_rata"""
    if not pro_rata:
        return whole_rows
    return f"""{whole_rows}
        UNION ALL
        SELECT {member},
          {money(x="m.share")} AS rebate,
          {money(x="sum(m.share) OVER k")} AS cumulative_rebate,
          {money(x="sum(m.accrual_share) OVER k")} AS accrual
        FROM member_rows m
        JOIN settled s USING (key, period_index) {joins}
        WINDOW k AS (PARTITION BY m.key, m.cno ORDER BY m.period_index
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"""


def _to_result_table(
    connection: duckdb.DuckDBPyConnection, table: pa.Table, compiled: list[CompiledAgreement]
) -> pa.Table:
    """Integers -> the result schema, column by column in Arrow (no per-row Python).

    Text and dates are taken from small lookup arrays by number. The unscaled decimal(38, 0)
    values become the column's decimals by a view of the same 128 bits with the column's scale:
    exact, no arithmetic.
    """
    agreement_no = table.column("agreement_no")
    names = connection.sql("SELECT id_text FROM customer_names ORDER BY no").to_arrow_table()
    first_no = connection.execute("SELECT coalesce(min(no), 1) FROM customer_names").fetchone()
    beneficiary_index = pc.subtract(table.column("beneficiary_no"), first_no[0] if first_no else 1)
    offsets: list[int] = []
    starts: list[dt.date] = []
    ends: list[dt.date] = []
    for agreement in compiled:
        offsets.append(len(starts) - 1)  # period_index is 1-based
        starts.extend(period.start for period in agreement.periods)
        ends.extend(period.end for period in agreement.periods)
    period_index = pc.add(
        pc.take(pa.array(offsets, pa.int64()), agreement_no),
        pc.cast(table.column("period_index"), pa.int64()),
    )

    def by_agreement(values: list[object], arrow_type: pa.DataType) -> pa.ChunkedArray:
        return pc.take(pa.array(values, arrow_type), agreement_no)

    columns: dict[str, pa.ChunkedArray | pa.Array] = {
        "agreement_id": by_agreement([c.agreement.id for c in compiled], pa.string()),
        "version": by_agreement([c.agreement.version for c in compiled], pa.int32()),
        "beneficiary_id": pc.take(names.column("id_text"), beneficiary_index),
        "period_index": table.column("period_index"),
        "period_start": pc.take(pa.array(starts, pa.date32()), period_index),
        "period_end": pc.take(pa.array(ends, pa.date32()), period_index),
        "currency": by_agreement([c.agreement.currency for c in compiled], pa.string()),
    }
    for field in RESULT_SCHEMA:
        if field.name in columns:
            column = columns[field.name]
        elif field.name in _SCALED_COLUMNS:
            unscaled = table.column(field.name)  # decimal(38, 0) from the SQL
            column = pa.chunked_array(
                [chunk.view(field.type) for chunk in unscaled.chunks], type=field.type
            )
        else:
            column = table.column(field.name)
        columns[field.name] = column if column.type == field.type else pc.cast(column, field.type)
    return pa.Table.from_arrays([columns[f.name] for f in RESULT_SCHEMA], schema=RESULT_SCHEMA)


# ---------------------------------------------------------------------------------------------
# Entry points


def _prepare(
    connection: duckdb.DuckDBPyConnection,
    agreements: Sequence[Agreement],
    *,
    sales: SalesInput,
    customers: pa.Table | None,
    products: pa.Table | None,
    as_of: dt.date | None,
    ordered: bool = True,
) -> tuple[list[CompiledAgreement], list[LineSetSpec], list[str]]:
    by_key = sorted(agreements, key=lambda agreement: (agreement.id, agreement.version))
    compiled = [compile_agreement(number, a) for number, a in enumerate(by_key)]
    specs: list[LineSetSpec] = []
    for agreement in compiled:
        specs.extend(compile_sets(agreement, len(specs) + 1, as_of))
        if len(agreement.periods) >= 1 << _PERIOD_BITS:
            raise CalculationError(
                f"agreement {agreement.agreement.id} has {len(agreement.periods)} periods; "
                f"at most {(1 << _PERIOD_BITS) - 1} are supported"
            )
    if len(specs) >= 1 << (63 - _SET_SHIFT):
        raise CalculationError(f"too many agreements in one run ({len(compiled)})")
    sales_columns = _register_sales(connection, sales)
    for kind, table in (("customer", customers), ("product", products)):
        _build_dimension(
            connection,
            kind=kind,
            table=table,
            needed=set().union(*(_filter_columns(c, kind) for c in compiled)),
            referenced_ids=_referenced_ids(specs, kind),
            compiled=compiled,
        )
    _classify(
        connection,
        "customer",
        [_SetFilter(s.set_no, s.customers.include, s.customers.exclude, s.pool) for s in specs],
        sorted(set().union(*(_filter_columns(c, "customer") for c in compiled))),
        named_ids=_referenced_ids(specs, "customer"),
        ordered=ordered,
        eras=_in_eras(customers),
    )
    _classify(
        connection,
        "product",
        [_SetFilter(s.set_no, s.products.include, s.products.exclude, None) for s in specs],
        sorted(set().union(*(_filter_columns(c, "product") for c in compiled))),
        named_ids=_referenced_ids(specs, "product"),
        ordered=ordered,
    )
    _load_small_tables(connection, compiled, specs, as_of)
    return compiled, specs, sales_columns


def calculate(
    agreements: Sequence[Agreement],
    *,
    sales: SalesInput,
    customers: pa.Table | None = None,
    products: pa.Table | None = None,
    as_of: dt.date | None = None,
    ordered: bool = True,
    unstated_currency: str | None = None,
) -> pa.Table:
    """Results per agreement x beneficiary x period, as an Arrow table in RESULT_SCHEMA.

    ``sales`` is an Arrow table in ``SALES_SCHEMA`` shape or a list of Parquet files. Rows come
    sorted by agreement, version, beneficiary and period unless ``ordered`` is false (a caller
    that sorts or aggregates anyway saves the sort). ``unstated_currency``: the currency of a
    line that states none (the store's default); without it such a line counts in every
    currency.
    """
    if not agreements:
        return RESULT_SCHEMA.empty_table()
    with _connection(sales) as connection:
        try:
            compiled, specs, sales_columns = _prepare(
                connection,
                agreements,
                sales=sales,
                customers=customers,
                products=products,
                as_of=as_of,
                ordered=ordered,
            )
            _aggregate_facts(
                connection, specs, sales_columns, unstated_currency, eras=_in_eras(customers)
            )
            _install_macros(connection)
            features = _Features.of(compiled, as_of)
            _rate_and_settle(connection, features, as_of)
            if features.pro_rata:
                _split_pro_rata(connection)
            query = _result_sql(pro_rata=features.pro_rata)
            if ordered:
                # Agreements are numbered in (id, version) order and customers in id order, so
                # one packed BIGINT sorts by agreement, version, beneficiary and period.
                query += " ORDER BY sort_key"
            integers = connection.sql(query).to_arrow_table()
            table = _to_result_table(connection, integers, compiled)
        except duckdb.OutOfRangeException as error:
            raise CalculationError(
                f"a value is out of range for exact arithmetic: {error}"
            ) from None
        except duckdb.ConversionException as error:
            raise InputError(f"a value has the wrong type: {error}", file="sales") from None
    return table


_ROLE_NAMES = {
    Role.EARNING: "earning",
    Role.TARGET: "target",
    Role.GATE: "gate",
    Role.BASELINE: "baseline",
}


def counted_lines(
    agreement: Agreement,
    *,
    beneficiary_id: str,
    period_index: int,
    sales: SalesInput,
    customers: pa.Table | None = None,
    products: pa.Table | None = None,
    as_of: dt.date | None = None,
    unstated_currency: str | None = None,
) -> pa.Table:
    """The sales lines behind one result row, for its explanation.

    The lines of the row's window (the period, or the term up to it) and of the beneficiary's
    pool, in the sales columns plus ``role`` (earning, target, gate, baseline) and
    ``period_index``. The same compiled map as ``calculate`` selects them.
    """
    with _connection(sales) as connection:
        try:
            compiled, specs, sales_columns = _prepare(
                connection,
                [agreement],
                sales=sales,
                customers=customers,
                products=products,
                as_of=as_of,
            )
            maps, product_classes = _build_maps(
                connection,
                specs,
                sales_columns,
                unstated_currency=unstated_currency,
                eras=_in_eras(customers),
                exact_dates=True,
            )
            pool = agreement.pool if agreement.pool is not None else (beneficiary_id,)
            scope_term = compiled[0].scope_term
            window = f"m.period_index {'<=' if scope_term else '='} {int(period_index)}"
            customers_in = _in_list("n.id_text", pool)
            selects = [
                f"""SELECT s.*, m.role, m.period_index
                FROM sales s
                JOIN customer_class c ON s.customer_id = c.id
                JOIN customer_names n ON n.no = c.no
                JOIN product_class p ON s.product_id = p.id
                JOIN {probe.map_table} m
                  ON m.map_key = ((CAST(c.cls AS BIGINT) * {product_classes} + p.cls)
                                  << {_MONTH_BITS})
                                 + year(s.{probe.event_column}) * 12 + month(s.{probe.event_column})
                WHERE {" AND ".join([*probe.conditions, window, customers_in])}"""
                for probe in maps
            ]
            if not selects:
                return pa.table({})
            table = connection.sql(
                " UNION ALL ".join(selects) + " ORDER BY period_index, role"
            ).to_arrow_table()
        except duckdb.Error as error:
            raise CalculationError(f"could not select the lines: {error}") from None
    roles = pa.array([_ROLE_NAMES[Role(r)] for r in table.column("role").to_pylist()])
    return table.set_column(table.schema.get_field_index("role"), "role", roles)
