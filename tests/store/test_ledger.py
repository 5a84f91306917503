"""Accrual runs and the journal: deltas to the cent, re-runs that post nothing, voids that
reverse exactly, closed periods adjusted in the next open one, GL export that ties out."""

from __future__ import annotations

import csv
import datetime as dt
import threading
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from fanli.agreements.service import AgreementError, add_version, terminate
from fanli.agreements.terms import Agreement
from fanli.kit.errors import FanliError, InputError
from fanli.ledger.export import ChartOfAccounts, csv_amount, export_gl
from fanli.ledger.models import (
    AccountingPeriod,
    AccrualRun,
    JournalEntry,
    JournalLine,
    RebatePeriod,
)
from fanli.ledger.periods import PeriodError, close_period
from fanli.ledger.queries import account_movements, latest_results, liabilities
from fanli.ledger.service import RunSummary, accrue
from fanli.sales.service import import_customers, import_products, import_sales, void_batch
from fanli.sales.store import FactStore
from store.builders import (
    activate,
    customers_file,
    percent_agreement,
    products_file,
    sales_file,
    staff,
    write_csv,
)
from store.conftest import NOW, Store
from store.replay import adjustments_held, from_scratch, late_effect_from_scratch

D = Decimal


def _setup(store: Store, directory: Path, *agreements: Agreement) -> None:
    with store.work() as session:
        import_customers(
            session, store.facts, customers_file(directory), actor=staff("ann"), now=NOW
        )
        import_products(session, store.facts, products_file(directory), actor=staff("ann"), now=NOW)
        for terms in agreements or (percent_agreement(),):
            version = add_version(session, terms, actor=staff("ann"), now=NOW)
            activate(session, version.id, now=NOW)


def _sales(store: Store, directory: Path, name: str, *lines: tuple[str, ...]) -> int:
    with store.work() as session:
        return import_sales(
            session, store.facts, sales_file(directory, name, lines), actor=staff("ann"), now=NOW
        ).batch_id


def _accrue(store: Store, as_of: str, *, rewind: bool = False) -> RunSummary:
    with store.work() as session:
        return accrue(
            session,
            store.facts,
            as_of=dt.date.fromisoformat(as_of),
            actor=staff("fin"),
            now=NOW,
            rewind=rewind,
        )


def _held(store: Store) -> dict[tuple[str, int], Decimal]:
    """Liability per beneficiary x period index (one agreement version in these tests)."""
    with store.work() as session:
        return {(b, p): amount for (_, b, p), amount in sorted(liabilities(session).items())}


def _check_invariants(store: Store) -> None:
    with store.work() as session:
        assert liabilities(session) == latest_results(session, store.facts)


def test_a_run_posts_the_liability_and_a_rerun_posts_nothing(store: Store, tmp_path: Path) -> None:
    _setup(store, tmp_path)
    _sales(
        store,
        tmp_path,
        "s1.csv",
        ("L1", "C1", "P1", "2026-01-10", "10", "10000.00"),
        ("L2", "C2", "P1", "2026-02-10", "5", "5000.00"),
        ("L3", "C1", "P2", "2026-04-05", "1", "1000.00"),
    )
    first = _accrue(store, "2026-04-30")
    assert (first.results_stored, first.lines_posted, first.net_change) == (3, 3, D("320.0000"))
    assert _held(store) == {
        ("C1", 1): D("200.0000"),
        ("C1", 2): D("20.0000"),
        ("C2", 1): D("100.0000"),
    }
    with store.work() as session:
        entry = session.scalars(select(JournalEntry)).one()
        assert (entry.kind, entry.entry_date, entry.run_id) == (
            "accrual",
            dt.date(2026, 4, 30),
            first.run_id,
        )
        c1_q1 = session.execute(
            select(JournalLine.debit_account, JournalLine.credit_account, JournalLine.amount).where(
                JournalLine.beneficiary == "C1", JournalLine.period_index == 1
            )
        ).all()
        assert c1_q1 == [("rebate_contra_revenue", "rebate_liability", D("200.0000"))]
    again = _accrue(store, "2026-04-30")
    assert (again.rerated, again.lines_posted, again.net_change) == ((), 0, D(0))
    _check_invariants(store)


def test_a_new_batch_posts_its_delta_and_a_void_reverses_it_exactly(
    store: Store, tmp_path: Path
) -> None:
    _setup(store, tmp_path)
    _sales(store, tmp_path, "s1.csv", ("L1", "C1", "P1", "2026-01-10", "10", "10000.00"))
    _accrue(store, "2026-04-30")
    late = _sales(store, tmp_path, "s2.csv", ("L4", "C1", "P1", "2026-03-15", "2", "2500.00"))
    added = _accrue(store, "2026-04-30")
    assert (added.rerated, added.lines_posted, added.net_change) == (("A1 v1",), 1, D("50.0000"))
    assert _held(store) == {("C1", 1): D("250.0000")}
    with store.work() as session:
        void_batch(
            session, store.facts, late, reason="duplicate export", actor=staff("ann"), now=NOW
        )
    voided = _accrue(store, "2026-04-30")
    assert (voided.lines_posted, voided.net_change) == (1, D("-50.0000"))
    assert _held(store) == {("C1", 1): D("200.0000")}
    with store.work() as session:
        reversal = session.execute(
            select(JournalLine.debit_account, JournalLine.credit_account, JournalLine.amount)
            .join(JournalEntry)
            .where(JournalEntry.run_id == voided.run_id)
        ).all()
    assert reversal == [("rebate_liability", "rebate_contra_revenue", D("50.0000"))]
    _check_invariants(store)


def test_only_touched_agreements_are_rerated(store: Store, tmp_path: Path) -> None:
    _setup(
        store,
        tmp_path,
        percent_agreement("A1"),
        percent_agreement("OLD", start="2025-01-01", end="2026-01-01", rate="1"),
    )
    _sales(
        store,
        tmp_path,
        "s1.csv",
        ("L1", "C1", "P1", "2025-06-10", "1", "1000.00"),
        ("L2", "C1", "P1", "2026-01-10", "1", "1000.00"),
    )
    assert _accrue(store, "2026-04-30").rerated == ("A1 v1", "OLD v1")
    _sales(store, tmp_path, "s2.csv", ("L3", "C2", "P1", "2026-04-20", "1", "100.00"))
    assert _accrue(store, "2026-04-30").rerated == ("A1 v1",)
    # A later as-of date re-rates the customers with lines dated since the last one: none here.
    assert _accrue(store, "2026-05-31").rerated == ()
    _sales(store, tmp_path, "s3.csv", ("L4", "C3", "P1", "2026-06-20", "1", "100.00"))
    _accrue(store, "2026-06-10")  # C3's line is dated after this as-of date: it does not count
    daily = _accrue(store, "2026-06-30")  # now it does, and only C3 is re-rated
    assert daily.rerated == ("A1 v1",)
    with store.work() as session:
        run = session.get(AccrualRun, daily.run_id)
        assert run is not None
        assert (run.inputs["rerated"], run.inputs["customers"]) == ([], ["C3"])
    _check_invariants(store)


