"""Money moves exactly once under real concurrency: 50 approvals of one settlement started
together make one transition, 50 payouts with different keys make one payout, 50 retries with
one key return one result. Every loser gets a clear refusal, never an unhandled error."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from fanli.audit.models import AuditEvent
from fanli.db.session import make_engine, session_factory, unit_of_work
from fanli.kit.errors import FanliError
from fanli.ledger.models import Account, JournalLine
from fanli.settlements import service as settlements
from fanli.settlements.models import Payout, Settlement, SettlementApproval
from fanli.users.queries import actor
from fanli.users.service import create_user
from store.conftest import NOW, Store
from store.test_settlements import _world

CLIENTS = 50


def _together(store: Store, call: Callable[[Any, int], Any]) -> tuple[list[Any], list[str]]:
    """Run ``call(session, n)`` for n in 0..49, each in its own connection and transaction,
    released at the same moment. (results, refusals); anything else fails the test."""
    url = store.engine.url.render_as_string(hide_password=False)
    engine = make_engine(url, pool_size=CLIENTS, max_overflow=0)
    sessions = session_factory(engine)
    start = threading.Barrier(CLIENTS)
    results: list[Any] = []
    refusals: list[str] = []
    crashes: list[BaseException] = []

    def client(n: int) -> None:
        start.wait()
        try:
            with unit_of_work(sessions) as session:
                results.append(call(session, n))
        except FanliError as refused:
            refusals.append(str(refused))
        except BaseException as crash:
            crashes.append(crash)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    assert crashes == [], crashes[:3]
    return results, refusals


def _count(store: Store, model: Any, *where: Any) -> int:
    with store.work() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_fifty_approvals_make_one_transition(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)
    with store.work() as session:
        for n in range(CLIENTS):
            create_user(
                session,
                f"approver{n}",
                name=f"Approver {n}",
                roles=["approver"],
                approval_limit=Decimal(100000),
                actor=world["admin"],
                now=NOW,
            )
    settlement_id = world.propose()

    def approve(session: Any, n: int) -> str:
        return settlements.approve(
            session,
            store.facts,
            settlement_id,
            idempotency_key=f"approve-{n}",
            actor=actor(session, f"approver{n}"),
            now=NOW,
        ).status

    approved, refusals = _together(store, approve)
    assert approved == ["approved"]
    assert len(refusals) == CLIENTS - 1
    assert all("is approved: it cannot be approved" in reason for reason in refusals)
    assert _count(store, SettlementApproval) == 1
    assert _count(store, AuditEvent, AuditEvent.type == "settlement.approved") == 1


def test_fifty_payouts_make_one_payout(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)
    settlement_id = world.propose()
    world.approve(settlement_id, "amy")

    def pay(session: Any, n: int) -> int:
        return settlements.pay(
            session,
            store.facts,
            settlement_id,
            idempotency_key=f"pay-{n}",
            document_number=f"CN-{n}",
            actor=actor(session, "fay"),
            now=NOW,
        ).id

    paid, refusals = _together(store, pay)
    assert len(paid) == 1
    assert len(refusals) == CLIENTS - 1
    assert all("is paid: it cannot be paid" in reason for reason in refusals)
    assert _count(store, Payout) == 1
    assert _count(store, JournalLine, JournalLine.debit_account == Account.LIABILITY) == 1
    # The ledger: C1's liability is accrued (200.00) minus paid (200.00); C2's is untouched.
    assert world.liability("C1") == Decimal("0.00")
    assert world.liability("C2") == Decimal("10.00")
    assert world.account(Account.RECEIVABLE) == Decimal("-200.00")
    with store.work() as session:
        assert session.get(Settlement, settlement_id).status == "paid"  # type: ignore[union-attr]


def test_fifty_retries_with_one_key_return_one_result(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)

    def propose(session: Any, _n: int) -> int:
        return settlements.propose(
            session,
            store.facts,
            agreement_code="A1",
            beneficiary="C1",
            period_start=dt.date(2026, 1, 1),
            idempotency_key="one-key",
            actor=actor(session, "fay"),
            now=NOW,
        ).id

    proposed, refusals = _together(store, propose)
    # The first call does the work; those that waited for its key replay its result.
    assert refusals == []
    assert len(set(proposed)) == 1
    assert len(proposed) == CLIENTS
    assert _count(store, Settlement) == 1
    assert _count(store, AuditEvent, AuditEvent.type == "settlement.proposed") == 1
    assert world.settlement(proposed[0]).amount == Decimal("200.00")


@pytest.fixture(autouse=True)
def _enough_connections(store: Store) -> None:
    """PostgreSQL's default allows 100 connections; the test uses 50 plus the fixture's."""
    if store.backend == "postgresql":
        with store.engine.connect() as connection:
            limit = int(connection.exec_driver_sql("SHOW max_connections").scalar_one())
        assert limit >= CLIENTS + 10, f"PostgreSQL max_connections is {limit}"
