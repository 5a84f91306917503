"""Bulk inserts from Arrow tables, in the session's own transaction.

An accrual run at scale writes hundreds of thousands of result rows and journal lines. Going
through ORM objects or per-row parameter processing costs far more than the database does, so
these paths hand the database what it stores natively:
- PostgreSQL: ``COPY ... FROM STDIN`` in CSV written by Arrow (decimals keep every digit as text);
- SQLite: multi-row ``INSERT``s through one ``executemany``, with amounts already as scaled
  integers (``Amount``, ADR 0004) as SQLAlchemy would have stored them.
  A value a part's rows all share (an entry's id, its accounts) is bound once per statement.
  A load larger than what the table already holds builds the table's indexes afterwards
  instead of row by row (``_sqlite_load``).

The SQLite path took 2.85 s for the 550,025 journal lines of a first full accrual run at SF1 as
one single-row ``executemany`` over zipped tuples, and 1.3 s as multi-row statements with the
indexes built afterwards; binding shared values once, on the journal's narrower lines, took
another third off the full run (docs/benchmarks.md).
Column names of the Arrow tables must be columns of the target table; the others take defaults.
"""

from __future__ import annotations

import gc
import io
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from sqlalchemy import Connection, Table
from sqlalchemy.orm import Session

from fanli.db.base import Amount, Base
from fanli.kit.money import FACT_SCALE

_SCALE = pa.scalar(Decimal(10**FACT_SCALE), pa.decimal128(FACT_SCALE + 1, 0))


def _sqlite_values(table: Table, name: str, values: pa.ChunkedArray) -> list[Any]:
    """The column's values as SQLite stores them, as a Python list."""
    column = table.columns[name]
    if isinstance(column.type, Amount):
        # exact: an Amount has at most FACT_SCALE places, so the scaled value is whole
        scaled = pc.multiply(pc.cast(values, pa.decimal128(22, FACT_SCALE)), _SCALE)
        return cast(
            list[Any], pc.cast(pc.cast(scaled, pa.decimal128(28, 0)), pa.int64()).to_pylist()
        )
    if pa.types.is_decimal(values.type):
        raise TypeError(f"{table.name}.{name}: a decimal into a column that is not an Amount")
    if not (pa.types.is_integer(values.type) or pa.types.is_string(values.type)):
        # Dates and times would need SQLAlchemy's own text forms: no bulk load has them.
        raise TypeError(f"{table.name}.{name}: {values.type} is not loaded in bulk")
    if pa.types.is_string(values.type):
        # Text with few distinct values (accounts) is converted once per value and the rows
        # share the Python strings: a Python string per row costs more.
        encoded = pc.dictionary_encode(values.combine_chunks(), null_encoding="encode")
        if len(encoded.dictionary) * _SHARED_FROM <= len(encoded):
            distinct = encoded.dictionary.to_pylist()
            return list(map(distinct.__getitem__, encoded.indices.to_pylist()))
    return cast(list[Any], values.to_pylist())


# Text columns with at most one distinct value per this many rows share their Python strings.
_SHARED_FROM = 16


def insert_arrow(session: Session, model: type[Base], *parts: pa.Table) -> int:
    """Insert every row of each of ``parts`` (tables with the same columns) into the model's
    table, in that order; the number of rows.

    Give rows that share values in some columns as parts of their own (a journal entry's
    increases and its decreases, say): on SQLite, a column that holds one value throughout a
    part is bound once per statement instead of once per row (``_sqlite_insert``).
    """
    table = cast(Table, model.__table__)
    parts = tuple(part for part in parts if part.num_rows)
    rows: int = sum(part.num_rows for part in parts)
    if rows == 0:
        return 0
    if any(part.column_names != parts[0].column_names for part in parts):
        raise ValueError(f"{table.name}: the parts of one load must have the same columns")
    # All rows or none, also for a caller that catches the failure and carries on: the load
    # has a savepoint of its own.
    with session.begin_nested():
        _load(session.connection(), table, parts)
    return rows