def test_a_new_version_counts_only_sales_from_its_effective_date(
    store: Store, tmp_path: Path
) -> None:
    _setup(store, tmp_path)
    _sales(
        store,
        tmp_path,
        "s1.csv",
        ("L1", "C1", "P1", "2026-03-31", "1", "10000.00"),
        ("L2", "C1", "P1", "2026-04-01", "1", "1000.00"),
    )
    _accrue(store, "2026-04-30")
    assert _held(store) == {("C1", 1): D("200.0000"), ("C1", 2): D("20.0000")}
    with store.work() as session:
        version = add_version(
            session,
            percent_agreement(rate="3", effective_from="2026-04-01"),
            actor=staff("ann"),
            now=NOW,
        )
        activate(session, version.id, now=NOW)
    run = _accrue(store, "2026-04-30")
    assert run.rerated == ("A1 v1", "A1 v2")
    with store.work() as session:
        held = sorted(liabilities(session).items())
    assert [(key[1], key[2], amount) for key, amount in held] == [
        ("C1", 1, D("200.0000")),  # v1: the March sale only
        ("C1", 2, D("30.0000")),  # v2: 3% of the April sale
    ]
    assert run.net_change == D("10.0000")  # v1 Q2 20.00 reversed, v2 Q2 30.00 posted
    _check_invariants(store)


def test_expected_accrual_posts_the_cumulative_catch_up(store: Store, tmp_path: Path) -> None:
    terms = percent_agreement(
        tiers=[{"from": "0", "to": "10000", "rate": "1"}, {"from": "10000", "rate": "3"}],
        accrual={"mode": "expected"},
    )
    _setup(store, tmp_path, terms)
    _sales(store, tmp_path, "s1.csv", ("L1", "C1", "P1", "2026-01-10", "1", "4000.00"))
    # 30 of Q1's 90 days: 4,000 projects to 12,000, band 2 (3%): 360.00 x 30/90 = 120.00.
    assert _accrue(store, "2026-01-30").net_change == D("120.0000")
    _sales(store, tmp_path, "s2.csv", ("L2", "C1", "P1", "2026-02-20", "1", "1000.00"))
    # 59 days: 5,000 projects to 7,627.12, band 1 (1%): 1% x 5,000 = 50.00; catch-up -70.00.
    catch_up = _accrue(store, "2026-02-28")
    assert catch_up.net_change == D("-70.0000")
    assert _held(store) == {("C1", 1): D("50.0000")}
    # The quarter has ended: the actual rebate, which is the same 50.00.
    assert _accrue(store, "2026-04-10").net_change == D(0)
    _check_invariants(store)


