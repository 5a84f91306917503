"""Settlements end to end on both databases: period-to-date amounts to the cent, the approval
matrix, every payout form, claw-backs, re-approval after a change, idempotency, and the database
constraints that keep money moving once and only on the legal path."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from fanli.agreements.service import add_version
from fanli.agreements.terms import Agreement
from fanli.audit.models import AuditEvent
from fanli.compliance.policy import Policy
from fanli.compliance.service import publish
from fanli.customers.models import DueDiligenceKind
from fanli.customers.queries import CustomerError
from fanli.customers.service import add_due_diligence, register_account, verify_account
from fanli.ledger.models import Account, JournalLine
from fanli.ledger.queries import liabilities
from fanli.ledger.service import accrue
from fanli.sales.service import import_customers, import_products, import_sales, void_batch
from fanli.settlements import balance as balances
from fanli.settlements import service as settlements
from fanli.settlements.idempotency import IdempotencyError, KeyReusedError
from fanli.settlements.models import (
    BalanceCredit,
    BalanceUse,
    Payout,
    Settlement,
    SettlementApproval,
    SettlementStatus,
)
from fanli.settlements.queries import approval_status, waiting_for
from fanli.users.actor import PermissionDeniedError
from fanli.users.service import delegate, revoke_delegation
from store.builders import (
    CUSTOMERS,
    POLICY,
    activate,
    customers_file,
    people,
    percent_agreement,
    products_file,
    sales_file,
    staff,
)
from store.conftest import NOW, Store

D = Decimal
Q1 = dt.date(2026, 1, 1)
LATER = NOW + dt.timedelta(days=1)


class World:
    """A store with users, the test policy, one agreement, Q1 sales and an accrual run."""

    def __init__(self, store: Store, directory: Path) -> None:
        self.store = store
        self.directory = directory
        self.files = 0
        with store.work() as session:
            self.who = people(session, NOW)

    def __getitem__(self, code: str) -> Any:
        return self.who[code]

    def agreement(self, terms: Agreement) -> None:
        with self.store.work() as session:
            import_customers(
                session,
                self.store.facts,
                customers_file(self.directory),
                actor=staff("ann"),
                now=NOW,
            )
            import_products(
                session,
                self.store.facts,
                products_file(self.directory),
                actor=staff("ann"),
                now=NOW,
            )
            activate(session, add_version(session, terms, actor=staff("sam"), now=NOW).id, now=NOW)

    def sales(self, *lines: tuple[str, ...]) -> int:
        self.files += 1
        with self.store.work() as session:
            return import_sales(
                session,
                self.store.facts,
                sales_file(self.directory, f"s{self.files}.csv", lines),
                actor=staff("ann"),
                now=NOW,
            ).batch_id

    def accrue(self, as_of: str = "2026-03-31") -> None:
        day = dt.date.fromisoformat(as_of)
        with self.store.work() as session:
            accrue(
                session,
                self.store.facts,
                as_of=day,
                actor=staff("f"),
                # A run takes no day still to come: a run as of the real today, after NOW,
                # runs on that day.
                now=max(NOW, dt.datetime.combine(day, dt.time(18), tzinfo=dt.UTC)),
            )

    def propose(self, beneficiary: str = "C1", *, key: str | None = None, by: str = "fay") -> int:
        with self.store.work() as session:
            return settlements.propose(
                session,
                self.store.facts,
                agreement_code="A1",
                beneficiary=beneficiary,
                period_start=Q1,
                idempotency_key=key or f"propose-{beneficiary}-{self.files}-{by}",
                actor=self.who[by],
                now=NOW,
            ).id

    def approve(self, settlement_id: int, by: str, *, now: dt.datetime = NOW) -> str:
        with self.store.work() as session:
            return settlements.approve(
                session,
                self.store.facts,
                settlement_id,
                idempotency_key=f"approve-{settlement_id}-{by}-{now.isoformat()}",
                actor=self.who[by],
                now=now,
            ).status

    def pay(self, settlement_id: int, *, by: str = "fay", **options: Any) -> Payout:
        with self.store.work() as session:
            return settlements.pay(
                session,
                self.store.facts,
                settlement_id,
                idempotency_key=options.pop("key", f"pay-{settlement_id}"),
                actor=self.who[by],
                now=options.pop("now", NOW),
                **options,
            )

    def verified_account(self, customer: str) -> int:
        """A bank account of C1 (上海华东食品贸易有限公司) registered by fay, verified by fred."""
        with self.store.work() as session:
            account_id = register_account(
                session,
                customer,
                bank_name="工商银行",
                account_number="1",
                holder_name="上海华东食品贸易有限公司",
                country="CN",
                actor=self.who["fay"],
                now=NOW,
            ).id
            verify_account(session, account_id, actor=self.who["fred"], now=NOW)
        return account_id

    def settlement(self, settlement_id: int) -> Settlement:
        with self.store.work() as session:
            found = session.get(Settlement, settlement_id)
            assert found is not None
            return found

    def liability(self, beneficiary: str = "C1") -> Decimal:
        with self.store.work() as session:
            held = liabilities(session)
        return sum((a for (_, b, _p), a in held.items() if b == beneficiary), D(0))

    def account(self, account: Account) -> Decimal:
        """Debits minus credits of one account over the whole journal."""
        with self.store.work() as session:
            debit = session.scalar(
                select(func.sum(JournalLine.amount)).where(JournalLine.debit_account == account)
            )
            credit = session.scalar(
                select(func.sum(JournalLine.amount)).where(JournalLine.credit_account == account)
            )
        return (debit or D(0)) - (credit or D(0))


def _form(form: str, **settlement: Any) -> Agreement:
    return percent_agreement(settlement={"form": form, **settlement})


def _world(store: Store, tmp_path: Path, terms: Agreement | None = None) -> World:
    world = World(store, tmp_path)
    world.agreement(terms or _form("credit_note"))
    world.sales(
        ("L1", "C1", "P1", "2026-02-10", "10", "10000.00"),
        ("L2", "C2", "P1", "2026-02-11", "1", "500.00"),
    )
    world.accrue()
    return world


def test_propose_approve_and_pay_by_credit_note(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)
    assert world.liability() == D("200.00")
    settlement_id = world.propose()
    proposed = world.settlement(settlement_id)
    assert (proposed.amount, proposed.status, proposed.steps) == (
        D("200.00"),
        "proposed",
        [{"role": "approver", "count": 1}],
    )
    with pytest.raises(settlements.SettlementError, match="is proposed: it cannot be paid"):
        world.pay(settlement_id)  # pay before approve
    assert world.approve(settlement_id, "amy") == "approved"
    with pytest.raises(settlements.SettlementError, match="needs its document number"):
        world.pay(settlement_id)
    payout = world.pay(settlement_id, document_number="CN-0001", key="pay-cn")
    assert (payout.form, payout.amount, payout.document_number) == (
        "credit_note",
        D("200.00"),
        "CN-0001",
    )
    assert world.settlement(settlement_id).status == "paid"
    # The liability is accrued minus settled; the receivable fell by the credit note.
    assert world.liability() == D("0.00")
    assert world.liability("C2") == D("10.00")
    assert world.account(Account.RECEIVABLE) == D("-200.00")
    assert world.account(Account.LIABILITY) == D("-10.00")  # only C2's accrual remains
    # Nothing more is due, and a replay returns the first payout.
    with pytest.raises(settlements.SettlementError, match="nothing is due"):
        world.propose(key="again")
    assert world.pay(settlement_id, document_number="CN-0001", key="pay-cn").id == payout.id


def test_period_to_date_pays_only_what_is_new(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path, _form("credit_note", clawback=True))
    first = world.propose()
    world.approve(first, "amy")
    world.pay(first, document_number="CN-1")
    world.sales(("L3", "C1", "P1", "2026-03-20", "1", "1234.56"))
    world.accrue()
    second = world.propose()
    # 2% of 11,234.56 = 224.69 (half up), minus the 200.00 already settled.
    assert world.settlement(second).amount == D("24.69")
    assert world.settlement(second).inputs["lines"][0]["settled"] == "200.00"
    world.approve(second, "amy")
    world.pay(second, document_number="CN-2")
    assert world.liability() == D("0.00")
    # A return after payment makes the period overpaid: a claw-back, collected by a document.
    world.sales(("R1", "C1", "P1", "2026-03-25", "-1", "-2000.00"))
    world.accrue()
    assert world.liability() == D("-40.00")
    claw = world.propose()
    assert world.settlement(claw).amount == D("-40.00")
    world.approve(claw, "amy")
    payout = world.pay(claw, document_number="DN-1")
    assert (payout.form, payout.amount) == ("credit_note", D("-40.00"))
    assert world.liability() == D("0.00")
    assert world.account(Account.RECEIVABLE) == D("-184.69")  # -200 - 24.69 + 40


def test_a_clawback_needs_the_agreement_to_allow_it(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)
    first = world.propose()
    world.approve(first, "amy")
    world.pay(first, document_number="CN-1")
    with store.work() as session:
        void_batch(session, store.facts, 1 + 2, reason="wrong file", actor=staff("ann"), now=NOW)
    world.accrue()
    with pytest.raises(settlements.SettlementError, match=r"-200\.00 \(a claw-back\)"):
        world.propose(key="claw")
    with store.work() as session:
        assert session.scalar(select(func.count()).select_from(Settlement)) == 1


def test_bank_transfer_only_to_a_verified_account_of_the_entity(
    store: Store, tmp_path: Path
) -> None:
    world = _world(store, tmp_path, _form("bank_transfer"))
    settlement_id = world.propose()
    world.approve(settlement_id, "amy")
    with store.work() as session, pytest.raises(CustomerError, match="not C1's legal name"):
        register_account(
            session,
            "C1",
            bank_name="工商银行",
            account_number="6222 0000 1111",
            holder_name="张三",  # a person, not the customer
            country="CN",
            actor=world["fay"],
            now=NOW,
        )
    with store.work() as session:
        account_id = register_account(
            session,
            "C1",
            bank_name="工商银行",
            account_number="6222 0000 1111",
            holder_name="上海华东食品贸易有限公司",
            country="CN",
            actor=world["fay"],
            now=NOW,
        ).id
    with pytest.raises(settlements.SettlementError, match="needs the beneficiary's verified"):
        world.pay(settlement_id, key="k1")
    with pytest.raises(settlements.SettlementError, match="not been verified by a second person"):
        world.pay(settlement_id, bank_account_id=account_id, key="k2")
    with store.work() as session, pytest.raises(CustomerError, match="a second person"):
        verify_account(session, account_id, actor=world["fay"], now=NOW)
    with store.work() as session:
        verify_account(session, account_id, actor=world["fred"], now=NOW)
    payout = world.pay(settlement_id, bank_account_id=account_id, key="k3")
    assert (payout.form, payout.amount, payout.bank_account_id) == (
        "bank_transfer",
        D("200.00"),
        account_id,
    )
    assert world.account(Account.BANK) == D("-200.00")


def test_an_account_of_another_customer_is_refused(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path, _form("bank_transfer"))
    settlement_id = world.propose("C2")
    world.approve(settlement_id, "amy")
    other = world.verified_account("C1")
    with pytest.raises(settlements.SettlementError, match="not registered to C2"):
        world.pay(settlement_id, bank_account_id=other)


def test_red_invoice_references_the_customers_original_lines(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path, _form("red_invoice"))
    settlement_id = world.propose()
    world.approve(settlement_id, "amy")
    with pytest.raises(settlements.SettlementError, match="must reference the original"):
        world.pay(settlement_id, document_number="HZ-1", key="a")
    with pytest.raises(settlements.SettlementError, match="L2 are not C1's lines"):
        world.pay(settlement_id, document_number="HZ-1", original_invoices=["L1", "L2"], key="b")
    payout = world.pay(settlement_id, document_number="HZ-1", original_invoices=["L1"], key="c")
    assert (payout.form, payout.original_invoices) == ("red_invoice", ["L1"])


def test_rebate_balance_is_credited_used_once_and_expires(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path, _form("rebate_balance"))
    settlement_id = world.propose()
    world.approve(settlement_id, "amy")
    world.pay(settlement_id)
    with store.work() as session:
        found = balances.balance(session, "C1", NOW.date())
        assert (found.available, found.locked) == (D("200.00"), D("0"))
        assert found.credits[0].valid_until == NOW.date() + dt.timedelta(days=90)
        use = balances.request_use(
            session,
            "C1",
            amount=D("150.00"),
            order_reference="SO-9",
            idempotency_key="use-1",
            actor=world["fay"],
            now=NOW,
        )
    with store.work() as session:
        found = balances.balance(session, "C1", NOW.date())
        assert (found.available, found.locked) == (D("0"), D("200.00"))  # locked while pending
        with pytest.raises(balances.BalanceError, match="no available rebate balance credit"):
            balances.request_use(
                session,
                "C1",
                amount=D("10"),
                order_reference="SO-10",
                idempotency_key="use-2",
                actor=world["fay"],
                now=NOW,
            )
    with store.work() as session, pytest.raises(PermissionDeniedError, match="cannot decide"):
        balances.decide_use(
            session, use.id, approve=True, idempotency_key="d0", actor=world["fay"], now=NOW
        )
    with store.work() as session:
        balances.decide_use(
            session, use.id, approve=True, idempotency_key="d1", actor=world["fred"], now=NOW
        )
    with store.work() as session:
        found = balances.balance(session, "C1", NOW.date())
        assert found.available == D("50.00")  # the remainder, a new credit
        assert [c.status for c in found.credits] == ["used", "available"]
    expiry = NOW.date() + dt.timedelta(days=90)
    with store.work() as session:
        with pytest.raises(balances.BalanceError, match="ahead of time"):
            balances.expire_credits(session, as_of=expiry, actor=world["fay"], now=NOW)
        # "Today" is the day of ``now`` where it was taken (the interfaces take it in the
        # company's zone): 17:00 UTC the day before is already the expiry day in Shanghai.
        evening = dt.datetime.combine(expiry - dt.timedelta(days=1), dt.time(17), tzinfo=dt.UTC)
        with pytest.raises(balances.BalanceError, match="ahead of time"):
            balances.expire_credits(session, as_of=expiry, actor=world["fay"], now=evening)
        on_expiry = evening.astimezone(ZoneInfo("Asia/Shanghai"))
        expired = balances.expire_credits(session, as_of=expiry, actor=world["fay"], now=on_expiry)
        assert [c.amount for c in expired] == [D("50.00")]
    assert world.account(Account.REBATE_BALANCE) == D("0.00")  # 200 in, 150 used, 50 released
    assert world.account(Account.RECEIVABLE) == D("-150.00")
    assert world.account(Account.CONTRA_REVENUE) == D("160.00")  # 200 + 10 accrued, 50 back


def test_a_use_spends_whole_fen(store: Store, tmp_path: Path) -> None:
    """A use of 0.001 yuan had been taken: the balance and the journal then held fractions of
    a fen for good. The credit's currency (its settlement's) sets the places, also for what a
    use left over."""
    world = _world(store, tmp_path, _form("rebate_balance"))
    settlement_id = world.propose()
    world.approve(settlement_id, "amy")
    world.pay(settlement_id)

    def use(amount: str, key: str) -> Any:
        with store.work() as session:
            return balances.request_use(
                session,
                "C1",
                amount=D(amount),
                order_reference="SO-1",
                idempotency_key=key,
                actor=world["fay"],
                now=NOW,
            )

    with pytest.raises(
        balances.BalanceError,
        match=r"an amount in CNY has at most 2 decimal places, not 0\.001",
    ):
        use("0.001", "u0")
    with store.work() as session:
        found = balances.balance(session, "C1", NOW.date())
        assert (found.available, found.locked) == (D("200.00"), D("0"))  # nothing locked
    first = use("150.00", "u1")
    with store.work() as session:
        balances.decide_use(
            session, first.id, approve=True, idempotency_key="d1", actor=world["fred"], now=NOW
        )
    with pytest.raises(balances.BalanceError, match="not 10\\.005"):
        use("10.005", "u2")  # the 50.00 left over is in CNY too
    assert use("10.50", "u3").amount == D("10.50")


def test_a_payee_must_be_a_legal_entity(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)
    world.sales(("L9", "C3", "P1", "2026-02-12", "1", "100.00"))
    world.accrue()
    with pytest.raises(settlements.SettlementError, match="not a registered legal entity"):
        world.propose("C3")


def test_due_diligence_blocks_until_current(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)
    strict = {
        **POLICY,
        "due_diligence": {"required": ["business_licence", "blacklist_check"]},
    }
    with store.work() as session:
        publish(session, Policy.model_validate(strict), actor=world["cora"], now=NOW)
    with pytest.raises(settlements.SettlementError) as refused:
        world.propose(key="dd-1")
    assert "business_licence: never recorded" in str(refused.value)
    assert "blacklist_check: never recorded" in str(refused.value)
    with store.work() as session, pytest.raises(CustomerError) as ahead:
        add_due_diligence(  # a check that has not happened cannot clear anything
            session,
            "C1",
            kind=DueDiligenceKind.BUSINESS_LICENCE,
            passed=True,
            reference="dated ahead",
            checked_on=NOW.date() + dt.timedelta(days=1),
            expires_on=dt.date(2027, 12, 1),
            actor=world["cora"],
            now=NOW,
        )
    assert str(ahead.value) == (
        f"a check made on {NOW.date() + dt.timedelta(days=1)} has not been made yet: it is "
        f"{NOW.date()} today"
    )
    with store.work() as session:
        for kind in (DueDiligenceKind.BUSINESS_LICENCE, DueDiligenceKind.BLACKLIST_CHECK):
            add_due_diligence(
                session,
                "C1",
                kind=kind,
                passed=True,
                reference=f"{kind}-2026",
                checked_on=dt.date(2026, 11, 1),
                expires_on=dt.date(2026, 12, 1),
                actor=world["cora"],
                now=NOW,
            )
    settlement_id = world.propose(key="dd-2")
    world.approve(settlement_id, "amy")
    lapsed = dt.datetime(2026, 12, 2, 9, tzinfo=dt.UTC)
    with pytest.raises(settlements.SettlementError, match="business_licence: lapsed on 2026-12-01"):
        world.pay(settlement_id, document_number="CN-1", now=lapsed)
    assert world.settlement(settlement_id).status == "approved"


def test_changed_inputs_need_approving_again(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)
    settlement_id = world.propose()
    world.approve(settlement_id, "amy")
    world.sales(("L3", "C1", "P1", "2026-03-01", "1", "1000.00"))
    world.accrue()
    with pytest.raises(settlements.SettlementError, match="inputs changed since it was proposed"):
        world.pay(settlement_id, document_number="CN-1")
    with store.work() as session:
        refreshed = settlements.refresh(
            session, store.facts, settlement_id, actor=world["fay"], now=NOW
        )
        assert (refreshed.amount, refreshed.status, refreshed.approved_hash) == (
            D("220.00"),
            "proposed",
            None,
        )
    with store.work() as session:
        assert approval_status(session, settlement_id).missing == ["approver x1"]
    # amy's earlier approval was for other inputs; she approves the new ones.
    assert world.approve(settlement_id, "amy", now=LATER) == "approved"
    assert world.pay(settlement_id, document_number="CN-1").amount == D("220.00")


def test_the_approval_matrix_limits_and_delegation(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)
    world.sales(("BIG", "C1", "P1", "2026-03-01", "1", "990000.00"))
    world.accrue()
    settlement_id = world.propose()
    assert world.settlement(settlement_id).amount == D("20000.00")
    assert world.settlement(settlement_id).steps == [
        {"role": "approver", "count": 1},
        {"role": "finance", "count": 1},
    ]
    with store.work() as session:
        waiting = waiting_for(session, world["amy"], NOW.date())
        assert [s.id for s in waiting.settlements] == [settlement_id]  # limit 20,000 covers it
        assert waiting_for(session, world["fay"], NOW.date()).settlements == []  # proposer
    with pytest.raises(PermissionDeniedError, match="proposed settlement"):
        world.approve(settlement_id, "fay")
    with pytest.raises(PermissionDeniedError, match="needs the role approver or finance"):
        world.approve(settlement_id, "cora")
    assert world.approve(settlement_id, "amy") == "proposed"
    with pytest.raises(PermissionDeniedError, match="already approved by them"):
        world.approve(settlement_id, "amy", now=LATER)
    # fred (finance) is away; he delegates to ivan, who approves for him while it lasts.
    with store.work() as session:
        delegate(
            session,
            delegator="fred",
            delegate_to="ivan",
            valid_from=NOW.date(),
            valid_to=NOW.date() + dt.timedelta(days=7),
            reason="holiday",
            actor=world["fred"],
            now=NOW,
        )
    with pytest.raises(PermissionDeniedError, match="needs the role approver or finance"):
        world.approve(settlement_id, "eve")  # nobody delegated to eve
    assert world.approve(settlement_id, "ivan") == "approved"  # for fred, with fred's role
    with store.work() as session:
        status = approval_status(session, settlement_id)
        assert [(a.approver, a.principal, a.role) for a in status.approvals] == [
            ("amy", "amy", "approver"),
            ("ivan", "fred", "finance"),
        ]
    with pytest.raises(PermissionDeniedError, match=r"approved settlement \d+ and cannot also pay"):
        world.pay(settlement_id, by="fred", document_number="CN-1")
    assert world.pay(settlement_id, document_number="CN-1").amount == D("20000.00")


def test_money_moves_need_a_key_and_a_key_means_one_request(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)
    with store.work() as session, pytest.raises(IdempotencyError, match="needs an idempotency key"):
        settlements.propose(
            session,
            store.facts,
            agreement_code="A1",
            beneficiary="C1",
            period_start=Q1,
            idempotency_key=None,
            actor=world["fay"],
            now=NOW,
        )
    first = world.propose(key="k")
    assert world.propose(key="k") == first  # a retry returns the first result
    with pytest.raises(KeyReusedError, match="was used for another request"):
        world.propose("C2", key="k")
    with store.work() as session:
        assert session.scalar(select(func.count()).select_from(Settlement)) == 1


def test_one_open_settlement_per_key_and_rejection(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)
    first = world.propose(key="a")
    with pytest.raises(settlements.SettlementError, match=f"settlement {first} is already"):
        world.propose(key="b")
    with store.work() as session, pytest.raises(settlements.SettlementError, match="reason"):
        settlements.reject(session, first, reason=" ", actor=world["amy"], now=NOW)
    with store.work() as session:
        settlements.reject(session, first, reason="wrong period", actor=world["amy"], now=NOW)
    second = world.propose(key="c")
    assert world.settlement(first).rejection_reason == "wrong period"
    assert world.settlement(second).amount == D("200.00")


_HAND = itertools.count(1)


def _refused_by_database(store: Store, fragment: dict[str, str], **payout: Any) -> None:
    """A hand-written payout row fails with the named constraint (the message differs per
    database), and nothing is stored."""
    values = {
        "form": "credit_note",
        "amount": D("200.00"),
        "document_number": f"HAND-{next(_HAND)}",
        "paid_by": "x",
        "paid_at": NOW,
        **payout,
    }
    with pytest.raises(IntegrityError) as refused, store.work() as session:
        session.add(Payout(**values))
    assert fragment[store.backend] in str(refused.value)


def test_the_database_refuses_what_the_services_never_write(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)
    first = world.propose()
    with store.work() as session:
        accrual_entry = session.scalar(select(func.max(JournalLine.entry_id)))
    unmatched = {
        "sqlite": "FOREIGN KEY constraint failed",
        "postgresql": "violates foreign key constraint",
    }
    # A payout of a settlement that was never approved: the composite key has nothing to match.
    _refused_by_database(
        store,
        unmatched,
        settlement_id=first,
        approved_hash=world.settlement(first).inputs_hash,
        journal_entry_id=accrual_entry,
    )
    world.approve(first, "amy")
    paid = world.pay(first, document_number="CN-1")
    second = world.propose("C2")
    world.approve(second, "amy")
    approved_hash = world.settlement(second).approved_hash
    # A second payout of a paid settlement (with an entry no payout uses).
    _refused_by_database(
        store,
        {"sqlite": "payout.settlement_id", "postgresql": "uq_payout_settlement_id"},
        settlement_id=first,
        approved_hash=paid.approved_hash,
        journal_entry_id=accrual_entry,
    )
    # A payout that reuses another payout's journal entry, and one without an entry.
    _refused_by_database(
        store,
        {"sqlite": "payout.journal_entry_id", "postgresql": "uq_payout_journal_entry_id"},
        settlement_id=second,
        approved_hash=approved_hash,
        journal_entry_id=paid.journal_entry_id,
    )
    _refused_by_database(
        store,
        {"sqlite": "NOT NULL constraint failed", "postgresql": "journal_entry_id"},
        settlement_id=second,
        approved_hash=approved_hash,
        journal_entry_id=None,
    )
    # A settlement approved and then rejected loses its approval: nothing can reference it.
    with store.work() as session:
        settlements.reject(session, second, reason="wrong", actor=world["cora"], now=NOW)
    _refused_by_database(
        store,
        unmatched,
        settlement_id=second,
        approved_hash=approved_hash,
        journal_entry_id=accrual_entry,
    )
    with store.work() as session:
        assert [p.id for p in session.scalars(select(Payout))] == [paid.id]


def test_a_credit_has_one_live_use(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path, _form("rebate_balance"))
    settlement_id = world.propose()
    world.approve(settlement_id, "amy")
    world.pay(settlement_id)
    with store.work() as session:
        credit_id = session.scalar(select(BalanceCredit.id))
        balances.request_use(
            session,
            "C1",
            amount=D("10"),
            order_reference="SO-1",
            idempotency_key="u1",
            actor=world["fay"],
            now=NOW,
        )
    with pytest.raises(IntegrityError), store.work() as session:
        session.add(
            BalanceUse(
                credit_id=credit_id,
                amount=D("5"),
                order_reference="SO-2",
                status="pending",
                live=1,
                requested_by="sam",
                requested_at=NOW,
            )
        )


# ---- every (state, action, role) against the transition table --------------------------------

ROLES = ("sales", "finance", "approver", "compliance", "internal_auditor", "external_auditor")
STATE_SETUPS = ("proposed", "approved", "rejected", "paid")


def _in_state(world: World, state: str) -> int:
    world.files += 1  # a fresh idempotency key for each setup
    settlement_id = world.propose(key=f"setup-{state}-{world.files}")
    if state in ("approved", "paid") and world.approve(settlement_id, "abe") == "proposed":
        world.approve(settlement_id, "fred")
    if state == "paid":
        world.pay(
            settlement_id, document_number=f"CN-{settlement_id}", key=f"pay-setup-{settlement_id}"
        )
    if state == "rejected":
        with world.store.work() as session:
            settlements.reject(session, settlement_id, reason="setup", actor=world["amy"], now=NOW)
    return settlement_id


def _snapshot(world: World, settlement_id: int) -> tuple[Any, ...]:
    with world.store.work() as session:
        s = session.get(Settlement, settlement_id)
        assert s is not None
        counts = tuple(
            session.scalar(select(func.count()).select_from(table))
            for table in (Payout, JournalLine, BalanceCredit)
        )
        events = session.scalar(select(func.count()).select_from(AuditEvent))
        approvals = session.scalar(select(func.count()).select_from(SettlementApproval))
        return (s.status, s.amount, s.inputs_hash, s.approved_hash, counts, events, approvals)


def _act(world: World, settlement_id: int, action: str, actor: Any) -> None:
    with world.store.work() as session:
        if action == "approve":
            settlements.approve(
                session,
                world.store.facts,
                settlement_id,
                idempotency_key=f"x-{actor.code}",
                actor=actor,
                now=NOW,
            )
        elif action == "reject":
            settlements.reject(session, settlement_id, reason="no", actor=actor, now=NOW)
        elif action == "refresh":
            settlements.refresh(session, world.store.facts, settlement_id, actor=actor, now=NOW)
        else:
            settlements.pay(
                session,
                world.store.facts,
                settlement_id,
                idempotency_key=f"p-{actor.code}",
                document_number=f"CN-9-{settlement_id}",
                actor=actor,
                now=NOW,
            )


@pytest.mark.parametrize("state", STATE_SETUPS)
def test_every_state_action_and_role_against_the_table(
    store: Store, tmp_path: Path, state: str
) -> None:
    """Allowed triples succeed (refresh needs changed inputs, so its allowed cases are refused
    for that reason only); denied ones raise and change nothing. The proposer (fay, finance)
    approving is self-approval; approving as an approver is done by abe, who has the limit."""
    world = _world(store, tmp_path)
    world.sales(("BIG", "C1", "P1", "2026-03-01", "1", "600000.00"))
    world.accrue()  # 12,200.00 due: the policy asks an approver and finance
    for action in settlements.ACTIONS:
        acting = {
            "sales": world["sam"],
            # fred approves where finance approves; fay (the proposer) acts otherwise, because
            # whoever approved a settlement may not pay it.
            "finance": world["fred"] if action == "approve" else world["fay"],
            "approver": world["abe"] if action != "approve" else world["amy"],
            "compliance": world["cora"],
            "internal_auditor": world["ivan"],
            "external_auditor": world["eve"],
        }
        for role in ROLES:
            settlement_id = _in_state(world, state)
            before = _snapshot(world, settlement_id)
            allowed = role in {
                r.value for r in settlements.TRANSITIONS.get((SettlementStatus(state), action), ())
            }
            # Paying: the approver who approved it may not pay; fred did not approve it here.
            refused = _attempt(world, settlement_id, action, acting[role])
            where = (state, action, role, refused)
            if refused is None:
                assert allowed, where
                assert _snapshot(world, settlement_id) != before, where
            else:
                assert _snapshot(world, settlement_id) == before, where
                # Refresh is allowed, but refuses when nothing changed (as here).
                assert not allowed or (action, "have not changed") == (action, refused), where
            # Leave the key free for the next setup.
            if world.settlement(settlement_id).status == "paid":
                return_after_payment(world)
            elif world.settlement(settlement_id).status != "rejected":
                with world.store.work() as session:
                    settlements.reject(
                        session, settlement_id, reason="reset", actor=world["cora"], now=NOW
                    )
    # Self-approval: the proposer holds finance, a role that may approve, and is still refused.
    settlement_id = _in_state(world, "proposed") if state == "proposed" else None
    if settlement_id is not None:
        before = _snapshot(world, settlement_id)
        with pytest.raises(PermissionDeniedError, match="proposed settlement"):
            _act(world, settlement_id, "approve", world["fay"])
        assert _snapshot(world, settlement_id) == before


def _attempt(world: World, settlement_id: int, action: str, actor: Any) -> str | None:
    """None when the action succeeded; otherwise the reason it was refused ("have not changed"
    for a refresh with unchanged inputs)."""
    try:
        _act(world, settlement_id, action, actor)
    except (settlements.SettlementError, PermissionDeniedError) as error:
        return "have not changed" if "have not changed" in str(error) else str(error)
    return None


def return_after_payment(world: World) -> None:
    """After a payout nothing is due; add a sale so the next setup has an amount to propose.
    Its approval basis stays the period's total (over 12,000): the same two steps."""
    world.sales((f"N{world.files}", "C1", "P1", "2026-03-02", "1", "100.00"))
    world.accrue()


