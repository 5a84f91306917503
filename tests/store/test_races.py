"""State changes that meet at once, on both databases.

A close waits for a run that is posting, and a run waits for a close in progress, so a closed
period never receives an entry after its close, and a late sale for it is always posted as an
adjustment in an open period after it. The same change made twice at once (a close, a void, a
termination, a verification, the first use of a month) happens once, with one audit event; the
second finds it done. Periods close in order. On SQLite every writer queues anyway; on
PostgreSQL the accounting-period lock and row locks keep the same order.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

import fanli.ledger.service as ledger_service
from fanli.agreements.models import AgreementRecord
from fanli.agreements.service import add_version, terminate
from fanli.audit.models import AuditEvent
from fanli.audit.service import record
from fanli.db.session import Lock, LockOrderError, serialize
from fanli.kit.errors import FanliError
from fanli.ledger.models import AccountingPeriod, JournalEntry
from fanli.ledger.periods import PeriodError, close_period, ensure_period
from fanli.sales.models import ImportBatch
from fanli.sales.service import void_batch
from fanli.users.service import delegate, disable_user, revoke_delegation
from store.builders import activate, people, percent_agreement, staff
from store.conftest import NOW, Store
from store.test_ledger import _accrue, _sales, _setup
from store.test_settlements import _world

WAIT = 10.0  # seconds a step may take before the test gives up on it
BLOCKED = 0.5  # how long a waiting thread is given to show it waits


class _InThread:
    """``call()`` on a thread of its own; its result or its refusal afterwards."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.refusal: FanliError | None = None
        self.crash: BaseException | None = None

        def run() -> None:
            try:
                self.result = call()
            except FanliError as refused:
                self.refusal = refused
            except BaseException as crash:
                self.crash = crash

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def waits(self) -> bool:
        self.thread.join(BLOCKED)
        return self.thread.is_alive()

    def finish(self) -> None:
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        assert self.crash is None, self.crash


def _close(store: Store, code: str, who: str = "fin") -> AccountingPeriod:
    with store.work() as session:
        return close_period(session, code, actor=staff(who), now=NOW)


def _entries(store: Store, run_id: int) -> list[tuple[str, str, dt.date]]:
    with store.work() as session:
        return [
            (str(entry.kind), period.code, entry.entry_date)
            for entry, period in session.execute(
                select(JournalEntry, AccountingPeriod)
                .join(AccountingPeriod, AccountingPeriod.id == JournalEntry.accounting_period_id)
                .where(JournalEntry.run_id == run_id)
                .order_by(JournalEntry.id)
            )
        ]


def _events(store: Store, *types: str) -> list[tuple[str, str, str]]:
    with store.work() as session:
        return [
            (event.type, event.entity_id, event.actor)
            for event in session.scalars(
                select(AuditEvent).where(AuditEvent.type.in_(types)).order_by(AuditEvent.seq)
            )
        ]


def _first_quarter(store: Store, tmp_path: Path) -> None:
    """2% a quarter on C1's January sale of 10,000, accrued as of March; then C2's late
    February sale of 1,000, not yet accrued (20.00 more)."""
    _setup(store, tmp_path)
    _sales(store, tmp_path, "s1.csv", ("L1", "C1", "P1", "2026-01-10", "1", "10000.00"))
    assert _accrue(store, "2026-03-31").net_change == Decimal("200.00")
    _sales(store, tmp_path, "s2.csv", ("L2", "C2", "P1", "2026-02-20", "1", "1000.00"))


