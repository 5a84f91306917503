"""Reading import batches and the lines they hold."""

from __future__ import annotations

from collections.abc import Sequence

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