def test_a_settlement_above_the_policy_maximum_is_refused(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)
    capped = {
        **POLICY,
        "max_settlement": [{"amount": "1000000"}, {"segment": "批发", "amount": "150"}],
    }
    with store.work() as session:
        publish(session, Policy.model_validate(capped), actor=world["cora"], now=NOW)
    with pytest.raises(settlements.SettlementError, match="above the policy's largest settlement"):
        world.propose(key="too-much")  # C1 is wholesale (批发): 200.00 > 150
    assert world.settlement(world.propose("C2", key="fine")).amount == D("10.00")


def test_offset_against_receivables(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path, _form("receivable_offset"))
    settlement_id = world.propose()
    world.approve(settlement_id, "amy")
    payout = world.pay(settlement_id, document_number="OFFSET-7")
    assert (payout.form, payout.amount) == ("receivable_offset", D("200.00"))
    assert world.account(Account.RECEIVABLE) == D("-200.00")


def test_a_clawback_on_a_transfer_agreement_is_an_offset(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path, _form("bank_transfer", clawback=True))
    account_id = world.verified_account("C1")
    first = world.propose()
    world.approve(first, "amy")
    world.pay(first, bank_account_id=account_id)
    world.sales(("R1", "C1", "P1", "2026-03-25", "-5", "-5000.00"))
    world.accrue()
    claw = world.propose(key="claw")
    world.approve(claw, "amy")
    with pytest.raises(settlements.SettlementError, match="a bank account is not used"):
        world.pay(claw, bank_account_id=account_id, key="claw-1")
    payout = world.pay(claw, key="claw-2")
    assert (payout.form, payout.amount) == ("receivable_offset", D("-100.00"))
    # Money went out by transfer; the overpayment comes back as a receivable, never a debit.
    assert (world.account(Account.BANK), world.account(Account.RECEIVABLE)) == (
        D("-200.00"),
        D("100.00"),
    )
    assert world.liability() == D("0.00")


