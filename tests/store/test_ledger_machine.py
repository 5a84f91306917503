"""The ledger's invariants under random histories (hypothesis state machine, real databases).

Random sequences of sales imports (returns included, dated in 2025 and 2026, paid or not),
voids, new versions of a tiered programme, changes of a customer's group, accrual runs at any
as-of date, and period closes (in order, or one month as asked, which may be refused), over that
programme, a second one that pays a guarantee without lines, a third for one group on growth
over the prior year, a fourth that counts paid invoices and a fifth that pools two customers.
After every step the journal holds, per
agreement version x beneficiary x period, exactly the latest run's results (accrued minus
settled; nothing is settled before settlements exist). Entries balance by construction (one
amount, two accounts, CHECK constraints). After every run, a calculation from scratch over
everything active gives the same liabilities as the incremental history: a voided batch's
effect is reversed exactly, and the incremental choice of versions and customers misses nothing;
and what adjustments hold for a rebate period with a day still open is exactly the effect of the
sales and voids that came after its closed months closed.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from fanli.agreements.models import AgreementRecord
from fanli.agreements.service import add_version
from fanli.db.session import make_engine, session_factory, unit_of_work
from fanli.ledger.models import AccountingPeriod
from fanli.ledger.periods import PeriodError, close_period
from fanli.ledger.queries import latest_results, liabilities
from fanli.ledger.service import accrue
from fanli.sales.service import (
    import_customers,
    import_products,
    import_sales,
    void_batch,
)
from fanli.sales.store import FactStore
from postgres import empty_postgres
from store.builders import activate, percent_agreement, products_file, staff, write_csv
from store.conftest import NOW
from store.replay import adjustments_held, from_scratch, late_effect_from_scratch

TIERS = [{"from": "0", "to": "5000", "rate": "1"}, {"from": "5000", "rate": "3"}]
YEAR_START = dt.date(2026, 1, 1)
AMOUNTS = ("quantity", "net_amount")
# The pool's parties must be registered legal entities.
CREDIT_CODES = {"C1": "91350100M000100Y43", "C2": "91110000600037341L"}

line_strategy = st.tuples(
    st.sampled_from(["C1", "C2", "C3"]),
    st.sampled_from(["P1", "P2"]),
    st.integers(-365, 364),  # a day of 2025 (prior-year baselines) or 2026
    st.integers(1, 400_000),  # net amount in cents
    st.booleans(),  # a return (negative line)?
    st.one_of(st.none(), st.integers(0, 60)),  # paid so many days after the invoice, or not yet
)


class LedgerMachine(RuleBasedStateMachine):
    backend = "sqlite"
    template: Path
    postgres_url: str

    batches = Bundle("batches")

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="fanli-machine-"))
        if self.backend == "sqlite":
            database = self.directory / "fanli.db"
            shutil.copy(self.template, database)
            self.engine = make_engine(f"sqlite:///{database}")
        else:
            self.engine = make_engine(self.postgres_url)
            empty_postgres(self.engine)
        self.sessions = session_factory(self.engine)
        self.facts = FactStore(self.directory / "facts")
        self.file_number = 0
        self.line_number = 0
        self.last_effective = YEAR_START
        self.groups = {"C1": "GA", "C2": "GA", "C3": "GB"}
        self.regrouped_on = YEAR_START
        with unit_of_work(self.sessions) as session:
            import_customers(session, self.facts, self._customers_file(), actor=staff("t"), now=NOW)
            import_products(
                session, self.facts, products_file(self.directory), actor=staff("t"), now=NOW
            )
            version = add_version(
                session, percent_agreement(tiers=TIERS), actor=staff("t"), now=NOW
            )
            activate(session, version.id, now=NOW)
            # A second programme that pays without lines: a guarantee per quarter.
            guaranteed = percent_agreement("B1", rate="1", guarantee={"amount": "50"})
            version = add_version(session, guaranteed, actor=staff("t"), now=NOW)
            activate(session, version.id, now=NOW)
            # A third for group GA, on growth over the same quarter of 2025.
            growth = percent_agreement(
                "G1",
                tiers=[{"from": "0", "to": "100", "rate": "0"}, {"from": "100", "rate": "5"}],
                growth={"baseline": "prior_year", "mode": "whole_basis"},
                eligibility={"customers": {"include": {"group": ["GA"]}}},
            )
            version = add_version(session, growth, actor=staff("t"), now=NOW)
            activate(session, version.id, now=NOW)
            # A fourth on paid invoices: a line counts on its paid date.
            paid = percent_agreement("D1", rate="1", eligibility={"event": "paid_invoice"})
            version = add_version(session, paid, actor=staff("t"), now=NOW)
            activate(session, version.id, now=NOW)
            # A fifth pools C2's lines with C1's and pays C1.
            pool = percent_agreement(
                "K1", rate="1", parties={"counterparty": "C1", "members": ["C2"]}
            )
            version = add_version(session, pool, actor=staff("t"), now=NOW)
            activate(session, version.id, now=NOW)

    def _customers_file(self) -> Path:
        self.file_number += 1
        return write_csv(
            self.directory / f"customers{self.file_number}.csv",
            ("customer_id", "name", "group", "统一社会信用代码"),
            [
                (code, f"{code} 有限公司", group, CREDIT_CODES.get(code, ""))
                for code, group in sorted(self.groups.items())
            ],
        )

    def teardown(self) -> None:
        self.engine.dispose()
        shutil.rmtree(self.directory, ignore_errors=True)

    @rule(target=batches, lines=st.lists(line_strategy, min_size=1, max_size=6))
    def import_batch(self, lines: list[tuple[Any, ...]]) -> int:
        """Lines: (customer, product, day, cents, a return?[, paid days after the invoice])."""
        rows = []
        for customer, product, day, cents, is_return, *paid_after in lines:
            self.line_number += 1
            sign = -1 if is_return else 1
            amount = Decimal(sign * cents).scaleb(-2)
            date = YEAR_START + dt.timedelta(days=day)
            later = paid_after[0] if paid_after else None
            paid = "" if later is None else date + dt.timedelta(days=later)
            rows.append((f"L{self.line_number}", customer, product, date, paid, sign, amount))
        self.file_number += 1
        path = write_csv(
            self.directory / f"s{self.file_number}.csv",
            ("line_id", "customer_id", "product_id", "invoice_date", "paid_date", *AMOUNTS),
            rows,
        )
        with unit_of_work(self.sessions) as session:
            return import_sales(session, self.facts, path, actor=staff("t"), now=NOW).batch_id

    @rule(
        customer=st.sampled_from(["C1", "C2", "C3"]),
        group=st.sampled_from(["GA", "GB"]),
        days=st.integers(1, 90),
    )
    def regroup(self, customer: str, group: str, days: int) -> None:
        """The customer master says a customer is in another group, from the import's day."""
        if self.groups[customer] == group:
            return
        self.groups[customer] = group
        self.regrouped_on += dt.timedelta(days=days)
        on = dt.datetime.combine(self.regrouped_on, dt.time(9), tzinfo=dt.UTC)
        with unit_of_work(self.sessions) as session:
            import_customers(session, self.facts, self._customers_file(), actor=staff("t"), now=on)

    @rule(batch=consumes(batches))
    def void(self, batch: int) -> None:
        with unit_of_work(self.sessions) as session:
            void_batch(session, self.facts, batch, reason="random void", actor=staff("t"), now=NOW)

    @rule(rate=st.sampled_from(["1", "2", "4"]), months=st.integers(1, 6))
    def new_version(self, rate: str, months: int) -> None:
        effective = dt.date(self.last_effective.year, self.last_effective.month, 1)
        month = effective.month + months
        if month > 12:
            return
        effective = effective.replace(month=month)
        tiers = [{**TIERS[0]}, {**TIERS[1], "rate": rate}]
        with unit_of_work(self.sessions) as session:
            status = select(AgreementRecord.status).where(AgreementRecord.code == "A1")
            if session.scalar(status) != "active":
                return  # expired by a run after the term: it takes no new version
            version = add_version(
                session,
                percent_agreement(tiers=tiers, effective_from=effective.isoformat()),
                actor=staff("t"),
                now=NOW,
            )
            activate(session, version.id, now=NOW)
        self.last_effective = effective

    @rule(day=st.integers(0, 420))
    def accrue(self, day: int) -> None:
        as_of = YEAR_START + dt.timedelta(days=day)
        # A run takes no day still to come: one after NOW runs on its own day.
        on = max(NOW, dt.datetime.combine(as_of, dt.time(18), tzinfo=dt.UTC))
        with unit_of_work(self.sessions) as session:
            # any day, back too: the invariants hold for deliberate reruns as well
            accrue(session, self.facts, as_of=as_of, actor=staff("t"), now=on, rewind=True)
        with unit_of_work(self.sessions) as session:
            assert liabilities(session) == from_scratch(session, self.facts, as_of)
            # the part adjustments hold is the effect of late sales and voids (ADR 0010)
            assert adjustments_held(session) == late_effect_from_scratch(session, self.facts, as_of)

    @rule(month=st.integers(1, 10))  # the months that have ended by NOW (27 November)
    def close(self, month: int) -> None:
        """Close the books up to ``month``: periods close in order, so every earlier one
        still open after the latest closed one closes first."""
        with unit_of_work(self.sessions) as session:
            latest = session.scalar(
                select(func.max(AccountingPeriod.start)).where(AccountingPeriod.status == "closed")
            )
        for earlier in range(1, month + 1):
            if latest is not None and dt.date(2026, earlier, 1) <= latest:
                continue  # closed, alone or with a later month
            code = f"2026-{earlier:02d}"
            with unit_of_work(self.sessions) as session:
                period = session.scalar(
                    select(AccountingPeriod).where(AccountingPeriod.code == code)
                )
                if period is None or period.status == "open":
                    close_period(session, code, actor=staff("t"), now=NOW)

    @rule(month=st.integers(1, 10))
    def close_one(self, month: int) -> None:
        """Close one month as it is asked for: refused while an earlier one is open, or when
        it is closed already, alone or with a later one."""
        try:
            with unit_of_work(self.sessions) as session:
                close_period(session, f"2026-{month:02d}", actor=staff("t"), now=NOW)
        except PeriodError:
            pass

    @invariant()
    def the_journal_holds_the_latest_results(self) -> None:
        with unit_of_work(self.sessions) as session:
            assert liabilities(session) == latest_results(session, self.facts)