def test_a_late_sale_in_a_closed_period_is_an_adjustment_in_the_next_open_one(
    store: Store, tmp_path: Path
) -> None:
    _setup(store, tmp_path)
    _sales(store, tmp_path, "s1.csv", ("L1", "C1", "P1", "2026-01-10", "1", "10000.00"))
    before_close = _accrue(store, "2026-03-31")
    with store.work() as session:
        for month in ("2026-01", "2026-02", "2026-03"):
            closed = close_period(session, month, actor=staff("fin"), now=NOW)
            # the period's results are frozen as they stood after this run
            assert closed.closed_after_run_id == before_close.run_id
    with store.work() as session, pytest.raises(PeriodError, match="closed already"):
        close_period(session, "2026-03", actor=staff("fin"), now=NOW)
    # A month still running, or to come, cannot be closed; nothing is stored by trying.
    for month in ("2026-11", "2027-01"):
        with store.work() as session, pytest.raises(PeriodError, match="can be closed from"):
            close_period(session, month, actor=staff("fin"), now=NOW)
    with store.work() as session:
        months = AccountingPeriod.code.in_(["2026-11", "2027-01"])
        assert session.scalars(select(AccountingPeriod.code).where(months)).all() == []
        last_day = dt.datetime(2026, 11, 30, 23, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
        with pytest.raises(
            PeriodError, match="runs until 2026-11-30: it can be closed from 2026-12-01"
        ):
            close_period(session, "2026-11", actor=staff("fin"), now=last_day)
    with store.work() as session:
        march = [
            (line.debit_account, line.credit_account, line.amount)
            for line in session.scalars(select(JournalLine).order_by(JournalLine.id))
        ]
    _sales(store, tmp_path, "s2.csv", ("L2", "C2", "P1", "2026-02-20", "1", "1000.00"))
    run = _accrue(store, "2026-03-31")  # dated in a closed period: posted in April
    assert run.net_change == D("20.0000")
    with store.work() as session:
        entry = session.scalars(select(JournalEntry).where(JournalEntry.run_id == run.run_id)).one()
        period = session.get(AccountingPeriod, entry.accounting_period_id)
        assert period is not None
        assert (entry.kind, period.code, entry.entry_date) == (
            "adjustment",
            "2026-04",
            dt.date(2026, 4, 1),
        )
        assert "closed periods" in entry.memo
        unchanged = [
            (line.debit_account, line.credit_account, line.amount)
            for line in session.scalars(
                select(JournalLine)
                .join(JournalEntry)
                .where(JournalEntry.run_id != run.run_id)
                .order_by(JournalLine.id)
            )
        ]
    assert unchanged == march
    _check_invariants(store)


def _posted(store: Store, run_id: int) -> dict[tuple[str, str, int], Decimal]:
    """What a run moved on the liability, per entry kind x beneficiary x period index."""
    with store.work() as session:
        rows = session.execute(
            select(
                JournalEntry.kind,
                JournalLine.beneficiary,
                JournalLine.period_index,
                JournalLine.credit_account,
                JournalLine.amount,
            )
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .where(JournalEntry.run_id == run_id)
        ).all()
    moved: dict[tuple[str, str, int], Decimal] = {}
    for kind, beneficiary, period, credited, amount in rows:
        signed = amount if credited == "rebate_liability" else -amount
        moved[(kind, beneficiary, period)] = moved.get((kind, beneficiary, period), D(0)) + signed
    return moved


def _close(store: Store, *months: str) -> None:
    for month in months:
        with store.work() as session:
            close_period(session, month, actor=staff("fin"), now=NOW)


def test_sales_of_an_open_month_accrue_as_accruals_though_their_quarter_has_a_closed_month(
    store: Store, tmp_path: Path
) -> None:
    _setup(store, tmp_path)
    _sales(store, tmp_path, "s1.csv", ("L1", "C1", "P1", "2026-01-10", "1", "10000.00"))
    assert _posted(store, _accrue(store, "2026-01-31").run_id) == {
        ("accrual", "C1", 1): D("200.0000")
    }
    _close(store, "2026-01")
    _sales(store, tmp_path, "s2.csv", ("L2", "C1", "P1", "2026-02-10", "1", "5000.00"))
    february = _accrue(store, "2026-02-28")
    # February's sale: 2% of 5,000.00, an accrual in February (before, the whole quarter's
    # change had been labelled an adjustment once January closed)
    assert _posted(store, february.run_id) == {("accrual", "C1", 1): D("100.0000")}
    _check_invariants(store)


def test_a_late_sale_and_a_current_one_split_into_adjustment_and_accrual_at_the_margin(
    store: Store, tmp_path: Path
) -> None:
    # a retroactive tier: 1% of the quarter's net below 10,000.00, 3% of all of it from there
    tiers = [{"from": "0", "to": "10000", "rate": "1"}, {"from": "10000", "rate": "3"}]
    _setup(store, tmp_path, percent_agreement(tiers=tiers))
    _sales(store, tmp_path, "s1.csv", ("L1", "C1", "P1", "2026-01-10", "1", "8000.00"))
    assert _accrue(store, "2026-01-31").net_change == D("80.0000")
    _close(store, "2026-01")
    late = _sales(store, tmp_path, "s2.csv", ("L2", "C1", "P1", "2026-01-20", "1", "1000.00"))
    _sales(store, tmp_path, "s3.csv", ("L3", "C1", "P1", "2026-02-10", "1", "2000.00"))
    both = _accrue(store, "2026-02-28")
    # With L2: 3% of 11,000.00 = 330.00. As January closed (without L2): 3% of 10,000.00 =
    # 300.00. February's sale accrues 300.00 - 80.00; the late sale adjusts by 30.00.
    assert both.net_change == D("250.0000")
    assert _posted(store, both.run_id) == {
        ("accrual", "C1", 1): D("220.0000"),
        ("adjustment", "C1", 1): D("30.0000"),
    }
    with store.work() as session:
        run = session.get(AccrualRun, both.run_id)
        assert run is not None
        assert run.inputs["closed_periods"] == {"2026-01": both.run_id - 1}
        assert run.inputs["late"] == {"batches": [late], "customers": ["C1"], "versions": [1]}
    # Another February sale: 3% of 12,000.00 = 360.00, as closed 330.00; the late sale's
    # effect is still 30.00, so all of the change is an accrual.
    _sales(store, tmp_path, "s4.csv", ("L4", "C1", "P1", "2026-02-20", "1", "1000.00"))
    more = _accrue(store, "2026-02-28")
    assert _posted(store, more.run_id) == {("accrual", "C1", 1): D("30.0000")}
    # Voiding the late sale takes back its adjustment and nothing else.
    with store.work() as session:
        void_batch(session, store.facts, late, reason="sent twice", actor=staff("ann"), now=NOW)
    voided = _accrue(store, "2026-02-28")
    assert _posted(store, voided.run_id) == {("adjustment", "C1", 1): D("-30.0000")}
    assert _held(store) == {("C1", 1): D("330.0000")}
    _check_invariants(store)


def test_voiding_a_batch_a_closed_month_counted_is_an_adjustment(
    store: Store, tmp_path: Path
) -> None:
    _setup(store, tmp_path)
    january = _sales(store, tmp_path, "s1.csv", ("L1", "C1", "P1", "2026-01-10", "1", "10000.00"))
    _accrue(store, "2026-01-31")
    _close(store, "2026-01")
    with store.work() as session:
        void_batch(
            session, store.facts, january, reason="wrong customer", actor=staff("ann"), now=NOW
        )
    _sales(store, tmp_path, "s2.csv", ("L2", "C1", "P1", "2026-02-10", "1", "5000.00"))
    run = _accrue(store, "2026-02-28")
    # Now 2% of 5,000.00 = 100.00; as closed (January's batch still counted) 2% of 15,000.00
    # = 300.00: February accrues 100.00 and the void reverses January's 200.00.
    assert _posted(store, run.run_id) == {
        ("accrual", "C1", 1): D("100.0000"),
        ("adjustment", "C1", 1): D("-200.0000"),
    }
    assert _held(store) == {("C1", 1): D("100.0000")}
    _check_invariants(store)


def _posted_by_agreement(store: Store, run_id: int) -> dict[tuple[str, str, int], Decimal]:
    """What a run moved on the liability, per agreement x entry kind x period index."""
    with store.work() as session:
        rows = session.execute(
            select(
                RebatePeriod.agreement_code,
                JournalEntry.kind,
                JournalLine.period_index,
                JournalLine.credit_account,
                JournalLine.amount,
            )
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .join(RebatePeriod, RebatePeriod.of(JournalLine))
            .where(JournalEntry.run_id == run_id)
        ).all()
    moved: dict[tuple[str, str, int], Decimal] = {}
    for code, kind, period, credited, amount in rows:
        signed = amount if credited == "rebate_liability" else -amount
        moved[(code, kind, period)] = moved.get((code, kind, period), D(0)) + signed
    return moved


def test_a_programme_approved_after_a_close_accrues_the_closed_month_as_it_stands(
    store: Store, tmp_path: Path
) -> None:
    """A closed month held nothing of a programme approved after it closed: a void before
    the programme's first run is no late change for it, only for the programmes the month
    held. A late sale after its first run is one for both (ADR 0010)."""
    _setup(store, tmp_path)
    _sales(store, tmp_path, "s1.csv", ("L1", "C1", "P1", "2026-01-10", "1", "10000.00"))
    wrong = _sales(store, tmp_path, "s2.csv", ("L2", "C1", "P1", "2026-01-20", "1", "5000.00"))
    assert _accrue(store, "2026-01-31").net_change == D("300.0000")  # A1: 2% of 15,000.00
    _close(store, "2026-01")
    with store.work() as session:
        void_batch(session, store.facts, wrong, reason="sent twice", actor=staff("ann"), now=NOW)
        b1 = percent_agreement("B1", rate="1")
        version = add_version(session, b1, actor=staff("ann"), now=NOW)
        activate(session, version.id, now=NOW)
    first = _accrue(store, "2026-02-28")
    # A1 held 300.00 for January: the void takes back 100.00 of it, as an adjustment. B1 held
    # nothing: its first run accrues 1% of the 10,000.00 that counts, 100.00, all of it an
    # accrual (it had been 150.00 accrued and 50.00 "adjusted" for a void B1 never held).
    assert _posted_by_agreement(store, first.run_id) == {
        ("A1", "adjustment", 1): D("-100.0000"),
        ("B1", "accrual", 1): D("100.0000"),
    }
    _sales(store, tmp_path, "s3.csv", ("L3", "C1", "P1", "2026-01-25", "1", "2000.00"))
    late = _accrue(store, "2026-03-31")
    # January's sales as B1 first held them (the run as of 28 February) lacked L3: late for
    # both programmes.
    assert _posted_by_agreement(store, late.run_id) == {
        ("A1", "adjustment", 1): D("40.0000"),
        ("B1", "adjustment", 1): D("20.0000"),
    }
    _check_invariants(store)
    with store.work() as session:
        assert adjustments_held(session) == late_effect_from_scratch(
            session, store.facts, dt.date(2026, 3, 31)
        )


def test_a_programmes_first_run_back_in_time_still_held_the_lines_it_could_read(
    store: Store, tmp_path: Path
) -> None:
    """A programme's first run as of a day inside a closed month (a rewind) cut the month's
    lines at that day; a line already imported then is no late change for it later."""
    _setup(store, tmp_path)
    _sales(
        store,
        tmp_path,
        "s1.csv",
        ("L1", "C1", "P1", "2026-01-10", "1", "10000.00"),
        ("L2", "C1", "P1", "2026-01-25", "1", "5000.00"),
    )
    _accrue(store, "2026-01-31")
    _close(store, "2026-01")
    with store.work() as session:
        version = add_version(
            session, percent_agreement("B1", rate="1"), actor=staff("ann"), now=NOW
        )
        activate(session, version.id, now=NOW)
    back = _accrue(store, "2026-01-15", rewind=True)  # B1's first run: L1 only
    assert _posted_by_agreement(store, back.run_id)[("B1", "accrual", 1)] == D("100.0000")
    again = _accrue(store, "2026-02-28")
    # L2 was imported before B1's first run: its 50.00 is an accrual for B1, as L2 is for A1.
    assert _posted_by_agreement(store, again.run_id) == {
        ("A1", "accrual", 1): D("100.0000"),
        ("B1", "accrual", 1): D("50.0000"),
    }
    _check_invariants(store)
    with store.work() as session:
        assert adjustments_held(session) == late_effect_from_scratch(
            session, store.facts, dt.date(2026, 2, 28)
        )


def test_a_line_the_closing_run_had_not_reached_adjusts_the_closed_month(
    store: Store, tmp_path: Path
) -> None:
    _setup(store, tmp_path)
    _sales(
        store,
        tmp_path,
        "s1.csv",
        ("L1", "C1", "P1", "2026-01-10", "1", "1000.00"),
        ("L2", "C1", "P1", "2026-01-25", "1", "2000.00"),
        ("L3", "C2", "P1", "2026-01-25", "1", "4000.00"),
    )
    assert _accrue(store, "2026-01-15").net_change == D("20.0000")  # L1 only
    _close(store, "2026-01")  # January closes with the run as of the 15th
    run = _accrue(store, "2026-02-28")
    # L2 and L3 were dated in January after the closing run's day: January closed without them.
    assert _posted(store, run.run_id) == {
        ("adjustment", "C1", 1): D("40.0000"),
        ("adjustment", "C2", 1): D("80.0000"),
    }
    _check_invariants(store)


def test_a_pool_adjusts_for_a_members_late_sale(store: Store, tmp_path: Path) -> None:
    _setup(store, tmp_path, percent_agreement(parties={"counterparty": "C1", "members": ["C2"]}))
    _sales(
        store,
        tmp_path,
        "s1.csv",
        ("L1", "C1", "P1", "2026-01-10", "1", "10000.00"),
        ("L2", "C2", "P1", "2026-01-12", "1", "5000.00"),
    )
    assert _posted(store, _accrue(store, "2026-01-31").run_id) == {
        ("accrual", "C1", 1): D("300.0000")
    }
    _close(store, "2026-01")
    _sales(store, tmp_path, "s2.csv", ("L3", "C2", "P1", "2026-01-30", "1", "1000.00"))
    _sales(store, tmp_path, "s3.csv", ("L4", "C1", "P1", "2026-02-03", "1", "500.00"))
    run = _accrue(store, "2026-02-28")
    # the pool pays C1 on both members' lines: the member's late 1,000.00 is an adjustment
    assert _posted(store, run.run_id) == {
        ("accrual", "C1", 1): D("10.0000"),
        ("adjustment", "C1", 1): D("20.0000"),
    }
    _check_invariants(store)


def _dated_sales(store: Store, directory: Path, name: str, *lines: tuple[str, ...]) -> int:
    """Sales lines with their order, invoice and paid dates."""
    header = ("line_id", "customer_id", "product_id", "order_date", "invoice_date", "paid_date")
    path = write_csv(directory / name, (*header, "quantity", "net_amount"), lines)
    with store.work() as session:
        return import_sales(session, store.facts, path, actor=staff("ann"), now=NOW).batch_id


def test_a_line_is_dated_by_the_event_its_agreement_counts(store: Store, tmp_path: Path) -> None:
    # One programme counts orders, one counts payments; both 2% a quarter.
    _setup(
        store,
        tmp_path,
        percent_agreement("O1", eligibility={"event": "order"}),
        percent_agreement("P1", eligibility={"event": "paid_invoice"}),
    )
    _dated_sales(
        store,
        tmp_path,
        "s1.csv",
        # ordered on 10 January, invoiced on the 25th, paid on the 28th
        ("L1", "C1", "P1", "2026-01-10", "2026-01-25", "2026-01-28", "1", "10000.00"),
    )
    first = _accrue(store, "2026-01-20")  # the order counts; the payment has not come
    assert _posted(store, first.run_id) == {("accrual", "C1", 1): D("200.0000")}
    _close(store, "2026-01")  # January closes with the run as of the 20th
    _dated_sales(
        store,
        tmp_path,
        "s2.csv",
        ("L2", "C2", "P1", "2026-02-10", "2026-02-10", "2026-02-12", "1", "5000.00"),
    )
    run = _accrue(store, "2026-02-28")
    with store.work() as session:
        # (a Result has keys(): dict() would take it for a mapping)
        codes = dict(
            session.execute(select(RebatePeriod.version_id, RebatePeriod.agreement_code)).all()
        )
        moved = session.execute(
            select(JournalLine.version_id, JournalEntry.kind, JournalLine.beneficiary)
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .where(JournalEntry.run_id == run.run_id)
        ).all()
    # The order was counted when January closed: O1's C1 is unchanged. The payment on the
    # 28th came after the closing run's day: P1's 200.00 for C1 adjusts the closed month.
    # C2's February sale accrues in both.
    assert sorted((codes[v], kind, who) for v, kind, who in moved) == [
        ("O1", "accrual", "C2"),
        ("P1", "accrual", "C2"),
        ("P1", "adjustment", "C1"),
    ]
    assert run.adjusted == D("200.0000")
    assert run.net_change == D("400.0000")
    _check_invariants(store)


def test_a_prior_year_baseline_line_adjusts_no_closed_period(store: Store, tmp_path: Path) -> None:
    growth = percent_agreement(
        tiers=[{"from": "0", "to": "100", "rate": "0"}, {"from": "100", "rate": "5"}],
        growth={"baseline": "prior_year", "mode": "whole_basis"},
    )
    _setup(store, tmp_path, growth)
    _sales(
        store,
        tmp_path,
        "s1.csv",
        ("L1", "C1", "P1", "2025-02-10", "1", "1000.00"),  # the baseline
        ("L2", "C1", "P1", "2026-02-10", "1", "1500.00"),
    )
    _accrue(store, "2025-02-05")
    _close(store, "2025-02")  # February 2025 closes before its run reached L1
    run = _accrue(store, "2026-03-31")
    # 1,500.00 is 150% of the baseline: 5% of it, for the first quarter of 2026, which no
    # closed period held; L1 is late for February 2025, not for 2026's rebate.
    assert _posted(store, run.run_id) == {("accrual", "C1", 1): D("75.0000")}
    _check_invariants(store)


def test_a_late_batch_is_not_read_again_for_customers_the_run_does_not_rate(
    store: Store, tmp_path: Path
) -> None:
    _setup(store, tmp_path)
    _sales(store, tmp_path, "s1.csv", ("L1", "C1", "P1", "2026-01-10", "1", "10000.00"))
    _accrue(store, "2026-01-31")
    _close(store, "2026-01")
    late = _sales(store, tmp_path, "s2.csv", ("L2", "C1", "P1", "2026-01-20", "1", "1000.00"))
    adjusting = _accrue(store, "2026-02-28")
    assert _posted(store, adjusting.run_id) == {("adjustment", "C1", 1): D("20.0000")}
    _close(store, "2026-02", "2026-03", "2026-04", "2026-05")
    _sales(store, tmp_path, "s3.csv", ("L3", "C2", "P1", "2026-06-10", "1", "500.00"))
    later = _accrue(store, "2026-06-30")  # months later, another customer's June sale
    assert _posted(store, later.run_id) == {("accrual", "C2", 2): D("10.0000")}
    with store.work() as session:
        runs = {run.id: run.inputs for run in session.scalars(select(AccrualRun))}
    assert runs[adjusting.run_id]["late"] == {
        "batches": [late],
        "customers": ["C1"],
        "versions": [1],
    }
    assert "late" not in runs[later.run_id]
    _check_invariants(store)


def test_gl_export_ties_out(store: Store, tmp_path: Path) -> None:
    _setup(store, tmp_path)
    batch = _sales(
        store,
        tmp_path,
        "s1.csv",
        ("L1", "C1", "P1", "2026-01-10", "1", "10000.00"),
        ("L2", "C2", "P1", "2026-02-10", "1", "5000.55"),
    )
    _accrue(store, "2026-03-31")
    with store.work() as session:
        void_batch(
            session, store.facts, batch, reason="wrong customer", actor=staff("ann"), now=NOW
        )
    _sales(store, tmp_path, "s2.csv", ("L1", "C1", "P1", "2026-01-10", "1", "9000.00"))
    _accrue(store, "2026-03-31")
    chart = ChartOfAccounts(
        accounts={
            "rebate_contra_revenue": "6001.05",
            "rebate_liability": "2241.01",
            "accounts_receivable": "1122",
            "bank": "1002",
            "rebate_balance": "2241.02",
        },
        cost_centre="SALES-EAST",
    )
    with store.work() as session:
        csv_export = export_gl(
            session,
            store.facts,
            "2026-03",
            tmp_path / "gl-2026-03.csv",
            chart=chart,
            actor=staff("fin"),
            now=NOW,
        )
        movements = account_movements(session, "2026-03")
        # a code that names no month is said to be one, not a period not yet opened
        with pytest.raises(InputError) as raised:
            export_gl(
                session, store.facts, "2026-13", tmp_path / "x.csv", actor=staff("fin"), now=NOW
            )
        assert str(raised.value) == "'2026-13' is not an accounting period (YYYY-MM)"
        xlsx_export = export_gl(
            session,
            store.facts,
            "2026-03",
            tmp_path / "gl-2026-03.xlsx",
            chart=chart,
            actor=staff("fin"),
            now=NOW,
        )
    # Run 1: C1 200.00 + C2 100.01 (2% of 5,000.55 = 100.011, half-up) posted.
    # Run 2: C1 200.00 -> 180.00 (-20.00), C2 100.01 -> 0 (-100.01).
    assert movements == {
        "CNY": {
            "rebate_contra_revenue": (D("300.0100"), D("120.0100")),
            "rebate_liability": (D("120.0100"), D("300.0100")),
        }
    }
    assert csv_export.totals == {"CNY": (D("420.0200"), D("420.0200"))}
    assert csv_export.by_account == {
        ("6001.05", "CNY"): movements["CNY"]["rebate_contra_revenue"],
        ("2241.01", "CNY"): movements["CNY"]["rebate_liability"],
    }
    rows = (tmp_path / "gl-2026-03.csv").read_text(encoding="utf-8-sig").splitlines()
    assert len(rows) == 1 + 8 + 1
    # amounts with two places, as the sheet shows them (the ledger holds four)
    assert rows[-1].startswith("total,,2026-03,,,,420.02,420.02,CNY,")
    first = rows[1].split(",")
    assert first[4:12] == [
        "6001.05",
        "rebate_contra_revenue",
        "200.00",
        "0.00",
        "CNY",
        "SALES-EAST",
        "C1",
        "上海华东食品贸易有限公司",
    ]
    # The rebate period as the screens show it: Q1 runs to its last day, 31 March.
    assert rows[0].split(",")[12:15] == [
        "agreement",
        "rebate_period_start",
        "rebate_period_last_day",
    ]
    assert first[12:15] == ["A1", "2026-01-01", "2026-03-31"]
    sheet = load_workbook(tmp_path / "gl-2026-03.xlsx").active
    assert sheet is not None
    assert xlsx_export.rows == 8
    assert [sheet.cell(row=10, column=c).value for c in (1, 7, 8, 9)] == [
        "total",
        420.02,
        420.02,
        "CNY",
    ]
    # days as dates and amounts as numbers with two places, for a GL import to read as such
    first_row = [sheet.cell(row=2, column=c) for c in (2, 7, 14, 15)]
    assert [cell.value for cell in first_row] == [
        dt.datetime(2026, 3, 31),  # noqa: DTZ001 - Excel's dates have no zone
        200,
        dt.datetime(2026, 1, 1),  # noqa: DTZ001
        dt.datetime(2026, 3, 31),  # noqa: DTZ001
    ]
    assert [cell.number_format for cell in first_row] == [
        "yyyy-mm-dd",
        "#,##0.00##",
        "yyyy-mm-dd",
        "yyyy-mm-dd",
    ]
    _check_invariants(store)


def test_a_gl_csv_never_holds_a_formula(store: Store, tmp_path: Path) -> None:
    """A customer's name that begins with = is written so that Excel shows it, never runs it."""
    with store.work() as session:
        rows = [("C1", '=HYPERLINK("http://example.invalid","x")', "", "批发", "华东")]
        import_customers(
            session, store.facts, customers_file(tmp_path, rows), actor=staff("ann"), now=NOW
        )
        import_products(session, store.facts, products_file(tmp_path), actor=staff("ann"), now=NOW)
        activate(
            session,
            add_version(session, percent_agreement(), actor=staff("ann"), now=NOW).id,
            now=NOW,
        )
    _sales(store, tmp_path, "s1.csv", ("L1", "C1", "P1", "2026-03-10", "1", "1000.00"))
    _accrue(store, "2026-03-31")
    with store.work() as session:
        export_gl(session, store.facts, "2026-03", tmp_path / "gl.csv", actor=staff("fin"), now=NOW)
    with (tmp_path / "gl.csv").open(encoding="utf-8-sig", newline="") as stream:
        cells = [cell for row in csv.reader(stream) for cell in row]
    assert '\'=HYPERLINK("http://example.invalid","x")' in cells
    assert not any(cell.startswith("=") for cell in cells)


@pytest.mark.parametrize(
    ("held", "written"),
    [
        ("200.0000", "200.00"),
        ("0.0000", "0.00"),
        ("100.0100", "100.01"),
        ("100.0110", "100.011"),
        ("0.0050", "0.005"),
        ("1234567.8912", "1234567.8912"),
        ("-20.0000", "-20.00"),
    ],
)
def test_gl_csv_amounts_have_two_places_and_any_more_they_hold(held: str, written: str) -> None:
    assert csv_amount(D(held)) == written


def test_a_closed_periods_export_is_the_same_file_after_a_customer_is_renamed(
    store: Store, tmp_path: Path
) -> None:
    _setup(store, tmp_path)
    _sales(store, tmp_path, "s1.csv", ("L1", "C1", "P1", "2026-03-10", "1", "10000.00"))
    _accrue(store, "2026-03-31")

    def export(name: str) -> str:
        with store.work() as session:
            export_gl(session, store.facts, "2026-03", tmp_path / name, actor=staff("fin"), now=NOW)
        return (tmp_path / name).read_text(encoding="utf-8-sig")

    def rename(name: str, legal_name: str) -> None:
        with store.work() as session:
            import_customers(
                session,
                store.facts,
                write_csv(tmp_path / name, ("客户编码", "客户名称"), [("C1", legal_name)]),
                actor=staff("ann"),
                now=NOW,
            )

    rename("open.csv", "上海华东食品有限公司")
    assert export("open.csv.gl").splitlines()[1].split(",")[11] == "上海华东食品有限公司"  # open
    with store.work() as session:
        close_period(session, "2026-03", actor=staff("fin"), now=NOW)
    first = export("first.csv")
    rename("rename.csv", "华东食品集团有限公司")
    assert export("again.csv") == first
    # the names as the run March closed after saw them, as its results are
    assert first.splitlines()[1].split(",")[11] == "上海华东食品贸易有限公司"


def test_the_database_refuses_an_unbalanced_line(store: Store, tmp_path: Path) -> None:
    """A line debits one account and credits another by the same positive amount: CHECK
    constraints make every entry balance by construction. (Posted lines cannot be updated at
    all, so the checks are tried on lines being added.)"""
    _setup(store, tmp_path)
    _sales(store, tmp_path, "s1.csv", ("L1", "C1", "P1", "2026-01-10", "1", "100.00"))
    _accrue(store, "2026-03-31")
    columns = [c.name for c in JournalLine.__table__.columns if c.name != "id"]
    for column, value in (("amount", "0"), ("amount", "-1"), ("credit_account", "debit_account")):
        chosen = ", ".join(value if c == column else c for c in columns)
        with store.engine.connect() as connection, pytest.raises(IntegrityError) as refused:
            connection.execute(
                text(
                    f"INSERT INTO journal_line ({', '.join(columns)}) "
                    f"SELECT {chosen} FROM journal_line"
                )
            )
        assert "append-only" not in str(refused.value)  # refused by the CHECK itself
    with store.work() as session:
        assert session.execute(
            select(JournalLine.debit_account, JournalLine.credit_account, JournalLine.amount)
        ).all() == [("rebate_contra_revenue", "rebate_liability", D("2.0000"))]


# ---- regressions found in review: each compares the journal with a calculation from scratch


def _journal_and_scratch(store: Store, as_of: str) -> tuple[dict, dict]:  # type: ignore[type-arg]
    with store.work() as session:
        return liabilities(session), from_scratch(
            session, store.facts, dt.date.fromisoformat(as_of)
        )


def test_a_guarantee_pays_only_for_periods_of_its_own_version(store: Store, tmp_path: Path) -> None:
    _setup(store, tmp_path, percent_agreement(guarantee={"amount": "100"}))
    _sales(store, tmp_path, "s1.csv", ("L1", "C1", "P1", "2026-02-10", "1", "1000.00"))
    mid_quarter = percent_agreement(guarantee={"amount": "100"}, effective_from="2026-08-15")
    with (
        store.work() as session,
        pytest.raises(AgreementError, match="must take effect at the start of a calculation"),
    ):
        add_version(session, mid_quarter, actor=staff("ann"), now=NOW)
    with store.work() as session:
        version = add_version(
            session,
            percent_agreement(guarantee={"amount": "100"}, effective_from="2026-07-01"),
            actor=staff("ann"),
            now=NOW,
        )
        activate(session, version.id, now=NOW)
    _accrue(store, "2026-06-30")
    _sales(store, tmp_path, "s2.csv", ("L2", "C1", "P1", "2026-08-10", "1", "1000.00"))
    _accrue(store, "2026-09-30")
    journal, scratch = _journal_and_scratch(store, "2026-09-30")
    # v1 (id 1) guarantees Q1 and Q2; v2 (id 2), under which C1 buys again, Q3: 300.00 in all,
    # where paying every version for every started period had given 600.00
    assert journal == scratch
    assert journal == {
        (1, "C1", 1): D("100.0000"),
        (1, "C1", 2): D("100.0000"),
        (2, "C1", 3): D("100.0000"),
    }


def test_a_terminated_guarantee_stops_paying(store: Store, tmp_path: Path) -> None:
    _setup(store, tmp_path, percent_agreement(guarantee={"amount": "100"}))
    _sales(store, tmp_path, "s1.csv", ("L1", "C1", "P1", "2026-02-10", "1", "1000.00"))
    with store.work() as session:
        terminate(
            session, "A1", on=dt.date(2026, 4, 15), reason="ended", actor=staff("ann"), now=NOW
        )
    _accrue(store, "2026-06-30")
    _accrue(store, "2026-09-30")
    journal, scratch = _journal_and_scratch(store, "2026-09-30")
    # Q2 contains the last day; Q3 pays nothing
    assert journal == scratch == {(1, "C1", 1): D("100.0000"), (1, "C1", 2): D("100.0000")}


def test_a_group_change_counts_from_its_date_on(store: Store, tmp_path: Path) -> None:
    """ADR 0012: C1 moves from G1 to G2 on 1 May. Its sales made in G1 keep earning the G1
    programme (Q1 20.00, its April sale 6.00); its sale of 10 May does not count."""
    header = ("customer_id", "name", "group")
    terms = percent_agreement(eligibility={"customers": {"include": {"group": ["G1"]}}})
    with store.work() as session:
        import_customers(
            session,
            store.facts,
            write_csv(
                tmp_path / "c1.csv", header, [("C1", "甲公司", "G1"), ("C2", "乙公司", "G1")]
            ),
            actor=staff("ann"),
            now=NOW.replace(year=2026, month=1, day=1),
        )
        import_products(session, store.facts, products_file(tmp_path), actor=staff("ann"), now=NOW)
        activate(session, add_version(session, terms, actor=staff("ann"), now=NOW).id, now=NOW)
    _sales(
        store,
        tmp_path,
        "s1.csv",
        ("L1", "C1", "P1", "2026-02-10", "1", "1000.00"),
        ("L2", "C2", "P1", "2026-02-11", "1", "500.00"),
        ("L3", "C1", "P1", "2026-04-10", "1", "300.00"),
        ("L4", "C1", "P1", "2026-05-10", "1", "2000.00"),
    )
    with store.work() as session:  # C1 moves to G2 on 2026-05-01
        import_customers(
            session,
            store.facts,
            write_csv(
                tmp_path / "c2.csv", header, [("C1", "甲公司", "G2"), ("C2", "乙公司", "G1")]
            ),
            actor=staff("ann"),
            now=NOW.replace(year=2026, month=5, day=1),
        )
    _accrue(store, "2026-03-31")
    assert _held(store) == {("C1", 1): D("20.0000"), ("C2", 1): D("10.0000")}
    _accrue(store, "2026-06-30")  # C1 is in G2 from 1 May: its later sale does not count
    journal, scratch = _journal_and_scratch(store, "2026-06-30")
    assert (
        journal
        == scratch
        == {(1, "C1", 1): D("20.0000"), (1, "C2", 1): D("10.0000"), (1, "C1", 2): D("6.0000")}
    )


@pytest.mark.parametrize("scope", ["period", "term"])
def test_prior_year_baselines_open_rows_as_the_as_of_date_moves(
    store: Store, tmp_path: Path, scope: str
) -> None:
    terms = percent_agreement(
        tiers=[{"from": "0", "to": "100", "rate": "0"}, {"from": "100", "rate": "5"}],
        growth={"baseline": "prior_year", "mode": "whole_basis"},
        periods={"kind": "quarter", "scope": scope},
    )
    _setup(store, tmp_path, terms)
    _sales(
        store,
        tmp_path,
        "s1.csv",
        ("L1", "C1", "P1", "2025-02-10", "1", "1000.00"),
        ("L2", "C1", "P1", "2025-05-10", "1", "1000.00"),
        ("L3", "C1", "P1", "2026-02-10", "1", "1500.00"),
    )
    _accrue(store, "2026-03-31")
    _accrue(store, "2026-06-30")
    journal, scratch = _journal_and_scratch(store, "2026-06-30")
    # Q1: 1,500 is 150% of 1,000 -> 5% of 1,500 = 75.00. Q2 (term scope): 1,500 against 2,000
    # is below the baseline -> the term-to-date rebate falls to 0: -75.00 in Q2.
    expected = {(1, "C1", 1): D("75.0000")}
    if scope == "term":
        expected[(1, "C1", 2)] = D("-75.0000")
    assert journal == scratch == expected


def test_liabilities_stay_exact_beyond_a_double(store: Store) -> None:
    """900,719,925,474.0993 is 2**53 + 1 units of 0.0001: a float sum would drop the last one."""
    amount = D("900719925474.0993")
    with store.work() as session:
        period = AccountingPeriod(
            code="2026-01", start=dt.date(2026, 1, 1), end=dt.date(2026, 2, 1), status="open"
        )
        session.add(period)
        session.flush()
        entry = JournalEntry(
            accounting_period_id=period.id,
            kind="accrual",
            entry_date=dt.date(2026, 1, 31),
            memo="exactness",
            posted_at=NOW,
        )
        session.add(entry)
        session.flush()
        session.add(
            JournalLine(
                entry_id=entry.id,
                debit_account="rebate_contra_revenue",
                credit_account="rebate_liability",
                amount=amount,
                version_id=1,
                beneficiary="C1",
                period_index=1,
            )
        )
    with store.work() as session:
        assert liabilities(session) == {(1, "C1", 1): amount}


def test_a_data_directory_with_a_quote_in_its_name(store: Store, tmp_path: Path) -> None:
    store.facts = FactStore(tmp_path / "o'neil" / "facts")
    _setup(store, tmp_path)
    _sales(store, tmp_path, "s1.csv", ("L1", "C1", "P1", "2026-01-10", "1", "1000.00"))
    assert _accrue(store, "2026-03-31").net_change == D("20.0000")
    _sales(store, tmp_path, "s2.csv", ("L2", "C1", "P1", "2026-02-10", "1", "1000.00"))
    assert _accrue(store, "2026-03-31").net_change == D("20.0000")
    _check_invariants(store)


def test_two_runs_at_once_post_once(store: Store, tmp_path: Path) -> None:
    """Runs started together queue (an advisory lock on PostgreSQL, IMMEDIATE transactions on
    SQLite): the second finds the first's postings and posts nothing."""
    _setup(store, tmp_path)
    _sales(store, tmp_path, "s1.csv", ("L1", "C1", "P1", "2026-01-10", "1", "1000.00"))
    start = threading.Barrier(2)
    outcomes: list[RunSummary] = []

    def run() -> None:
        start.wait()
        outcomes.append(_accrue(store, "2026-03-31"))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcome.net_change for outcome in outcomes) == [D(0), D("20.0000")]
    assert _held(store) == {("C1", 1): D("20.0000")}


