"""Snapshots of the customer and product masters as the engine reads them, in the fact store.

Reading 150,000 customers through the ORM (and decoding their JSON attributes) costs seconds,
and every accrual run needs the same tables until a master changes. Each master is therefore
kept as a Parquet snapshot named by a hash of the import batches that shaped it: an import
writes the next snapshot in its own transaction (so a rolled-back import never reuses a name
for other content), and a missing snapshot is rebuilt from the database.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.sales.models import BatchKind, ImportBatch
from fanli.sales.store import FactStore, durable_replace

# Per master: the SQL that reads it, and the names its first columns take in the snapshot.
_SHAPES: dict[BatchKind, tuple[str, tuple[str, ...]]] = {
    BatchKind.CUSTOMERS: (
        "SELECT code, legal_name, segment, region, attributes FROM customer ORDER BY code",
        ("customer_id", "name", "segment", "region"),
    ),
    BatchKind.PRODUCTS: (
        "SELECT code, name, category, brand, attributes FROM product ORDER BY code",
        ("product_id", "name", "category", "brand"),
    ),
}


def revision(session: Session, kind: BatchKind, batches: Collection[int] | None = None) -> str:
    """The name of the master's snapshot: a hash of the import batches that shaped it (all of
    them, or those among ``batches``: the master as it stood when those were all there were)."""
    query = select(ImportBatch.id, ImportBatch.content_hash).where(ImportBatch.kind == kind)
    if batches is not None:
        query = query.where(ImportBatch.id.in_(list(batches)))
    rows = session.execute(query.order_by(ImportBatch.id)).all()
    return hashlib.sha256(json.dumps([list(row) for row in rows]).encode()).hexdigest()[:24]


def master_after(
    session: Session, store: FactStore, kind: BatchKind, batches: Collection[int]
) -> pa.Table | None:
    """The master as it stood when ``batches`` were all the imports there were (an accrual run
    records them), from the snapshot written then; None when that snapshot is not kept."""
    path = _path(store, kind, revision(session, kind, batches))
    return pq.read_table(path) if path.exists() else None


def _path(store: FactStore, kind: BatchKind, name: str) -> Path:
    return store.root / "dimensions" / f"{kind}-{name}.parquet"


def _attributes(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):  # SQLite hands JSON over as text
        decoded: dict[str, Any] = json.loads(value)
        return decoded
    return dict(value)


def shape(kind: BatchKind, rows: list[tuple[Any, ...]]) -> pa.Table:
    """A snapshot table from rows of (the first columns..., attributes dict or JSON)."""
    names = _SHAPES[kind][1]
    columns: dict[str, list[Any]] = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    attributes = [_attributes(row[len(names)]) for row in rows]
    for name in sorted({key for values in attributes for key in values} - set(names)):
        columns[name] = [None if a.get(name) is None else str(a[name]) for a in attributes]
    return pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})


def _write(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    pq.write_table(table, partial)
    durable_replace(partial, path)


def read_master(session: Session, store: FactStore, kind: BatchKind) -> pa.Table:
    """The master as of the latest import, from its snapshot (rebuilt if missing)."""
    path = _path(store, kind, revision(session, kind))
    if path.exists():
        found = path.stat()
        return _snapshot(str(path), found.st_mtime_ns, found.st_size)
    sql, _names = _SHAPES[kind]
    table = shape(kind, [tuple(row) for row in session.connection().exec_driver_sql(sql)])
    _write(path, table)
    return table


@functools.lru_cache(maxsize=4)
def _snapshot(path: str, _mtime_ns: int, _size: int) -> pa.Table:
    """A snapshot file, read once per process: it is named by the imports that shaped it and
    never rewritten (a file replaced anyway has another time or size, so another key). Arrow
    tables are immutable, so every caller may share the one read."""
    return pq.read_table(path)


def write_after_import(
    session: Session,
    store: FactStore,
    kind: BatchKind,
    *,
    previous_revision: str,
    imported: pa.Table,
    complete: bool,
) -> None:
    """Write the snapshot of the new revision: the previous one with ``imported`` rows replacing
    theirs. ``complete`` says the import holds every row (the master was empty before)."""
    key = _SHAPES[kind][1][0]
    if complete:
        table = imported
    else:
        previous = _path(store, kind, previous_revision)
        if not previous.exists():
            read_master(session, store, kind)  # rebuilt from the database, new rows included
            return
        kept = pq.read_table(previous)
        kept = kept.filter(pc.invert(pc.is_in(kept.column(key), value_set=imported.column(key))))
        table = pa.concat_tables([kept, imported], promote_options="default")
    table = table.sort_by(key)
    _write(_path(store, kind, revision(session, kind)), table)