def test_a_new_run_with_the_same_amounts_keeps_the_approval(store: Store, tmp_path: Path) -> None:
    """A change to the customer master re-rates everything: new runs, same amounts. Approvals
    stand on the amounts an approver saw, so the payment goes ahead."""
    world = _world(store, tmp_path)
    settlement_id = world.propose()
    world.approve(settlement_id, "amy")
    moved = [(*row[:4], "华南") for row in CUSTOMERS]  # every customer changes region
    with store.work() as session:
        import_customers(
            session, store.facts, customers_file(tmp_path, moved), actor=world["fay"], now=NOW
        )
    world.accrue()
    approved_run = world.settlement(settlement_id).inputs["lines"][0]["run_id"]
    with store.work() as session:
        due = settlements.compute_due(session, store.facts, "A1", "C1", Q1)
    assert due.lines[0]["run_id"] != approved_run
    assert world.pay(settlement_id, document_number="CN-1").amount == D("200.00")


def test_an_expired_credit_cannot_be_spent(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path, _form("rebate_balance"))
    settlement_id = world.propose()
    world.approve(settlement_id, "amy")
    world.pay(settlement_id)
    with store.work() as session:
        use = balances.request_use(
            session,
            "C1",
            amount=D("50"),
            order_reference="SO-1",
            idempotency_key="u",
            actor=world["fay"],
            now=NOW,
        )
    late = NOW + dt.timedelta(days=91)
    with store.work() as session, pytest.raises(balances.BalanceError, match="expired on"):
        balances.decide_use(
            session, use.id, approve=True, idempotency_key="d", actor=world["fred"], now=late
        )
    with store.work() as session:
        balances.decide_use(
            session,
            use.id,
            approve=False,
            reason="credit expired",
            idempotency_key="d2",
            actor=world["fred"],
            now=late,
        )
    with store.work() as session:
        expired = balances.expire_credits(session, as_of=late.date(), actor=world["fay"], now=late)
        assert [c.amount for c in expired] == [D("200.00")]


