"""Bulk inserts from Arrow tables, in the session's own transaction.

An accrual run at scale writes hundreds of thousands of result rows and journal lines. Going
through ORM objects or per-row parameter processing costs far more than the database does, so
these paths hand the database what it stores natively:
- PostgreSQL: ``COPY ... FROM STDIN`` in CSV written by Arrow (decimals keep every digit as text);
- SQLite: multi-row ``INSERT``s through one ``executemany``, with amounts already as scaled
  integers (``Amount``, ADR 0004) and dates as ISO text, as SQLAlchemy would have stored them.
  A load larger than what the table already holds builds the table's indexes afterwards
  instead of row by row (``_sqlite_insert``).

The SQLite path took 2.85 s for the 550,025 journal lines of a first full accrual run at SF1 as
one single-row ``executemany`` over zipped tuples, and takes 1.3 s now (docs/benchmarks.md).
Column names of the Arrow table must be columns of the target table; the others take defaults.
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
    if pa.types.is_date(values.type) or pa.types.is_string(values.type):
        # Text with few distinct values (accounts, codes, period dates) is converted once per
        # value and the rows share the Python strings: a Python string per row costs more.
        encoded = pc.dictionary_encode(values.combine_chunks(), null_encoding="encode")
        if len(encoded.dictionary) * _SHARED_FROM <= len(encoded):
            distinct = pc.cast(encoded.dictionary, pa.string()).to_pylist()
            return list(map(distinct.__getitem__, encoded.indices.to_pylist()))
        if pa.types.is_date(values.type):
            values = pc.cast(values, pa.string())
    return cast(list[Any], values.to_pylist())


# Text columns with at most one distinct value per this many rows share their Python strings.
_SHARED_FROM = 16


def insert_arrow(session: Session, model: type[Base], data: pa.Table) -> int:
    """Insert every row of ``data`` into the model's table; the number of rows."""
    table = cast(Table, model.__table__)
    rows: int = data.num_rows
    if rows == 0:
        return 0
    # All rows or none, also for a caller that catches the failure and carries on: the load
    # has a savepoint of its own.
    with session.begin_nested():
        _load(session.connection(), table, data)
    return rows


def _load(connection: Connection, table: Table, data: pa.Table) -> None:
    rows: int = data.num_rows
    names = data.column_names
    quoted = ", ".join(_quoted(name) for name in names)
    if connection.dialect.name == "postgresql":
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
    with _collector_paused():
        columns = [_sqlite_values(table, name, data.column(name)) for name in names]
        _sqlite_insert(connection, table.name, quoted, columns, rows=rows)


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


def _sqlite_insert(
    connection: Connection, table: str, quoted: str, columns: list[list[Any]], *, rows: int
) -> None:
    """Insert the rows whose values ``columns`` hold, one list per column.

    The values are laid out flat by slice assignment and go in 99 rows per statement (a
    multi-row ``VALUES``): no tuple per row, and one statement step per 99 rows.

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
    """
    rebuilt = _drop_plain_indexes(connection, table, rows) if rows >= REBUILD_INDEXES_FROM else []
    width = len(columns)
    flat: list[Any] = [None] * (rows * width)
    for position, values in enumerate(columns):
        flat[position::width] = values
    per_statement = max(1, _PARAMETERS_PER_STATEMENT // width)
    one = "(" + ", ".join("?" * width) + ")"
    step = per_statement * width
    whole = rows // per_statement
    into = f"INSERT INTO {_quoted(table)} ({quoted}) VALUES "
    if whole:
        connection.exec_driver_sql(
            into + ", ".join([one] * per_statement),
            [tuple(flat[i : i + step]) for i in range(0, whole * step, step)],
        )
    if rows > whole * per_statement:
        connection.exec_driver_sql(
            into + ", ".join([one] * (rows - whole * per_statement)), tuple(flat[whole * step :])
        )
    for sql in rebuilt:
        connection.exec_driver_sql(sql)
    if (
        rebuilt
        and connection.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'"
        ).first()
    ):
        connection.exec_driver_sql(f"ANALYZE {_quoted(table)}")


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
