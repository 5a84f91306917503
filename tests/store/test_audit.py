"""The audit chain: one event per state change, linked by hashes; any edit breaks the link."""

from __future__ import annotations

import datetime as dt
from itertools import pairwise
from pathlib import Path

from sqlalchemy import select, text

from fanli.agreements.service import add_version
from fanli.audit.models import AuditEvent
from fanli.audit.queries import first_broken_event
from fanli.audit.service import GENESIS
from fanli.ledger.export import export_gl
from fanli.ledger.periods import close_period
from fanli.ledger.service import accrue
from fanli.sales.service import import_customers, import_products, import_sales, void_batch
from store.builders import (
    activate,
    customers_file,
    percent_agreement,
    products_file,
    sales_file,
    staff,
)
from store.conftest import NOW, Store
from store.tampering import unprotect


def _scenario(store: Store, directory: Path) -> None:
    with store.work() as session:
        import_customers(
            session, store.facts, customers_file(directory), actor=staff("ann"), now=NOW
        )
        import_products(session, store.facts, products_file(directory), actor=staff("ann"), now=NOW)
        version = add_version(session, percent_agreement(), actor=staff("ann"), now=NOW)
        activate(session, version.id, now=NOW)
    # One operation per transaction, as in production: each takes its own lock before the
    # audit chain's (``LockOrderError``).
    with store.work() as session:
        batch = import_sales(
            session,
            store.facts,
            sales_file(directory, "s.csv", [("L1", "C1", "P1", "2026-01-10", "1", "100.00")]),
            actor=staff("ann"),
            now=NOW,
        )
    with store.work() as session:
        accrue(session, store.facts, as_of=dt.date(2026, 3, 31), actor=staff("fin"), now=NOW)
    with store.work() as session:
        void_batch(session, store.facts, batch.batch_id, reason="test", actor=staff("ann"), now=NOW)
    with store.work() as session:
        close_period(session, "2026-03", actor=staff("fin"), now=NOW)
    with store.work() as session:
        export_gl(
            session, store.facts, "2026-03", directory / "gl.csv", actor=staff("fin"), now=NOW
        )


def test_every_state_change_writes_one_linked_event(store: Store, tmp_path: Path) -> None:
    _scenario(store, tmp_path)
    with store.work() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        assert [e.type for e in events] == [
            "customers.imported",
            "products.imported",
            "agreement.version.created",
            *["user.created"] * 9,
            "policy.published",
            "agreement.version.submitted",
            "agreement.version.activated",
            "sales.batch.imported",
            "ledger.accrual.run",
            "sales.batch.voided",
            "ledger.period.closed",
            "ledger.gl.exported",
        ]
        assert events[0].prev_hash == GENESIS
        assert all(b.prev_hash == a.hash for a, b in pairwise(events))
        assert first_broken_event(session) is None


def test_an_edited_event_is_found(store: Store, tmp_path: Path) -> None:
    _scenario(store, tmp_path)
    with store.engine.begin() as connection:
        unprotect(connection)
        connection.execute(text("UPDATE audit_event SET actor = 'mallory' WHERE seq = 6"))
    with store.work() as session:
        assert first_broken_event(session) == 6


def test_a_deleted_event_is_found(store: Store, tmp_path: Path) -> None:
    _scenario(store, tmp_path)
    with store.engine.begin() as connection:
        unprotect(connection)
        connection.execute(text("DELETE FROM audit_event WHERE seq = 4"))
    with store.work() as session:
        assert first_broken_event(session) == 4  # named as missing
