"""Imports of customers, products and sales lines: atomic, idempotent, validated row by row.

Each import reads and checks the whole file first; a file with any bad row raises
``InputFileError`` listing every problem (file, row, field, reason) and stores nothing. A good
file is stored in the caller's transaction together with its ``import_batch`` row and one audit
event. The same file again (same bytes) is recognised by its content hash and changes nothing;
so does a retried call with the same idempotency key. Sales lines go to the fact store as one
immutable Parquet file; a wrong sales batch is voided, never edited.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from openpyxl import Workbook
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from fanli.audit.service import record
from fanli.customers.credit_code import credit_code_problem
from fanli.customers.models import Customer, CustomerGroup, GroupMembership
from fanli.db.session import Lock, serialize
from fanli.engine.facts import DATE_COLUMNS
from fanli.kit import duck
from fanli.kit.errors import Code, FanliError, InputError, NotFoundError, Said, said
from fanli.kit.progress import ProgressHook, Stage, Stages
from fanli.kit.sheets import append_text_safe, inert
from fanli.kit.sql import chunks, sql_list
from fanli.products.models import Product
from fanli.sales.dimensions import read_master, revision, shape, write_after_import
from fanli.sales.files import (
    InputFileError,
    RowIssue,
    Rows,
    fields_of,
    header_of,
    read_customers,
    read_products,
    read_sales,
    rows_of,
    source_of,
)
from fanli.sales.mapping import ColumnMapping, FileKind
from fanli.sales.models import BatchKind, BatchStatus, ImportBatch
from fanli.sales.store import LINK_COLUMN, FactStore
from fanli.users.actor import Actor, Role, require

CUSTOMER_FIELDS = ("customer_id", "name", "group", "segment", "region", "credit_code", "tax_number")
PRODUCT_FIELDS = ("product_id", "name", "category", "brand")


# The longest text each master field may hold: its column's length. PostgreSQL would refuse a
# longer value half-way through the write; SQLite would keep it and every page would carry it.
CUSTOMER_LENGTHS = {
    "customer_id": 64, "name": 200, "group": 64, "segment": 64, "region": 64, "tax_number": 32,
}  # fmt: skip
PRODUCT_LENGTHS = {"product_id": 64, "name": 200, "category": 120, "brand": 120}


def _too_long(table: pa.Table, rows: Rows, lengths: dict[str, int]) -> list[RowIssue]:
    """Every value longer than its field allows, by row and by the file's column."""
    values = table.select([name for name in lengths if name in table.column_names]).to_pylist()
    return [
        RowIssue.of(
            rows(index),
            header_of(table, field),
            said(
                "{length} characters; at most {limit} are allowed", length=len(value), limit=limit
            ),
        )
        for index, row in enumerate(values)
        for field, value in row.items()
        if value is not None and len(value) > (limit := lengths[field])
    ]


class BatchError(FanliError):
    code = "batch_error"


class IdempotencyConflictError(InputError):
    """The idempotency key was used before for a different file: the request is wrong, as a
    reused key with another body is anywhere in the API (ADR 0006)."""

    code = "idempotency_conflict"