def test_instalments_are_approved_on_the_period_total(store: Store, tmp_path: Path) -> None:
    """Settling a period in instalments of 8,000 does not stay under the 10,000 band: the
    second is judged on the period's 16,000 (approver and finance), the third on 24,000, above
    amy's 20,000 limit."""
    world = World(store, tmp_path)
    world.agreement(_form("credit_note"))
    both = [{"role": "approver", "count": 1}, {"role": "finance", "count": 1}]
    expected = [(D("8000.00"), [{"role": "approver", "count": 1}]), (D("16000.00"), both)]
    for n, (basis, steps) in enumerate(expected):
        world.sales((f"L{n}", "C1", "P1", "2026-02-10", "1", "400000.00"))
        world.accrue()
        settlement_id = world.propose(key=f"part-{n}")
        proposed = world.settlement(settlement_id)
        assert (proposed.amount, proposed.approval_basis, proposed.steps) == (
            D("8000.00"),
            basis,
            steps,
        )
        if world.approve(settlement_id, "amy") == "proposed":
            world.approve(settlement_id, "fred")
        world.pay(settlement_id, document_number=f"CN-{n}")
    world.sales(("L2", "C1", "P1", "2026-02-10", "1", "400000.00"))
    world.accrue()
    third = world.propose(key="part-2")
    assert world.settlement(third).approval_basis == D("24000.00")
    with pytest.raises(PermissionDeniedError, match="approval basis 24000"):
        world.approve(third, "amy")
    assert world.approve(third, "abe") == "proposed"
    assert world.approve(third, "fred") == "approved"


