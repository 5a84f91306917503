"""Reading import batches and the lines they hold."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

import duckdb
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.kit.sql import sql_list, sql_literal
from fanli.sales.models import BatchKind, BatchStatus, ImportBatch
from fanli.sales.store import FactStore


def batches(session: Session) -> Sequence[ImportBatch]:
    """Every import batch, oldest first."""
    return session.scalars(select(ImportBatch).order_by(ImportBatch.id)).all()


def invoice_lines_of(
    session: Session, store: FactStore, customer: str, line_ids: Sequence[str]
) -> set[str]:
    """Which of ``line_ids`` are lines of ``customer`` in active sales batches."""
    files = [
        store.path(batch.facts_file)
        for batch in batches(session)
        if batch.kind == BatchKind.SALES and batch.status == BatchStatus.ACTIVE and batch.facts_file
    ]
    if not files or not line_ids:
        return set()
    connection = duckdb.connect()
    try:
        connection.register("wanted", pa.table({"line_id": pa.array(list(line_ids), pa.string())}))
        rows = connection.execute(
            f"""SELECT DISTINCT s.line_id FROM read_parquet([{sql_list(files)}]) s
            SEMI JOIN wanted w ON w.line_id = s.line_id
            WHERE s.customer_id = {sql_literal(customer)}"""
        ).fetchall()
    finally:
        connection.close()
    return {row[0] for row in rows}


def returns_between(
    session: Session, store: FactStore, start: dt.date, end: dt.date
) -> list[tuple[str, str, dt.date, Decimal]]:
    """(customer, line id, date, net amount) of every return (a line with a negative net amount)
    in active sales batches dated in ``[start, end)``, by customer and date."""
    files = [
        store.path(batch.facts_file)
        for batch in batches(session)
        if batch.kind == BatchKind.SALES and batch.status == BatchStatus.ACTIVE and batch.facts_file
    ]
    if not files:
        return []
    connection = duckdb.connect()
    try:
        rows = connection.execute(
            f"""SELECT customer_id, line_id, invoice_date, net_amount
            FROM read_parquet([{sql_list(files)}])
            WHERE net_amount < 0 AND invoice_date >= ? AND invoice_date < ?
            ORDER BY customer_id, invoice_date, line_id""",
            [start, end],
        ).fetchall()
    finally:
        connection.close()
    return [(customer, line, day, Decimal(amount)) for customer, line, day, amount in rows]
