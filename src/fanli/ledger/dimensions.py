"""The customer and product dimensions as the engine reads them on a given day.

The masters come from their snapshots in the fact store (``fanli.sales.dimensions``); group
membership depends on the day and is read fresh (it is small).
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
from fanli.sales.store import FactStore


def customer_table(session: Session, store: FactStore, *, on: dt.date) -> pa.Table:
    """customer_id, name, segment, region, attributes, and group (membership on ``on``)."""
    table = read_master(session, store, BatchKind.CUSTOMERS)
    groups = dict(
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
    if not groups:
        return table.append_column("group", pa.nulls(table.num_rows, pa.string()))
    positions = pc.index_in(table.column("customer_id"), value_set=pa.array(list(groups)))
    column = pc.take(pa.array(list(groups.values()), pa.string()), positions)
    return table.append_column("group", column)


def product_table(session: Session, store: FactStore) -> pa.Table:
    """product_id, name, category, brand, then attributes."""
    return read_master(session, store, BatchKind.PRODUCTS)