def test_a_close_waits_for_a_run_that_is_posting(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _first_quarter(store, tmp_path)
    posted, go_on = threading.Event(), threading.Event()
    post = ledger_service._post

    def post_then_pause(*args: Any, **kwargs: Any) -> Any:
        done = post(*args, **kwargs)
        posted.set()
        assert go_on.wait(WAIT)
        return done

    monkeypatch.setattr(ledger_service, "_post", post_then_pause)
    run = _InThread(lambda: _accrue(store, "2026-03-31"))
    assert posted.wait(WAIT)
    close = _InThread(lambda: _close(store, "2026-03"))
    assert close.waits()  # until the run has committed
    go_on.set()
    run.finish()
    close.finish()
    # The run posted into March while it was open; the close came after and says so.
    assert _entries(store, run.result.run_id) == [("accrual", "2026-03", dt.date(2026, 3, 31))]
    assert close.result.closed_after_run_id == run.result.run_id
    assert [t for t, _, _ in _events(store, "ledger.accrual.run", "ledger.period.closed")] == [
        "ledger.accrual.run",
        "ledger.accrual.run",
        "ledger.period.closed",
    ]


def test_a_run_waits_for_a_close_and_posts_the_late_sale_as_an_adjustment(
    store: Store, tmp_path: Path
) -> None:
    _first_quarter(store, tmp_path)
    closing = store.sessions()
    closing.begin()
    close_period(closing, "2026-03", actor=staff("fin"), now=NOW)
    run = _InThread(lambda: _accrue(store, "2026-03-31"))
    assert run.waits()  # until the close has committed
    closing.commit()
    closing.close()
    run.finish()
    assert run.result.net_change == Decimal("20.00")
    assert _entries(store, run.result.run_id) == [("adjustment", "2026-04", dt.date(2026, 4, 1))]


def _twice(store: Store, change: Callable[[Session, str], Any]) -> _InThread:
    """The first change held uncommitted while the second starts; then committed."""
    first = store.sessions()
    first.begin()
    change(first, "fin")
    second = _InThread(lambda: _in_unit(store, change, "fay"))
    assert second.waits()
    first.commit()
    first.close()
    second.finish()
    return second


def _in_unit(store: Store, change: Callable[[Session, str], Any], who: str) -> Any:
    with store.work() as session:
        return change(session, who)


def test_two_closes_of_one_period_make_one_close(store: Store, tmp_path: Path) -> None:
    _first_quarter(store, tmp_path)
    second = _twice(
        store, lambda session, who: close_period(session, "2026-03", actor=staff(who), now=NOW)
    )
    assert isinstance(second.refusal, PeriodError)
    assert str(second.refusal) == "accounting period 2026-03 is closed already"
    assert _events(store, "ledger.period.closed") == [("ledger.period.closed", "2026-03", "fin")]


def test_two_voids_of_one_batch_make_one_void(store: Store, tmp_path: Path) -> None:
    _setup(store, tmp_path)
    batch = _sales(store, tmp_path, "s1.csv", ("L1", "C1", "P1", "2026-01-10", "1", "10000.00"))
    second = _twice(
        store,
        lambda session, who: void_batch(
            session,
            store.facts,
            batch,
            reason=f"entered twice (by {who})",
            actor=staff(who),
            now=NOW,
        ),
    )
    assert str(second.refusal) == f"batch {batch} is voided already"
    assert _events(store, "sales.batch.voided") == [("sales.batch.voided", str(batch), "fin")]
    with store.work() as session:
        voided = session.get(ImportBatch, batch)
        assert voided is not None
        assert (voided.voided_by, voided.void_reason) == ("fin", "entered twice (by fin)")


def test_periods_close_in_order_and_nothing_posts_before_a_closed_one(
    store: Store, tmp_path: Path
) -> None:
    _setup(store, tmp_path)
    _sales(
        store,
        tmp_path,
        "s1.csv",
        ("L1", "C1", "P1", "2026-01-10", "1", "10000.00"),
        ("L2", "C1", "P1", "2026-03-10", "1", "10000.00"),
    )
    assert _accrue(store, "2026-01-31").net_change == Decimal("200.00")  # opens January
    assert _accrue(store, "2026-03-31").net_change == Decimal("200.00")  # opens March
    with pytest.raises(PeriodError) as refused:
        _close(store, "2026-03")
    assert str(refused.value) == (
        "accounting period 2026-01 is still open: periods close in order, so it closes before "
        "2026-03"
    )
    _close(store, "2026-01")
    _close(store, "2026-03")  # February was never used: it has nothing to close
    # A run as of January (a deliberate rerun) takes March's sale back out of Q1: the reversal
    # goes after the latest closed period, not into February, which comes before it.
    back = _accrue(store, "2026-01-31", rewind=True)
    assert back.net_change == Decimal("-200.00")
    assert _entries(store, back.run_id) == [("adjustment", "2026-04", dt.date(2026, 4, 1))]
    # February closed with March: closing it now would date its close after later runs, so
    # it is refused, and no period is made for it; closing March again says it is closed.
    _close(store, "2026-04")
    with pytest.raises(PeriodError) as refused:
        _close(store, "2026-02")
    assert str(refused.value) == (
        "accounting period 2026-02 closed already, with 2026-03: nothing posts before a closed "
        "period"
    )
    with pytest.raises(PeriodError) as refused:
        _close(store, "2026-03")
    assert str(refused.value) == "accounting period 2026-03 is closed already"
    with store.work() as session:
        february = session.scalar(
            select(AccountingPeriod).where(AccountingPeriod.code == "2026-02")
        )
        assert february is None


def test_the_audit_chains_lock_is_taken_last(store: Store) -> None:
    with store.work() as session:
        serialize(session, Lock.PERIODS, shared=True)
        record(
            session,
            type="test.locked",
            actor="fin",
            entity_type="test",
            entity_id=1,
            inputs={},
            outcome={},
            now=NOW,
        )
        serialize(session, Lock.PERIODS, shared=True)  # held already: nothing to wait for
        with pytest.raises(LockOrderError, match="ACCRUAL asked for after the audit chain's"):
            serialize(session, Lock.ACCRUAL)
    with store.work() as session:  # a new transaction holds nothing
        serialize(session, Lock.ACCRUAL)


def test_two_first_uses_of_a_month_open_it_once(store: Store) -> None:
    first = store.sessions()
    first.begin()
    opened = ensure_period(first, dt.date(2026, 5, 20))
    second = _InThread(
        lambda: _in_unit(store, lambda s, _who: ensure_period(s, dt.date(2026, 5, 1)).id, "fay")
    )
    assert second.waits()
    first.commit()
    first.close()
    second.finish()
    assert (second.refusal, second.result) == (None, opened.id)


def test_two_terminations_of_one_agreement_make_one(store: Store, tmp_path: Path) -> None:
    _setup(store, tmp_path)
    second = _twice(
        store,
        lambda session, who: terminate(
            session,
            "A1",
            on=dt.date(2026, 7, 1),
            reason=f"ended by {who}",
            actor=staff(who),
            now=NOW,
        ),
    )
    assert str(second.refusal) == "agreement A1 is terminated, not active"
    assert _events(store, "agreement.terminated") == [("agreement.terminated", "A1", "fin")]


def test_a_run_that_expires_an_agreement_and_a_payout_both_open_the_month(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _world(store, tmp_path)
    settlement = world.propose()
    assert world.approve(settlement, "amy") == "approved"
    with store.work() as session:  # its term has ended: the run expires it, with an event
        ended = add_version(
            session, percent_agreement("A2", end="2026-07-01"), actor=staff("ann"), now=NOW
        )
        activate(session, ended.id, now=NOW)
    world.sales(("L9", "C2", "P1", "2026-10-11", "1", "500.00"))  # the run has a delta
    at_post, go_on = threading.Event(), threading.Event()
    post = ledger_service._post

    def pause_then_post(*args: Any, **kwargs: Any) -> Any:
        at_post.set()
        assert go_on.wait(WAIT)
        return post(*args, **kwargs)

    monkeypatch.setattr(ledger_service, "_post", pause_then_post)
    run = _InThread(lambda: world.accrue(NOW.date().isoformat()))
    assert at_post.wait(WAIT)
    pay = _InThread(lambda: world.pay(settlement, document_number="CN-1", key="k1"))
    assert pay.waits()  # for the run, which holds the audit chain since its expiry event
    go_on.set()
    run.finish()
    pay.finish()
    assert (run.refusal, pay.refusal) == (None, None)
    with store.work() as session:
        months = session.scalars(select(AccountingPeriod.code).order_by(AccountingPeriod.code))
        assert list(months) == ["2026-03", "2026-11"]


def test_a_run_does_not_overwrite_a_termination_made_meanwhile(
    store: Store, tmp_path: Path
) -> None:
    _setup(store, tmp_path, percent_agreement("A2", end="2026-11-27"))
    terminating = store.sessions()
    terminating.begin()
    terminate(
        terminating, "A2", on=dt.date(2026, 11, 20), reason="breach", actor=staff("fin"), now=NOW
    )
    run = _InThread(lambda: _accrue(store, NOW.date().isoformat()))
    assert run.waits()  # on the agreement's row
    terminating.commit()
    terminating.close()
    run.finish()
    with store.work() as session:
        status = session.scalar(select(AgreementRecord.status).where(AgreementRecord.code == "A2"))
        assert status == "terminated"
    assert _events(store, "agreement.expired") == []


def test_two_disablings_of_a_user_or_revocations_of_a_delegation_make_one(store: Store) -> None:
    with store.work() as session:
        people(session, NOW)
        granted = delegate(
            session,
            delegator="amy",
            delegate_to="abe",
            valid_from=NOW.date(),
            valid_to=NOW.date() + dt.timedelta(days=30),
            reason="leave",
            actor=staff("admin"),
            now=NOW,
        ).id
    second = _twice(
        store,
        lambda session, who: disable_user(
            session, "sam", reason=f"left ({who})", actor=staff(who), now=NOW
        ),
    )
    assert str(second.refusal) == "user sam is disabled already"
    assert _events(store, "user.disabled") == [("user.disabled", "sam", "fin")]
    second = _twice(
        store, lambda session, who: revoke_delegation(session, granted, actor=staff(who), now=NOW)
    )
    assert str(second.refusal) == f"delegation {granted} is revoked already"
    assert [a for _, _, a in _events(store, "user.delegation.revoked")] == ["fin"]