def test_a_run_never_takes_a_day_to_come_and_the_routine_never_goes_back(
    store: Store, tmp_path: Path
) -> None:
    _setup(store, tmp_path)
    _sales(store, tmp_path, "s1.csv", ("L1", "C1", "P1", "2026-01-10", "1", "10000.00"))
    tomorrow = NOW.date() + dt.timedelta(days=1)
    with store.work() as session, pytest.raises(InputError) as ahead:
        accrue(session, store.facts, as_of=tomorrow, actor=staff("fin"), now=NOW)
    assert str(ahead.value) == (
        f"field 'as_of': {tomorrow} has not come yet; an accrual runs as of today or earlier."
    )
    with store.work() as session:
        assert session.scalar(select(func.count(AccrualRun.id))) == 0
    _accrue(store, "2026-03-31")
    with store.work() as session, pytest.raises(InputError) as back:
        accrue(
            session,
            store.facts,
            as_of=dt.date(2026, 3, 15),
            actor=staff("fin"),
            now=NOW,
            routine=True,
        )
    assert str(back.value) == (
        "field 'as_of': The last run was as of 2026-03-31; a run as of 2026-03-15 would reverse "
        "what it accrued since."
    )
    # Any other run goes back only when asked to: a mistyped day or a stale retry would
    # reverse what was accrued since.
    with store.work() as session, pytest.raises(InputError) as unasked:
        accrue(session, store.facts, as_of=dt.date(2026, 3, 15), actor=staff("fin"), now=NOW)
    assert str(unasked.value) == (
        "field 'as_of': the last run was as of 2026-03-31; a run as of 2026-03-15 would reverse "
        'what was accrued since: ask for it as a rewind (fanli accrue --rewind, or "rewind": '
        "true) if that is what you mean"
    )
    with store.work() as session:
        assert session.scalar(select(func.count(AccrualRun.id))) == 1
        rerun = accrue(
            session,
            store.facts,
            as_of=dt.date(2026, 3, 15),
            actor=staff("fin"),
            now=NOW,
            rewind=True,
        )
    assert rerun.net_change == Decimal("0.00")  # a deliberate rerun
    # From the day it went back to, going forward again reverses nothing: no rewind needed.
    assert _accrue(store, "2026-03-20").net_change == Decimal("0.00")
    with store.work() as session, pytest.raises(InputError, match="as of 2026-03-20; a run"):
        accrue(session, store.facts, as_of=dt.date(2026, 3, 18), actor=staff("fin"), now=NOW)


