"""The customer and product dimensions as the engine reads them, built from the store.

Reading 150,000 customers through the ORM (and decoding their JSON attributes) costs seconds,
and an incremental run needs the same tables as the previous one. So each dimension is kept as
a Parquet snapshot in the fact store, named by a hash of the import batches that shaped it: a
new customer or product import gives a new name, a rolled-back one never reuses a name for
other content. Group membership depends on the date and is read fresh (it is small).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.customers.models import Customer, CustomerGroup, GroupMembership
from fanli.sales.models import BatchKind, ImportBatch
from fanli.sales.store import FactStore

_CUSTOMER_SQL = "SELECT code, legal_name, segment, region, attributes FROM customer ORDER BY code"
_PRODUCT_SQL = "SELECT code, name, category, brand, attributes FROM product ORDER BY code"


def _revision(session: Session, kind: BatchKind) -> str:
    rows = session.execute(
        select(ImportBatch.id, ImportBatch.content_hash)
        .where(ImportBatch.kind == kind)
        .order_by(ImportBatch.id)
    ).all()
    return hashlib.sha256(json.dumps([list(row) for row in rows]).encode()).hexdigest()[:24]


def _attributes(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):  # SQLite hands JSON over as text
        decoded: dict[str, Any] = json.loads(value)
        return decoded
    return dict(value)


def _read(session: Session, sql: str, names: tuple[str, ...]) -> pa.Table:
    rows = session.connection().exec_driver_sql(sql).fetchall()
    columns: dict[str, list[Any]] = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    attributes = [_attributes(row[len(names)]) for row in rows]
    extra = sorted({name for values in attributes for name in values} - set(names))
    for name in extra:
        columns[name] = [None if a.get(name) is None else str(a[name]) for a in attributes]
    return pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})


def _snapshot(
    session: Session, store: FactStore, kind: BatchKind, sql: str, names: tuple[str, ...]
) -> pa.Table:
    directory = store.root / "dimensions"
    path = directory / f"{kind}-{_revision(session, kind)}.parquet"
    if path.exists():
        return pq.read_table(path)
    table = _read(session, sql, names)
    directory.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    pq.write_table(table, partial)
    os.replace(partial, path)
    return table


def customer_table(session: Session, store: FactStore, *, on: dt.date) -> pa.Table:
    """customer_id, name, segment, region, group (membership on ``on``), then attributes."""
    table = _snapshot(
        session,
        store,
        BatchKind.CUSTOMERS,
        _CUSTOMER_SQL,
        ("customer_id", "name", "segment", "region"),
    )
    groups = _groups_by_code(session, on)
    column = [groups.get(code) for code in table.column("customer_id").to_pylist()]
    return table.append_column("group", pa.array(column, pa.string()))


def _groups_by_code(session: Session, on: dt.date) -> dict[str, str]:
    return dict(
        session.execute(
            select(Customer.code, CustomerGroup.code)
            .join(GroupMembership, GroupMembership.customer_id == Customer.id)
            .join(CustomerGroup, CustomerGroup.id == GroupMembership.group_id)
            .where(
                GroupMembership.valid_from <= on,
                (GroupMembership.valid_to.is_(None)) | (GroupMembership.valid_to > on),
            )
        ).all()
    )


def product_table(session: Session, store: FactStore) -> pa.Table:
    """product_id, name, category, brand, then attributes."""
    return _snapshot(
        session,
        store,
        BatchKind.PRODUCTS,
        _PRODUCT_SQL,
        ("product_id", "name", "category", "brand"),
    )