def _load(connection: Connection, table: Table, parts: tuple[pa.Table, ...]) -> None:
    if connection.dialect.name == "postgresql":
        names = parts[0].column_names
        quoted = ", ".join(_quoted(name) for name in names)
        data = pa.concat_tables(parts)
        # Amounts are cast exactly to four places first (Arrow refuses to drop a digit), as
        # Amount does on the other paths: NUMERIC(22, 4) would round silently.
        data = pa.table(
            {
                name: pc.cast(data.column(name), pa.decimal128(22, FACT_SCALE))
                if isinstance(table.columns[name].type, Amount)
                else data.column(name)
                for name in names
            }
        )
        buffer = io.BytesIO()
        pcsv.write_csv(data, buffer, pcsv.WriteOptions(include_header=False))
        driver = connection.connection.driver_connection
        assert driver is not None
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY {_quoted(table.name)} ({quoted}) FROM STDIN (FORMAT csv)") as copy,
        ):
            copy.write(buffer.getvalue())
        return
    _sqlite_load(connection, table, parts)


def _sqlite_load(connection: Connection, table: Table, parts: tuple[pa.Table, ...]) -> None:
    """Insert the parts one after the other (``_sqlite_insert``).

    A load larger than what the table already holds also rebuilds the table's plain indexes
    afterwards. SQLite maintains an index row by row, at random places in its B-tree; building
    it once from the finished table is a sort: 0.35 s for both journal indexes at SF1 against
    about 1 s of row-by-row upkeep. Once the table is larger than the load, a rebuild would read
    more than it saves, so later runs insert as usual.
    - Only indexes made by ``CREATE INDEX`` without ``UNIQUE`` are rebuilt: a unique one
      enforces a rule during the load and may be what another table's foreign key points at.
    - They are created again from their own stored definitions, so the schema ends as it began,
      and analysed again if the database keeps planner statistics (``DROP INDEX`` drops them).
    - DDL is transactional in SQLite and the load runs in a savepoint (``insert_arrow``): a
      failed load leaves the indexes as they were. Readers in WAL mode keep using them on their
      snapshot meanwhile.
    - A load of that size works in a page cache of ``LOAD_CACHE_KIB`` (``_page_cache``), the
      connection's own setting back as it was afterwards.
    """
    rows = sum(part.num_rows for part in parts)
    large = rows >= REBUILD_INDEXES_FROM
    with _page_cache(connection, LOAD_CACHE_KIB if large else 0):
        rebuilt = _drop_plain_indexes(connection, table.name, rows) if large else []
        with _collector_paused():
            for part in parts:
                _sqlite_insert(connection, table, part)
        for sql in rebuilt:
            connection.exec_driver_sql(sql)
        if (
            rebuilt
            and connection.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'"
            ).first()
        ):
            connection.exec_driver_sql(f"ANALYZE {_quoted(table.name)}")


# The page cache a large load works in, in KiB. SQLite's default of 2 MB makes the load write
# pages out before its commit and sort an index it rebuilds in temporary files; with 128 MB the
# 550,025 lines of a full run at SF1 went in 0.64-0.73 s instead of 0.76-0.86 s.
LOAD_CACHE_KIB = 128 * 1024


@contextmanager
def _page_cache(connection: Connection, kib: int) -> Iterator[None]:
    """The connection's page cache at least ``kib`` KiB while the block runs, then as it was.

    The setting is the connection's own (pooled connections keep theirs), so it is put back
    whatever happens; the pages a smaller cache cannot hold are written at the commit, as
    they would have been."""
    if not kib:
        yield
        return
    before = int(connection.exec_driver_sql("PRAGMA cache_size").scalar() or 0)
    # positive: a number of pages; negative: a number of KiB
    held = -before if before < 0 else before * _page_size(connection) // 1024
    if kib <= held:
        yield
        return
    connection.exec_driver_sql(f"PRAGMA cache_size = {-kib}")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size = {before}")


