"""Bulk inserts from Arrow tables, in the session's own transaction.

An accrual run at scale writes hundreds of thousands of result rows and journal lines. Going
through ORM objects or per-row parameter processing costs far more than the database does, so
these paths hand the database what it stores natively:
- PostgreSQL: ``COPY ... FROM STDIN`` in CSV written by Arrow (decimals keep every digit as text);
- SQLite: one ``executemany`` with amounts already as scaled integers (``Amount``, ADR 0004) and
  dates as ISO text, as SQLAlchemy would have stored them.
Column names of the Arrow table must be columns of the target table; the others take defaults.
"""

from __future__ import annotations

import io
from decimal import Decimal
from typing import cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from sqlalchemy import Table
from sqlalchemy.orm import Session

from fanli.db.base import Amount, Base
from fanli.kit.money import FACT_SCALE

_SCALE = pa.scalar(Decimal(10**FACT_SCALE), pa.decimal128(FACT_SCALE + 1, 0))


def _sqlite_column(table: Table, name: str, values: pa.ChunkedArray) -> pa.ChunkedArray:
    column = table.columns[name]
    if isinstance(column.type, Amount):
        # exact: an Amount has at most FACT_SCALE places, so the scaled value is whole
        scaled = pc.multiply(pc.cast(values, pa.decimal128(22, FACT_SCALE)), _SCALE)
        return pc.cast(pc.cast(scaled, pa.decimal128(28, 0)), pa.int64())
    if pa.types.is_date(values.type):
        return pc.cast(values, pa.string())
    if pa.types.is_decimal(values.type):
        raise TypeError(f"{table.name}.{name}: a decimal into a column that is not an Amount")
    return values


def insert_arrow(session: Session, model: type[Base], data: pa.Table) -> int:
    """Insert every row of ``data`` into the model's table; the number of rows."""
    table = cast(Table, model.__table__)
    rows: int = data.num_rows
    if rows == 0:
        return 0
    connection = session.connection()
    names = data.column_names
    quoted = ", ".join(f'"{name}"' for name in names)
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
            cursor.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN (FORMAT csv)') as copy,
        ):
            copy.write(buffer.getvalue())
        return rows
    columns = [_sqlite_column(table, name, data.column(name)).to_pylist() for name in names]
    placeholders = ", ".join("?" for _ in names)
    connection.exec_driver_sql(
        f'INSERT INTO "{table.name}" ({quoted}) VALUES ({placeholders})',
        list(zip(*columns, strict=True)),
    )
    return rows