def test_a_liability_larger_than_the_ledger_holds_is_refused_naming_its_key(
    store: Store, tmp_path: Path
) -> None:
    _setup(store, tmp_path)  # 2% of the quarter's net sales
    huge = "99999999999999.99"  # the largest amount a sales line may have
    _sales(
        store,
        tmp_path,
        "huge.csv",
        *[(f"H{n}", "C1", "P1", "2026-01-10", "1", huge) for n in range(60)],
    )
    # the unit of work rolls back, as the command line's and the API's do
    with pytest.raises(FanliError) as refused, store.work() as session:
        accrue(session, store.facts, as_of=dt.date(2026, 3, 31), actor=staff("fin"), now=NOW)
    assert str(refused.value) == (
        "the liability for agreement A1, customer C1, rebate period from 2026-01-01 would be "
        "119999999999999.9900, more than the ledger holds for one (99999999999999.9999): check "
        "the sales behind it"
    )
    with store.work() as session:
        assert session.scalar(select(func.count(AccrualRun.id))) == 0
    # no results file of the refused run is left behind
    assert list((store.facts.root / "results").glob("*.parquet")) == []


def test_a_run_of_large_changes_within_the_ledger_is_taken_and_reversed(
    store: Store, tmp_path: Path
) -> None:
    _setup(store, tmp_path)  # 2% of the quarter's net sales
    huge = "99999999999999.99"
    batch = _sales(
        store,
        tmp_path,
        "huge.csv",
        *[
            (f"H{customer}{n}", customer, "P1", "2026-01-10", "1", huge)
            for customer in ("C1", "C2", "C3")
            for n in range(45)
        ],
    )
    # each key's liability fits (45 x 99,999,999,999,999.99 x 2%), the three together would not
    # fit one key: a run's changes in all are not bounded, so the wrong import can be undone
    assert _accrue(store, "2026-03-31").net_change == Decimal("269999999999999.97")
    with store.work() as session:
        void_batch(session, store.facts, batch, reason="wrong file", actor=staff("ann"), now=NOW)
    assert _accrue(store, "2026-03-31").net_change == Decimal("-269999999999999.97")
    assert _held(store) == {}


