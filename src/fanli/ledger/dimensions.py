"""The customer and product dimensions as the engine reads them.

The masters come from their snapshots in the fact store (``fanli.sales.dimensions``); group
membership has dates and is read fresh (it is small): a line is judged by the group its
customer held on the line's date (ADR 0012).
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.customers.models import Customer, CustomerGroup, GroupMembership
from fanli.sales.dimensions import read_master
from fanli.sales.models import BatchKind
from fanli.sales.service import ALWAYS
from fanli.sales.store import FactStore


def customer_table(session: Session, store: FactStore) -> pa.Table:
    """customer_id, name, segment, region, attributes, and group.

    A customer's group has dates, and a line is judged by the group held on its own date (ADR
    0012). Where every membership holds always, the table has one row per customer. Otherwise
    it is in eras: ``valid_from`` (empty: always) and ``valid_to`` (exclusive; empty: for
    good), one row per membership and per stretch without one, each with the customer's other
    values, so every day of every customer is covered once."""
    table = read_master(session, store, BatchKind.CUSTOMERS)
    held: dict[str, list[tuple[dt.date, dt.date | None, str]]] = {}
    for customer, group, valid_from, valid_to in session.execute(
        select(
            Customer.code, CustomerGroup.code, GroupMembership.valid_from, GroupMembership.valid_to
        )
        .join(GroupMembership, GroupMembership.customer_id == Customer.id)
        .join(CustomerGroup, CustomerGroup.id == GroupMembership.group_id)
        .order_by(Customer.code, GroupMembership.valid_from)
    ):
        held.setdefault(customer, []).append((valid_from, valid_to, group))
    if not held:
        return table.append_column("group", pa.nulls(table.num_rows, pa.string()))
    if all(
        len(spans) == 1 and spans[0][0] <= ALWAYS and spans[0][1] is None for spans in held.values()
    ):
        positions = pc.index_in(table.column("customer_id"), value_set=pa.array(list(held)))
        groups = pa.array([spans[0][2] for spans in held.values()], pa.string())
        return table.append_column("group", pc.take(groups, positions))
    rows: list[int] = []  # the master row each era repeats
    groups_of: list[str | None] = []
    starts: list[dt.date | None] = []
    ends: list[dt.date | None] = []
    for index, customer in enumerate(table.column("customer_id").to_pylist()):
        for start, end, era_group in _eras(held.get(customer, [])):
            rows.append(index)
            groups_of.append(era_group)
            starts.append(start)
            ends.append(end)
    return (
        table.take(pa.array(rows, pa.int64()))
        .append_column("group", pa.array(groups_of, pa.string()))
        .append_column("valid_from", pa.array(starts, pa.date32()))
        .append_column("valid_to", pa.array(ends, pa.date32()))
    )


def _eras(
    spans: list[tuple[dt.date, dt.date | None, str]],
) -> list[tuple[dt.date | None, dt.date | None, str | None]]:
    """A customer's memberships (in order, never overlapping) as eras that cover every day:
    the stretches outside any membership have no group. None is unbounded."""
    eras: list[tuple[dt.date | None, dt.date | None, str | None]] = []
    reached: dt.date | None = None  # where the eras so far end; None before the first
    for start, end, group in spans:
        begin = None if start <= ALWAYS else start
        if begin is not None and (reached is None or reached < begin):
            eras.append((reached, begin, None))
        eras.append((begin, end, group))
        reached = end
        if end is None:
            return eras
    eras.append((reached, None, None))
    return eras


def product_table(session: Session, store: FactStore) -> pa.Table:
    """product_id, name, category, brand, then attributes."""
    return read_master(session, store, BatchKind.PRODUCTS)