def _page_size(connection: Connection) -> int:
    return int(connection.exec_driver_sql("PRAGMA page_size").scalar() or 0)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while millions of row values are built.

    Each burst of new containers starts a collection that walks every container alive, the
    growing row lists included: about 0.2 s of a 550,025-line insert. These objects hold only
    numbers and strings, so they can form no cycle; the collector resumes as it was after.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# Below this many rows a load never touches the indexes: the rebuild is not worth its DDL.
REBUILD_INDEXES_FROM = 50_000
# SQLite before 3.32 binds at most 999 parameters per statement; later ones allow 32,766.
_PARAMETERS_PER_STATEMENT = 999


def _holds_one_value(values: pa.ChunkedArray) -> bool:
    """Whether every value of the column is the same one (none of them null)."""
    if values.null_count or len(values) < 2:
        return False
    least, most = pc.min_max(values).values()
    return bool(least == most)


def _sqlite_insert(connection: Connection, table: Table, data: pa.Table) -> None:
    """Insert the rows of ``data``.

    The values are laid out flat by slice assignment and go in as many rows per statement as
    the parameter limit allows (a multi-row ``VALUES``): no tuple per row, and one statement
    step per hundred rows or so. A column with one value throughout (an entry's id, its
    accounts) is bound once per statement as a numbered parameter that every row names, not
    once per row: three of a journal line's ten values, about a quarter of the binding.
    """
    rows = data.num_rows
    shared = (
        [name for name in data.column_names if _holds_one_value(data.column(name))]
        if rows > 1
        else []
    )
    if len(shared) == data.num_columns:  # at least one column per row keeps the rows apart
        shared = shared[:-1]
    varying = [name for name in data.column_names if name not in shared]
    constants = tuple(
        _sqlite_values(table, name, data.column(name).slice(0, 1))[0] for name in shared
    )
    columns = [_sqlite_values(table, name, data.column(name)) for name in varying]
    width = len(columns)
    flat: list[Any] = [None] * (rows * width)
    for position, values in enumerate(columns):
        flat[position::width] = values
    per_statement = max(1, (_PARAMETERS_PER_STATEMENT - len(shared)) // width)
    step = per_statement * width
    whole = rows // per_statement
    into = (
        f"INSERT INTO {_quoted(table.name)} ({', '.join(map(_quoted, shared + varying))}) VALUES "
    )
    first = len(shared) + 1

    def statement(count: int) -> str:
        """``count`` rows: the shared values' parameters ?1..?n in each, then the row's own."""
        head = [f"?{n}" for n in range(1, first)]
        return into + ", ".join(
            "(" + ", ".join(head + [f"?{first + row * width + j}" for j in range(width)]) + ")"
            for row in range(count)
        )

    if whole:
        connection.exec_driver_sql(
            statement(per_statement),
            [constants + tuple(flat[i : i + step]) for i in range(0, whole * step, step)],
        )
    if rows > whole * per_statement:
        connection.exec_driver_sql(
            statement(rows - whole * per_statement), constants + tuple(flat[whole * step :])
        )


def _drop_plain_indexes(connection: Connection, table: str, rows: int) -> list[str]:
    """If ``rows`` outnumber the table's rows, drop its non-unique ``CREATE INDEX`` indexes;
    the definitions of those dropped, to create them again."""
    # max(rowid) reads one page and never undercounts, so it can only spare a rebuild.
    held = connection.exec_driver_sql(f"SELECT max(rowid) FROM {_quoted(table)}").scalar() or 0
    if rows <= held:
        return []
    plain = sorted(
        name
        for _seq, name, unique, origin, *_partial in connection.exec_driver_sql(
            f"PRAGMA index_list({_quoted(table)})"
        )
        if origin == "c" and not unique
    )
    definitions = []
    for name in plain:
        sql = connection.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
        ).scalar()
        connection.exec_driver_sql(f"DROP INDEX {_quoted(name)}")
        definitions.append(str(sql))
    return definitions