def test_a_late_void_that_leaves_a_key_no_line_adjusts_it(store: Store, tmp_path: Path) -> None:
    """A guarantee pays C2 50.00 a quarter once C2 has a line. The only line, dated in a
    month that has closed, is voided: the results keep no key of C2 and the journal held none
    for the quarters still open, so those keys had been left out, and the void's effect on
    them (the guarantee the sales as closed would pay) was never said as an adjustment. Found
    by the ledger's state machine."""
    _setup(store, tmp_path, percent_agreement("B1", rate="1", guarantee={"amount": "50"}))
    batch = _sales(store, tmp_path, "s1.csv", ("L1", "C2", "P1", "2026-03-27", "1", "261.00"))
    first = _accrue(store, "2026-04-23")
    assert _posted(store, first.run_id) == {
        ("accrual", "C2", 1): D("50.0000"),
        ("accrual", "C2", 2): D("50.0000"),
    }
    _close(store, *(f"2026-{month:02d}" for month in range(1, 9)))
    with store.work() as session:
        void_batch(
            session, store.facts, batch, reason="wrong customer", actor=staff("ann"), now=NOW
        )
    second = _accrue(store, "2026-10-31")
    # Q1 and Q2 lie in closed months: all of their change is an adjustment. Q3 (September
    # open) and Q4 would have paid the guarantee on the sales as closed: accrued, and taken
    # back by the late void's adjustment.
    assert _posted(store, second.run_id) == {
        ("adjustment", "C2", 1): D("-50.0000"),
        ("adjustment", "C2", 2): D("-50.0000"),
        ("accrual", "C2", 3): D("50.0000"),
        ("adjustment", "C2", 3): D("-50.0000"),
        ("accrual", "C2", 4): D("50.0000"),
        ("adjustment", "C2", 4): D("-50.0000"),
    }
    with store.work() as session:
        assert liabilities(session) == {}
        assert adjustments_held(session) == late_effect_from_scratch(
            session, store.facts, dt.date(2026, 10, 31)
        )