# Each example is a fresh database and a dozen steps; HYPOTHESIS_PROFILE=thorough runs 10x more.
_THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"
MACHINE_SETTINGS = settings(
    max_examples=250 if _THOROUGH else 25,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_ledger_invariants_on_sqlite(sqlite_template: Path) -> None:
    machine = type("SqliteLedgerMachine", (LedgerMachine,), {"template": sqlite_template})
    run_state_machine_as_test(machine, settings=MACHINE_SETTINGS)


def test_ledger_invariants_on_postgresql(postgres_url: str) -> None:
    machine = type(
        "PostgresLedgerMachine",
        (LedgerMachine,),
        {"backend": "postgresql", "postgres_url": postgres_url},
    )
    run_state_machine_as_test(
        machine, settings=settings(MACHINE_SETTINGS, max_examples=150 if _THOROUGH else 15)
    )


def test_the_machine_would_notice_a_missing_reversal(sqlite_template: Path) -> None:
    """The replay check is not vacuous: a history whose journal misses a void disagrees."""
    machine = type("Probe", (LedgerMachine,), {"template": sqlite_template})()
    try:
        batch = machine.import_batch([("C1", "P1", 10, 600_000, False)])
        machine.accrue(100)
        with unit_of_work(machine.sessions) as session:
            void_batch(session, machine.facts, batch, reason="probe", actor=staff("t"), now=NOW)
            held = liabilities(session)
            scratch = from_scratch(session, machine.facts, YEAR_START + dt.timedelta(days=100))
        assert held != scratch
        assert held == {
            (1, "C1", 1): Decimal("180.0000"),  # A1: 3% of 6,000.00
            (2, "C1", 1): Decimal("60.0000"),  # B1: 1% of 6,000.00, above the guarantee
            (2, "C1", 2): Decimal("50.0000"),  # B1: the guarantee of the started Q2
            (5, "C1", 1): Decimal("60.0000"),  # K1: 1% of the pool's 6,000.00, paid to C1
        }
        assert scratch == {}
    finally:
        machine.teardown()


def test_the_machine_sees_a_late_sale_as_an_adjustment(sqlite_template: Path) -> None:
    """The adjustments check is not vacuous: a late sale gives it an amount to compare."""
    machine = type("Probe", (LedgerMachine,), {"template": sqlite_template})()
    try:
        machine.import_batch([("C3", "P1", 10, 400_000, False)])  # 4,000.00 on 11 January
        machine.accrue(40)
        machine.close(1)  # January closes with the run as of 10 February
        machine.import_batch([("C3", "P1", 20, 200_000, False)])  # 2,000.00 on 21 January
        machine.import_batch([("C3", "P1", 41, 100_000, False)])  # 1,000.00 on 11 February
        machine.accrue(45)  # checks the journal against the calculation from scratch
        with unit_of_work(machine.sessions) as session:
            # A1, 3% from 5,000.00: 7,000.00 gives 210.00, without the late sale 5,000.00
            # gives 150.00. B1, 1% with a guarantee of 50.00: 70.00 against 50.00.
            assert adjustments_held(session) == {
                (1, "C3", 1): Decimal("60.0000"),
                (2, "C3", 1): Decimal("20.0000"),
            }
    finally:
        machine.teardown()