@dataclass(frozen=True)
class ImportOutcome:
    batch_id: int
    kind: str
    rows: int
    already_imported: bool  # the same file (or key) was imported before; nothing changed
    inserted: int = 0
    updated: int = 0
    # Sales lines with a date after the day of the import, and the latest date: stored as any
    # other (an ERP may export documents dated ahead), counted by the runs as of their day.
    dated_ahead: int = 0
    latest: dt.date | None = None


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def import_hash(path: Path, kind: BatchKind, mapping: ColumnMapping | None) -> str:
    """What recognises an import again: the file's sha256, or, when a column mapping reads
    it, the sha256 of the file's and the mapping's. The same file read through another
    mapping is another import: a batch stored through a wrong mapping, once voided, can be
    imported again through the right one."""
    content = file_hash(path)
    if mapping is None:
        return content
    used: dict[str, Any] = {"columns": mapping.for_kind(FileKind(kind.value))}
    if kind is BatchKind.SALES:
        used["document_types"] = mapping.document_types
    if not any(used.values()):
        return content  # a mapping with nothing for this kind reads the file as none does
    both = json.dumps([content, used], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(both.encode("utf-8")).hexdigest()


def _previous(
    session: Session,
    kind: BatchKind,
    path: Path,
    content_hash: str,
    idempotency_key: str | None,
) -> ImportOutcome | None:
    """The earlier import this call repeats, if any.

    A sales file is the same batch whenever it comes again. A master file is "already
    imported" only while no later import of that master has come between: after one has,
    the same file comes again to set its values back, as a batch of its own."""
    if idempotency_key is not None:
        keyed = session.scalar(
            select(ImportBatch).where(ImportBatch.idempotency_key == idempotency_key)
        )
        if keyed is not None:
            if keyed.kind != kind or keyed.content_hash != content_hash:
                raise IdempotencyConflictError.said(
                    "idempotency key {key} was used for another file (batch {batch})",
                    key=repr(idempotency_key),
                    batch=keyed.id,
                )
            return ImportOutcome(keyed.id, kind, keyed.rows, already_imported=True)
    same = session.scalar(
        select(ImportBatch)
        .where(ImportBatch.kind == kind, ImportBatch.content_hash == content_hash)
        .order_by(ImportBatch.id.desc())
        .limit(1)
    )
    if same is None:
        return None
    if kind != BatchKind.SALES and session.scalar(
        select(ImportBatch.id).where(ImportBatch.kind == kind, ImportBatch.id > same.id).limit(1)
    ):
        return None  # a later import changed the master since: this file sets it back
    if same.status == BatchStatus.VOIDED:
        raise BatchError.said(
            "file {file} was imported as batch {batch}, which was voided; a voided batch is not "
            "restored: import a corrected file, or this one through a corrected column mapping",
            file=path.name,  # an upload's copy lies in a temporary folder: its name only
            batch=same.id,
        )
    return ImportOutcome(same.id, kind, same.rows, already_imported=True)


def _add_batch(
    session: Session,
    *,
    kind: BatchKind,
    path: Path,
    content_hash: str,
    idempotency_key: str | None,
    rows: int,
    actor: str,
    now: dt.datetime,
    facts_file: str | None = None,
    dates: tuple[dt.date | None, dt.date | None] = (None, None),
) -> ImportBatch:
    batch = ImportBatch(
        kind=kind,
        source_name=path.name,
        content_hash=content_hash,
        idempotency_key=idempotency_key,
        facts_file=facts_file,
        rows=rows,
        first_date=dates[0],
        last_date=dates[1],
        status=BatchStatus.ACTIVE,
        imported_at=now,
        imported_by=actor,
    )
    session.add(batch)
    session.flush()
    return batch


def _text_rows(table: pa.Table, names: tuple[str, ...]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        for name in names:
            row.setdefault(name, None)
    return rows


def _upsert_master(
    session: Session,
    store: FactStore,
    *,
    kind: BatchKind,
    model: type[Customer] | type[Product],
    path: Path,
    content_hash: str,
    idempotency_key: str | None,
    values: list[dict[str, Any]],
    unchanged: set[str],
    ids: dict[str, int],
    snapshot: tuple[str, ...],
    after_upsert: Callable[[], set[str]] | None,
    actor: str,
    now: dt.datetime,
    stages: Stages,
) -> ImportOutcome:
    """Insert new rows of a master and update the known ones the file changes (``ids``: code ->
    id of the rows stored; ``unchanged``: the codes of those it leaves as they are), then
    register the batch, write its audit event and the master's next snapshot. A row counts as
    updated when one of its values changes, or its membership does (``after_upsert``)."""
    stages.begin(Stage.WRITING)
    previous_revision = revision(session, kind)
    new = [value for value in values if value["code"] not in ids]
    changed = [
        {"id": ids[value["code"]], **value}
        for value in values
        if value["code"] in ids and value["code"] not in unchanged
    ]
    if new:
        session.execute(insert(model), new)
    if changed:
        session.execute(update(model), changed)
    moved = after_upsert() if after_upsert is not None else set()
    updated = len(changed) + len(moved & unchanged)
    batch = _add_batch(
        session,
        kind=kind,
        path=path,
        content_hash=content_hash,
        idempotency_key=idempotency_key,
        rows=len(values),
        actor=actor,
        now=now,
    )
    record(
        session,
        type=f"{kind}.imported",
        actor=actor,
        entity_type="import_batch",
        entity_id=batch.id,
        inputs={"file": path.name, "sha256": content_hash},
        outcome={"rows": len(values), "inserted": len(new), "updated": updated},
        now=now,
    )
    write_after_import(
        session,
        store,
        kind,
        previous_revision=previous_revision,
        imported=shape(kind, [tuple(value[name] for name in snapshot) for value in values]),
        complete=not ids,
    )
    return ImportOutcome(batch.id, kind, len(values), False, len(new), updated)


# ---- customers -------------------------------------------------------------------------------


def import_customers(
    session: Session,
    store: FactStore,
    path: Path,
    *,
    actor: Actor,
    now: dt.datetime,
    mapping: ColumnMapping | None = None,
    idempotency_key: str | None = None,
    progress: ProgressHook | None = None,
) -> ImportOutcome:
    """Add new customers and update changed ones from a file; all rows or none. A column the
    file lacks leaves what is stored as it is; an empty cell in a column it has clears it."""
    require(actor, Role.FINANCE, to=said("import customers"))
    # One import at a time: each builds the next snapshot of the master from the last one.
    serialize(session, Lock.IMPORT)
    content_hash = import_hash(path, BatchKind.CUSTOMERS, mapping)
    repeated = _previous(session, BatchKind.CUSTOMERS, path, content_hash, idempotency_key)
    if repeated is not None:
        return repeated
    stages = Stages(progress, Stage.READING, Stage.CHECKING, Stage.WRITING)
    stages.begin(Stage.READING)
    existing = {
        code: (customer_id, credit)
        for customer_id, code, credit in session.execute(
            select(Customer.id, Customer.code, Customer.credit_code)
        )
    }
    table = read_customers(
        path,
        mapping=mapping,
        progress=progress,
        check=lambda table, rows: _customer_problems(table, rows, existing),
    )
    if table.num_rows == 0:  # an empty batch would only be a new revision of the same master
        raise InputError.said_at("the file has no customers", file=source_of(table, str(path)))
    stages.begin(Stage.CHECKING)
    rows = _text_rows(table, CUSTOMER_FIELDS)
    for row in rows:
        row["credit_code"] = (row["credit_code"] or "").strip().upper() or None
    given = fields_of(table)
    values, unchanged = _merged(
        session,
        Customer,
        rows,
        key="customer_id",
        columns={
            "name": "legal_name",
            "credit_code": "credit_code",
            "tax_number": "tax_number",
            "segment": "segment",
            "region": "region",
        },
        given=given,
        attribute_names=[name for name in table.column_names if name not in CUSTOMER_FIELDS],
    )
    return _upsert_master(
        session,
        store,
        kind=BatchKind.CUSTOMERS,
        model=Customer,
        path=path,
        content_hash=content_hash,
        idempotency_key=idempotency_key,
        values=values,
        unchanged=unchanged,
        ids={code: ids[0] for code, ids in existing.items()},
        snapshot=("code", "legal_name", "segment", "region", "attributes"),
        # no group column: every membership stays as it is
        after_upsert=(lambda: _record_groups(session, rows, now.date(), known=set(existing)))
        if "group" in given
        else None,
        actor=actor.code,
        now=now,
        stages=stages,
    )


def _customer_problems(
    table: pa.Table, rows: Rows, existing: dict[str, tuple[int, str | None]]
) -> list[RowIssue]:
    """A customers file's problems against what is stored: a legal entity name for every new
    customer and no emptied one, and valid credit codes that no two customers share."""
    given = fields_of(table)
    name_header = header_of(table, "name")
    credit_header = header_of(table, "credit_code")
    credit_owner = {credit: code for code, (_, credit) in existing.items() if credit}
    issues: list[RowIssue] = _too_long(table, rows, CUSTOMER_LENGTHS)
    seen_credit: dict[str, int] = {}
    for index, row in enumerate(_text_rows(table, CUSTOMER_FIELDS)):
        number = rows(index)
        code = row["customer_id"]
        if code is None:
            continue  # the reader reports the empty key
        if "name" in given and not row["name"]:
            issues.append(
                RowIssue.of(number, name_header, said("a customer needs its legal entity name"))
            )
        elif "name" not in given and code not in existing:
            issues.append(
                RowIssue.of(
                    number,
                    name_header,
                    said(
                        "customer {code} is new and needs its legal entity name, but the file "
                        "has no column for it",
                        code=code,
                    ),
                )
            )
        credit = (row["credit_code"] or "").strip().upper()
        if not credit:
            continue
        problem = credit_code_problem(credit)
        if problem:
            issues.append(RowIssue.of(number, credit_header, problem))
        elif credit in seen_credit:
            issues.append(
                RowIssue.of(
                    number,
                    credit_header,
                    said("{code} is also on row {row}", code=credit, row=seen_credit[credit]),
                )
            )
        elif credit_owner.get(credit, code) != code:
            issues.append(
                RowIssue.of(
                    number,
                    credit_header,
                    said(
                        "{code} belongs to customer {customer} already",
                        code=credit,
                        customer=credit_owner[credit],
                    ),
                )
            )
        seen_credit.setdefault(credit, number)
    return issues


def _merged(
    session: Session,
    model: type[Customer] | type[Product],
    rows: list[dict[str, Any]],
    *,
    key: str,
    columns: dict[str, str],
    given: set[str],
    attribute_names: list[str],
) -> tuple[list[dict[str, Any]], set[str]]:
    """Each row as the master will hold it, and the codes of the known rows it leaves as they
    are. A known row is taken as stored, with the file's columns laid over it (a field the file
    lacks keeps its value); a new row has the file's values only. Attributes likewise: the
    file's columns replace theirs, an empty cell removes one, and attributes the file has no
    column for stay."""
    stored: dict[str, dict[str, Any]] = {}
    codes = [row[key] for row in rows]
    held = list(columns.values())
    for chunk in chunks(codes):  # SQLite binds some tens of thousands at most
        for found in session.execute(
            select(model.code, model.attributes, *(getattr(model, c) for c in held)).where(
                model.code.in_(chunk)
            )
        ):
            stored[found[0]] = {
                "attributes": found[1] or {},
                **dict(zip(held, found[2:], strict=True)),
            }
    values = []
    unchanged = set()
    for row in rows:
        before = stored.get(row[key])
        value: dict[str, Any] = {"code": row[key]}
        for field, column in columns.items():
            value[column] = row[field] if field in given else (before or {}).get(column)
        attributes = dict(before["attributes"]) if before else {}
        for name in attribute_names:
            if row[name] is None:
                attributes.pop(name, None)
            else:
                attributes[name] = row[name]
        value["attributes"] = attributes
        values.append(value)
        if before is not None and all(value[name] == before[name] for name in before):
            unchanged.add(row[key])
    return values, unchanged


# A new customer's group is taken to hold for all earlier dates: the file says which group it
# is in, not since when, and a back-dated accrual must not lose it.
ALWAYS = dt.date.min


def _record_groups(
    session: Session, rows: list[dict[str, Any]], today: dt.date, *, known: set[str]
) -> set[str]:
    """A group column that differs from the current membership ends it today and starts the new
    one today. The group of a customer new to the store (not in ``known``) holds since
    ``ALWAYS``; a known customer that had none joins today, so its earlier sales are not
    judged by it (ADR 0012). The codes of the customers whose membership changed."""
    wanted = {row["customer_id"]: row["group"] for row in rows}
    groups = dict(session.execute(select(CustomerGroup.code, CustomerGroup.id)).all())
    for code in sorted({group for group in wanted.values() if group} - groups.keys()):
        session.add(CustomerGroup(code=code))
    session.flush()
    groups = dict(session.execute(select(CustomerGroup.code, CustomerGroup.id)).all())
    customer_ids = dict(session.execute(select(Customer.code, Customer.id)).all())
    current = {
        customer_id: (membership_id, group_id)
        for membership_id, customer_id, group_id in session.execute(
            select(GroupMembership.id, GroupMembership.customer_id, GroupMembership.group_id).where(
                GroupMembership.valid_to.is_(None)
            )
        )
    }
    had_membership = set(session.scalars(select(GroupMembership.customer_id).distinct()))
    moved = set()
    for code, group in wanted.items():
        customer_id = customer_ids[code]
        group_id = groups.get(group) if group else None
        held = current.get(customer_id)
        if held is not None and held[1] == group_id:
            continue
        if held is None and group_id is None:
            continue
        moved.add(code)
        if held is not None:
            session.execute(
                update(GroupMembership).where(GroupMembership.id == held[0]).values(valid_to=today)
            )
        if group_id is not None:
            session.add(
                GroupMembership(
                    group_id=group_id,
                    customer_id=customer_id,
                    valid_from=(
                        today if customer_id in had_membership or code in known else ALWAYS
                    ),
                )
            )
    session.flush()
    return moved


# ---- products --------------------------------------------------------------------------------


def import_products(
    session: Session,
    store: FactStore,
    path: Path,
    *,
    actor: Actor,
    now: dt.datetime,
    mapping: ColumnMapping | None = None,
    idempotency_key: str | None = None,
    progress: ProgressHook | None = None,
) -> ImportOutcome:
    """Add new products and update changed ones from a file; all rows or none. A column the
    file lacks leaves what is stored as it is (as for customers)."""
    require(actor, Role.FINANCE, to=said("import products"))
    serialize(session, Lock.IMPORT)  # as for customers
    content_hash = import_hash(path, BatchKind.PRODUCTS, mapping)
    repeated = _previous(session, BatchKind.PRODUCTS, path, content_hash, idempotency_key)
    if repeated is not None:
        return repeated
    stages = Stages(progress, Stage.READING, Stage.CHECKING, Stage.WRITING)
    stages.begin(Stage.READING)
    table = read_products(
        path,
        mapping=mapping,
        progress=progress,
        check=lambda table, rows: _too_long(table, rows, PRODUCT_LENGTHS),
    )
    if table.num_rows == 0:  # an empty batch would only be a new revision of the same master
        raise InputError.said_at("the file has no products", file=source_of(table, str(path)))
    stages.begin(Stage.CHECKING)
    rows = _text_rows(table, PRODUCT_FIELDS)
    existing = dict(session.execute(select(Product.code, Product.id)).all())
    values, unchanged = _merged(
        session,
        Product,
        rows,
        key="product_id",
        columns={"name": "name", "category": "category", "brand": "brand"},
        given=fields_of(table),
        attribute_names=[name for name in table.column_names if name not in PRODUCT_FIELDS],
    )
    return _upsert_master(
        session,
        store,
        kind=BatchKind.PRODUCTS,
        model=Product,
        path=path,
        content_hash=content_hash,
        idempotency_key=idempotency_key,
        values=values,
        unchanged=unchanged,
        ids=existing,
        snapshot=("code", "name", "category", "brand", "attributes"),
        after_upsert=None,
        actor=actor.code,
        now=now,
        stages=stages,
    )


# ---- sales -----------------------------------------------------------------------------------


def active_sales_files(session: Session, store: FactStore) -> list[tuple[int, Path]]:
    return [
        (batch_id, store.path(name))
        for batch_id, name in session.execute(
            select(ImportBatch.id, ImportBatch.facts_file)
            .where(ImportBatch.kind == BatchKind.SALES, ImportBatch.status == BatchStatus.ACTIVE)
            .order_by(ImportBatch.id)
        )
        if name
    ]


def _batches_holding(line_ids: pa.ChunkedArray, batches: list[tuple[int, Path]]) -> pa.Array | None:
    """For each of ``line_ids``, the active batch that holds it already (null for none; it
    would count twice), as the batch list shows it; None when no line is held, which is the
    one question asked of a file with no such line."""
    if not batches:
        return None
    connection = duckdb.connect()
    try:
        connection.register("incoming", pa.table({"line_id": line_ids}))
        connection.register(
            "batches",
            pa.table(
                {
                    "batch_id": pa.array([batch for batch, _ in batches], pa.int64()),
                    "filename": pa.array([str(file) for _, file in batches], pa.string()),
                }
            ),
        )
        listed = sql_list([file for _, file in batches])
        held = f"""SELECT s.line_id, b.batch_id
            FROM read_parquet([{listed}], filename = true) s
            JOIN batches b ON b.filename = s.filename"""
        ((found,),) = connection.execute(
            f"SELECT count(*) FROM incoming i JOIN ({held}) h ON h.line_id = i.line_id"
        ).fetchall()
        if not found:
            return None
        connection.register(
            "numbered",
            pa.table({"line_id": line_ids, "row_index": pa.array(range(len(line_ids)))}),
        )
        # One batch per row, should two batches ever hold a line: one answer per row.
        holding = connection.sql(
            f"""WITH found AS (
              SELECT i.row_index, min(h.batch_id) AS batch_id
              FROM numbered i JOIN ({held}) h ON h.line_id = i.line_id
              GROUP BY i.row_index)
            SELECT f.batch_id FROM numbered n LEFT JOIN found f USING (row_index)
            ORDER BY n.row_index"""
        ).to_arrow_table()
        assert holding is not None
        return holding.column(0).combine_chunks()
    finally:
        connection.close()


def _returns_checked(table: pa.Table, files: list[Path], clean: pa.Array | None) -> list[RowIssue]:
    """The checks of returns against the lines they name, in the file and stored; of the
    ``clean`` lines only, when given (the file has problems of its own)."""
    return _unknown_links(table, files, clean) + _named_by_stored_returns(table, files, clean)


def _unknown_links(
    table: pa.Table, files: list[Path], clean: pa.Array | None = None
) -> list[RowIssue]:
    """Rows that name an original line which is neither in the file nor stored, that name one
    without being a return (a negative amount) or name themselves; returns of a line that is a
    return itself, of another customer's or product's line, or dated before it; and returns
    that together take back more of a line, in quantity or in amount, than it sold. Only the
    ``clean`` lines, when given, are looked at: a line with a problem of its own names
    nothing and is named by nothing."""
    if LINK_COLUMN not in table.column_names:
        return []
    rows = rows_of(table)
    links = table.column(LINK_COLUMN)
    linked = pc.is_valid(links) if clean is None else pc.and_(pc.is_valid(links), clean)
    column = header_of(table, LINK_COLUMN)
    not_returns = pc.and_(linked, pc.greater_equal(table.column("net_amount"), 0))
    themselves = pc.and_(linked, pc.fill_null(pc.equal(links, table.column("line_id")), False))
    issues = [
        RowIssue.of(
            rows(index),
            column,
            said("only a return (negative net amount) names an original line"),
        )
        for index in pc.indices_nonzero(not_returns).to_pylist()[:1000]
    ]
    issues += [
        RowIssue.of(rows(index), column, said("a return names itself as its original line"))
        for index in pc.indices_nonzero(themselves).to_pylist()[:1000]
    ]
    line = [
        "line_id", "customer_id", "product_id", "invoice_date", "currency", "quantity",
        "net_amount",
    ]  # fmt: skip
    wanted = (
        table.select(line[1:5])
        .append_column("link", links)
        .append_column("row_index", pa.array(range(table.num_rows)))
        .filter(pc.and_(linked, pc.invert(themselves)))
    )
    if wanted.num_rows == 0:
        return issues
    connection = duckdb.connect()
    try:
        connection.register("wanted", wanted)
        incoming = table.select([*line, LINK_COLUMN])
        connection.register("incoming", incoming if clean is None else incoming.filter(clean))
        listed = sql_list(files)
        stored = (
            f"UNION ALL SELECT {', '.join(line)}, {LINK_COLUMN} FROM read_parquet([{listed}])"
            if files
            else ""
        )
        # Only the lines the returns name, and the returns of those lines: not every line
        # stored (millions, where the returns name a few).
        connection.execute(
            f"""CREATE TEMP TABLE known AS
            SELECT * FROM (SELECT * FROM incoming {stored})
            WHERE line_id IN (SELECT link FROM wanted)
               OR {LINK_COLUMN} IN (SELECT link FROM wanted)"""
        )
        # A line of the file with a problem of its own is there, though not judged here.
        connection.register("in_file", table.select(["line_id"]))
        missing = connection.execute(
            """SELECT w.row_index, w.link FROM wanted w
            ANTI JOIN (SELECT line_id FROM known UNION ALL SELECT line_id FROM in_file) k
              ON k.line_id = w.link
            ORDER BY w.row_index LIMIT 1000"""
        ).fetchall()
        # A return takes back part of a sale: the same customer's, of the same product, made
        # before it. Else it would cut one customer's rebate for another's goods.
        mismatched = connection.execute(
            f"""SELECT w.row_index, w.link,
                       o.{LINK_COLUMN} IS NOT NULL OR o.net_amount < 0 AS of_a_return,
                       o.customer_id, w.customer_id, o.product_id, w.product_id,
                       o.currency, w.currency, o.invoice_date, w.invoice_date
            FROM wanted w JOIN known o ON o.line_id = w.link
            WHERE o.{LINK_COLUMN} IS NOT NULL OR o.net_amount < 0
               OR o.customer_id <> w.customer_id OR o.product_id <> w.product_id
               OR o.currency IS DISTINCT FROM w.currency
               OR w.invoice_date < o.invoice_date
            ORDER BY w.row_index LIMIT 1000"""
        ).fetchall()
        # Every return of a line, stored or new, together takes back at most what it sold.
        over = connection.execute(
            f"""WITH returned AS (
                SELECT {LINK_COLUMN} AS link, -sum(quantity) AS taken,
                       -sum(net_amount) AS refunded
                FROM known WHERE {LINK_COLUMN} IS NOT NULL GROUP BY ALL
            )
            SELECT w.row_index, w.link, r.taken, o.quantity, r.refunded, o.net_amount
            FROM wanted w JOIN returned r ON r.link = w.link
            JOIN known o ON o.line_id = w.link AND o.{LINK_COLUMN} IS NULL
              AND o.net_amount >= 0  -- a return named as the original: refused as such
            WHERE r.taken > o.quantity OR r.refunded > o.net_amount
            ORDER BY w.row_index LIMIT 1000"""
        ).fetchall()
    finally:
        connection.close()
    issues += [
        RowIssue.of(rows(int(index)), column, said("original line {line} is not stored", line=link))
        for index, link in missing
    ]
    issues += [
        RowIssue.of(rows(int(found[0])), column, _mismatch(found[1:])) for found in mismatched
    ]
    for index, link, taken, sold, refunded, invoiced in over:
        issues.append(
            RowIssue.of(
                rows(int(index)),
                column,
                said(
                    "the returns of line {line} come to a quantity of {taken}, more than the "
                    "{sold} it sold",
                    line=link,
                    taken=_plain(taken),
                    sold=_plain(sold),
                )
                if taken > sold
                else said(
                    "the returns of line {line} come to {refunded}, more than the {invoiced} "
                    "it was invoiced at",
                    line=link,
                    refunded=_plain(refunded),
                    invoiced=_plain(invoiced),
                ),
            )
        )
    return sorted(issues, key=lambda issue: issue.row or 0)


def _named_by_stored_returns(
    table: pa.Table, files: list[Path], clean: pa.Array | None = None
) -> list[RowIssue]:
    """Sale lines that returns already stored name (the line was voided and is imported
    again): each of those returns must still be able to reverse part of it, as when a return
    arrives after its sale (same customer, product and currency, dated no earlier, together
    taking back no more than it sold). Of the ``clean`` lines only, when given."""
    if not files or table.num_rows == 0:
        return []
    links = (
        table.column(LINK_COLUMN)
        if LINK_COLUMN in table.column_names
        else pa.nulls(table.num_rows, pa.string())
    )
    columns = ["line_id", "customer_id", "product_id", "currency", "invoice_date", "quantity"]
    sales = (
        table.select([*columns, "net_amount"])
        .append_column("row_index", pa.array(range(table.num_rows)))
        .filter(
            pc.and_(
                pc.and_(pc.is_null(links), pc.greater_equal(table.column("net_amount"), 0)),
                clean if clean is not None else pa.scalar(True),
            )
        )
    )
    connection = duckdb.connect()
    try:
        connection.register("sales", sales)
        found = connection.execute(
            f"""WITH returns AS (
                SELECT line_id, {LINK_COLUMN} AS link, customer_id, product_id, currency,
                       invoice_date, quantity, net_amount
                FROM read_parquet([{sql_list(files)}], union_by_name = true)
                WHERE {LINK_COLUMN} IS NOT NULL
                  AND {LINK_COLUMN} IN (SELECT line_id FROM sales)
            ), judged AS (
                SELECT r.*, r.customer_id <> s.customer_id OR r.product_id <> s.product_id
                            OR r.currency IS DISTINCT FROM s.currency
                            OR r.invoice_date < s.invoice_date AS unlike
                FROM returns r JOIN sales s ON s.line_id = r.link
            ), taken AS (
                SELECT link, -sum(quantity) AS quantity, -sum(net_amount) AS amount,
                       bool_or(unlike) AS unlike,
                       min(line_id) FILTER (WHERE unlike) AS first_return
                FROM judged GROUP BY link
            )
            SELECT s.row_index, s.line_id, t.first_return, t.unlike,
                   t.quantity, s.quantity, t.amount, s.net_amount
            FROM sales s JOIN taken t ON t.link = s.line_id
            WHERE t.unlike OR t.quantity > s.quantity OR t.amount > s.net_amount
            ORDER BY s.row_index LIMIT 1000"""
        ).fetchall()
    finally:
        connection.close()
    rows = rows_of(table)
    header = header_of(table, "line_id")
    return [
        RowIssue.of(
            rows(int(index)),
            header,
            said(
                "return {ret}, stored already, names line {line} but is another customer's, "
                "product's or currency's, or dated before it",
                ret=first_return,
                line=line,
            )
            if unlike
            else said(
                "the returns stored for line {line} come to a quantity of {taken}, more than "
                "the {sold} it sells",
                line=line,
                taken=_plain(taken),
                sold=_plain(sold),
            )
            if taken > sold
            else said(
                "the returns stored for line {line} come to {refunded}, more than the "
                "{invoiced} it is invoiced at",
                line=line,
                refunded=_plain(refunded),
                invoiced=_plain(invoiced),
            ),
        )
        for index, line, first_return, unlike, taken, sold, refunded, invoiced in found
    ]


def _mismatch(found: tuple[Any, ...]) -> Said:
    """Why a return may not take back part of the line it names (``found``: the line it names,
    whether that is a return, and its customer, product, currency and date beside the
    return's own)."""
    (link, of_a_return, customer, own_customer, product, own_product, currency, own_currency,
     dated, own_date) = found  # fmt: skip
    if of_a_return:
        return said("original line {line} is a return itself", line=link)
    if customer != own_customer:
        return said(
            "original line {line} was sold to customer {customer}, not to {own}",
            line=link,
            customer=customer,
            own=own_customer,
        )
    if product != own_product:
        return said(
            "original line {line} is of product {product}, not of {own}",
            line=link,
            product=product,
            own=own_product,
        )
    # A sale and its return must count in the same agreements, so they state the same
    # currency or both none (a store's run reads none as its default currency).
    if currency != own_currency:
        return said(
            "original line {line} is in {currency}, not in {own}",
            line=link,
            currency=currency or Code("no stated currency"),
            own=own_currency or Code("no stated currency"),
        )
    return said(
        "the return is dated {own}, before original line {line} ({dated})",
        own=own_date,
        line=link,
        dated=dated,
    )


def _plain(quantity: Decimal) -> str:
    """4 for 4.0000, 2.5 for 2.5000 (never 1E+2)."""
    return format(quantity.normalize(), "f")


def import_sales(
    session: Session,
    store: FactStore,
    path: Path,
    *,
    actor: Actor,
    now: dt.datetime,
    mapping: ColumnMapping | None = None,
    idempotency_key: str | None = None,
    progress: ProgressHook | None = None,
) -> ImportOutcome:
    """Store a file of sales and return lines as one batch; all lines or none.

    Every customer and product must be known, every line id new among the active batches.
    Returns are lines with negative quantity and amounts.
    """
    require(actor, Role.FINANCE, to=said("import sales"))
    # Two imports at once could each find the other's line ids not yet stored.
    serialize(session, Lock.IMPORT)
    content_hash = import_hash(path, BatchKind.SALES, mapping)
    repeated = _previous(session, BatchKind.SALES, path, content_hash, idempotency_key)
    if repeated is not None:
        return repeated
    stages = Stages(progress, Stage.READING, Stage.CHECKING, Stage.WRITING)
    stages.begin(Stage.READING)
    batches = active_sales_files(session, store)
    files = [file for _, file in batches]
    table = read_sales(
        path,
        mapping=mapping,
        customers=read_master(session, store, BatchKind.CUSTOMERS).select(["customer_id"]),
        products=read_master(session, store, BatchKind.PRODUCTS).select(["product_id"]),
        customers_source="the customer master",
        products_source="the product master",
        progress=progress,
        stored=lambda line_ids: _batches_holding(line_ids, batches),
        lines_checked=lambda lines, clean: _returns_checked(lines, files, clean),
    )
    if table.num_rows == 0:
        raise InputError.said_at("the file has no sales lines", file=source_of(table, str(path)))
    stages.begin(Stage.CHECKING)
    issues = _returns_checked(table, files, None)
    if issues:
        raise InputFileError(issues, file=source_of(table, str(path)))
    firsts = [pc.min(table.column(name)).as_py() for name in DATE_COLUMNS]
    lasts = [pc.max(table.column(name)).as_py() for name in DATE_COLUMNS]
    dates = (
        min((d for d in firsts if d is not None), default=None),
        max((d for d in lasts if d is not None), default=None),
    )
    ahead = _dated_ahead(table, now.date())
    stages.begin(Stage.WRITING)
    name = store.write_batch(table, content_hash)
    batch = _add_batch(
        session,
        kind=BatchKind.SALES,
        path=path,
        content_hash=content_hash,
        idempotency_key=idempotency_key,
        rows=table.num_rows,
        actor=actor.code,
        now=now,
        facts_file=name,
        dates=dates,
    )
    record(
        session,
        type="sales.batch.imported",
        actor=actor.code,
        entity_type="import_batch",
        entity_id=batch.id,
        inputs={"file": path.name, "sha256": content_hash},
        outcome={
            "rows": table.num_rows,
            "facts_file": name,
            "dates": list(dates),
            "dated_ahead": ahead,
        },
        now=now,
    )
    return ImportOutcome(
        batch.id,
        BatchKind.SALES,
        table.num_rows,
        False,
        table.num_rows,
        0,
        dated_ahead=ahead,
        latest=dates[1] if ahead else None,
    )


def _dated_ahead(table: pa.Table, today: dt.date) -> int:
    """How many lines carry a date (order, invoice or payment) after ``today``."""
    after = None
    for name in DATE_COLUMNS:
        later = pc.fill_null(pc.greater(table.column(name), pa.scalar(today, pa.date32())), False)
        after = later if after is None else pc.or_(after, later)
    return int(pc.sum(after).as_py() or 0) if after is not None else 0


# A void's audit event lists at most this many of the returns it leaves (and counts them all).
RETURNS_LEFT_LISTED = 100


@dataclass(frozen=True)
class Voided:
    """A voided batch, and the returns in other batches left naming its lines."""

    batch: ImportBatch
    returns_left: list[ReturnLeft]


def void_batch(
    session: Session,
    store: FactStore,
    batch_id: int,
    *,
    reason: str,
    actor: Actor,
    now: dt.datetime,
) -> Voided:
    """Void a sales batch: its lines stop counting from the next accrual run. The returns in
    other batches that name its lines are told (``returns_left_by_void``) and audited."""
    require(actor, Role.FINANCE, to=said("void batches"))
    # Locked and read fresh: a second void of the same batch waits for the first, then finds
    # it voided (PostgreSQL; SQLite's writers queue anyway).
    if not reason.strip():
        raise InputError.said_at("voiding a batch needs a reason", field="reason")
    batch = session.get(ImportBatch, batch_id, with_for_update=True, populate_existing=True)
    if batch is None:
        raise NotFoundError.said("there is no sales batch {batch}", batch=batch_id)
    # Master data is corrected by importing it again (the later batch wins), never voided.
    if batch.kind == BatchKind.CUSTOMERS:
        raise BatchError.said(
            "batch {batch} holds customers, not sales: only a sales batch can be voided; "
            "import the corrected customers again instead",
            batch=batch_id,
        )
    if batch.kind == BatchKind.PRODUCTS:
        raise BatchError.said(
            "batch {batch} holds products, not sales: only a sales batch can be voided; "
            "import the corrected products again instead",
            batch=batch_id,
        )
    if batch.status == BatchStatus.VOIDED:
        raise BatchError.said("batch {batch} is voided already", batch=batch_id)
    batch.status = BatchStatus.VOIDED
    batch.voided_at = now
    batch.voided_by = actor.code
    batch.void_reason = reason
    session.flush()
    left = returns_left_by_void(session, store, batch.id)
    record(
        session,
        type="sales.batch.voided",
        actor=actor.code,
        entity_type="import_batch",
        entity_id=batch.id,
        inputs={"reason": reason},
        outcome={
            "rows": batch.rows,
            "facts_file": batch.facts_file,
            "returns_left": len(left),
            "returns_left_listed": [
                {"batch": r.batch_id, "line": r.line_id} for r in left[:RETURNS_LEFT_LISTED]
            ],
        },
        now=now,
    )
    return Voided(batch, left)


@dataclass(frozen=True)
class ReturnLeft:
    """A return in another active batch that names a line of a voided sales batch."""

    batch_id: int
    line_id: str


def returns_left_by_void(session: Session, store: FactStore, batch_id: int) -> list[ReturnLeft]:
    """The returns in the other active sales batches that name a line of sales batch
    ``batch_id``, by batch and line. Once that batch is voided they reverse a sale no longer
    counted, and keep reducing the rebate until the sale is imported again or they are voided
    too; whoever voids it is told which they are."""
    batch = session.get(ImportBatch, batch_id)
    if batch is None or batch.kind != BatchKind.SALES or not batch.facts_file:
        return []
    others = [
        (other, path) for other, path in active_sales_files(session, store) if other != batch_id
    ]
    if not others:
        return []
    paths = [str(path) for _, path in others]
    with duck.connection() as connection:
        # Every batch file holds the link column (``FactStore.write_batch``).
        connection.register(
            "files", pa.table({"batch_id": [b for b, _ in others], "filename": paths})
        )
        rows = connection.execute(
            f"""SELECT f.batch_id, r.line_id
            FROM read_parquet([{sql_list(paths)}], filename = true) r
            JOIN files f USING (filename)
            WHERE r.{LINK_COLUMN} IN (
                SELECT line_id FROM read_parquet({sql_list([store.path(batch.facts_file)])}))
            ORDER BY f.batch_id, r.line_id"""
        ).fetchall()
    return [ReturnLeft(other, line_id) for other, line_id in rows]


def write_issue_report(error: InputFileError, out: Path) -> None:
    """Every problem of a refused file, as CSV or Excel (``.xlsx``): file, row, field, reason."""
    out.write_bytes(issue_report(error, excel=out.suffix.lower() == ".xlsx"))


def issue_report(
    error: InputFileError,
    *,
    excel: bool,
    labels: tuple[str, str, str, str] = ("file", "row", "field", "reason"),
    reason: Callable[[RowIssue], str] = lambda issue: issue.message,
    more: Callable[[int], str] | None = None,
) -> bytes:
    """The problems of a refused file as a CSV (UTF-8 with BOM, for Excel) or an Excel file:
    one row per problem under ``labels``, each described by ``reason``. A file with more
    problems than are kept ends with a row saying how many more there are (``more``)."""
    rows: list[tuple[Any, ...]] = [
        (error.file, issue.row, issue.field, reason(issue)) for issue in error.issues
    ]
    hidden = error.total - len(error.issues)
    if hidden > 0:
        say_more = more or (
            lambda count: (
                f"{count:,} more problems are not listed: correct these and import "
                "the file again to see them"
            )
        )
        rows.append((error.file, None, None, say_more(hidden)))
    if excel:
        workbook = Workbook()
        sheet = workbook.active
        assert sheet is not None
        sheet.append(labels)
        for row in rows:
            append_text_safe(sheet, row)
        buffer = io.BytesIO()
        workbook.save(buffer)
        return buffer.getvalue()
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(labels)
    writer.writerows([inert(value) for value in row] for row in rows)
    return text.getvalue().encode("utf-8-sig")