def test_inputs_that_change_and_change_back_need_a_fresh_round(
    store: Store, tmp_path: Path
) -> None:
    world = _world(store, tmp_path)
    settlement_id = world.propose()
    world.approve(settlement_id, "amy")
    batch = world.sales(("L3", "C1", "P1", "2026-03-01", "1", "1000.00"))
    world.accrue()
    with store.work() as session:
        settlements.refresh(session, store.facts, settlement_id, actor=world["fay"], now=NOW)
        void_batch(session, store.facts, batch, reason="duplicate", actor=world["fay"], now=NOW)
    world.accrue()
    with store.work() as session:
        back = settlements.refresh(session, store.facts, settlement_id, actor=world["fay"], now=NOW)
        assert (back.amount, back.round, back.status) == (D("200.00"), 3, "proposed")
    with store.work() as session:
        assert approval_status(session, settlement_id).missing == ["approver x1"]
    assert world.approve(settlement_id, "amy", now=LATER) == "approved"


def test_a_document_number_is_booked_once(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)
    first, second = world.propose(), world.propose("C2")
    for settlement_id in (first, second):
        world.approve(settlement_id, "amy")
    world.pay(first, document_number="CN-7")
    with pytest.raises(settlements.SettlementError, match="credit_note CN-7 is booked already"):
        world.pay(second, document_number="CN-7")


