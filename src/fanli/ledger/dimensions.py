"""The customer and product dimensions as the engine reads them, built from the store."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.customers.models import Customer, CustomerGroup, GroupMembership
from fanli.products.models import Product


def _table(columns: dict[str, list[object]], attributes: list[dict[str, object]]) -> pa.Table:
    names = sorted({name for row in attributes for name in row} - columns.keys())
    for name in names:
        columns[name] = [None if row.get(name) is None else str(row[name]) for row in attributes]
    return pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})


def customer_table(session: Session, *, on: dt.date) -> pa.Table:
    """customer_id, name, group (membership on ``on``), segment, region, then attributes."""
    group_of = dict(
        session.execute(
            select(GroupMembership.customer_id, CustomerGroup.code)
            .join(CustomerGroup, CustomerGroup.id == GroupMembership.group_id)
            .where(
                GroupMembership.valid_from <= on,
                (GroupMembership.valid_to.is_(None)) | (GroupMembership.valid_to > on),
            )
        ).all()
    )
    rows = session.execute(
        select(
            Customer.id,
            Customer.code,
            Customer.legal_name,
            Customer.segment,
            Customer.region,
            Customer.attributes,
        ).order_by(Customer.code)
    ).all()
    columns: dict[str, list[object]] = {
        "customer_id": [row.code for row in rows],
        "name": [row.legal_name for row in rows],
        "group": [group_of.get(row.id) for row in rows],
        "segment": [row.segment for row in rows],
        "region": [row.region for row in rows],
    }
    return _table(columns, [row.attributes or {} for row in rows])


def product_table(session: Session) -> pa.Table:
    """product_id, name, category, brand, then attributes."""
    rows = session.execute(
        select(
            Product.code, Product.name, Product.category, Product.brand, Product.attributes
        ).order_by(Product.code)
    ).all()
    columns: dict[str, list[object]] = {
        "product_id": [row.code for row in rows],
        "name": [row.name for row in rows],
        "category": [row.category for row in rows],
        "brand": [row.brand for row in rows],
    }
    return _table(columns, [row.attributes or {} for row in rows])