def test_delegations_count_only_within_their_dates(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)
    settlement_id = world.propose()
    with store.work() as session:
        with pytest.raises(PermissionDeniedError, match="cannot grant themself"):
            delegate(
                session,
                delegator="amy",
                delegate_to="admin",
                valid_from=NOW.date(),
                valid_to=NOW.date() + dt.timedelta(days=7),
                reason="taking over",
                actor=world["admin"],
                now=NOW,
            )
        grant = delegate(
            session,
            delegator="amy",
            delegate_to="ivan",
            valid_from=NOW.date() + dt.timedelta(days=1),
            valid_to=NOW.date() + dt.timedelta(days=3),
            reason="holiday",
            actor=world["amy"],
            now=NOW,
        )
    with pytest.raises(PermissionDeniedError, match="needs the role approver or finance"):
        world.approve(settlement_id, "ivan")  # not yet
    with pytest.raises(PermissionDeniedError):
        world.approve(settlement_id, "ivan", now=NOW + dt.timedelta(days=3))  # over
    with store.work() as session:
        revoke_delegation(session, grant.id, actor=world["amy"], now=NOW)
    with pytest.raises(PermissionDeniedError):
        world.approve(settlement_id, "ivan", now=LATER)  # revoked
    assert world.settlement(settlement_id).status == "proposed"


def test_a_running_period_is_not_settled(store: Store, tmp_path: Path) -> None:
    """Q4 2026 runs until 31 December: its numbers can still change, so it is settled once it
    has ended (the customer's statement is signed off then too)."""
    world = World(store, tmp_path)
    world.agreement(_form("credit_note"))
    world.sales(("L1", "C1", "P1", "2026-10-15", "10", "10000.00"))
    world.accrue("2026-11-27")
    with store.work() as session, pytest.raises(settlements.SettlementError) as refused:
        settlements.propose(
            session, store.facts, agreement_code="A1", beneficiary="C1",
            period_start=dt.date(2026, 10, 1), idempotency_key="q4", actor=staff("fay"),
            now=NOW,
        )  # fmt: skip
    assert str(refused.value) == (
        "the rebate period of A1 / C1 runs until 2026-12-31; it is settled once it has ended"
    )
    with store.work() as session:
        assert session.scalar(select(func.count()).select_from(Settlement)) == 0
