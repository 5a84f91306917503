"""Every state-changing service call writes exactly one audit event.

The test walks the whole life of a programme through the services, one call per unit of work,
and counts the events each call adds. The list of services is not written by hand: every
public function in the domains that takes a ``session`` and an ``actor`` must be walked (or
named in ``NOT_CALLS``, with the reason), so a new service without an event fails here.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyotp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import fanli
from fanli.agreements import service as agreements
from fanli.agreements.models import AgreementVersion
from fanli.audit.models import AuditEvent
from fanli.audit.trail import verify
from fanli.compliance import review
from fanli.compliance.policy import Policy
from fanli.compliance.service import publish
from fanli.customers import service as customers
from fanli.customers.models import DueDiligenceKind
from fanli.ledger.export import export_gl
from fanli.ledger.periods import close_period
from fanli.ledger.service import accrue
from fanli.oversight import audits
from fanli.oversight.checkpoints import make_checkpoint
from fanli.oversight.export import export_bundle
from fanli.oversight.models import Finding
from fanli.sales import service as sales
from fanli.settlements import balance as balances
from fanli.settlements import service as settlements
from fanli.settlements import statements
from fanli.settlements.models import DisputeOutcome, StatementDecision
from fanli.users import auth
from fanli.users import service as users
from fanli.users.actor import Actor, Role
from store.builders import (
    POLICY,
    customers_file,
    percent_agreement,
    products_file,
    sales_file,
)
from store.conftest import NOW, Store
from store.test_settlements import World

# Public functions that take a session and an actor but change nothing themselves.
NOT_CALLS = {
    "fanli.audit.service.record": "the recorder itself",
    "fanli.settlements.queries.waiting_for": "a query: what the actor may approve",
    "fanli.settlements.service.approval_slot": "a query: which open step the actor may fill",
    "fanli.agreements.service.submit_version": "a step of compliance.review.submit",
    "fanli.agreements.service.return_to_draft": "a step of review.withdraw and review.reject",
    "fanli.agreements.service.activate_version": "a step of compliance.review.approve",
    "fanli.agreements.service.add_versions": "add_version for each file's agreements",
}
# State changes that take no actor: sign-in and sessions.
WITHOUT_ACTOR = {
    "fanli.users.auth.sign_in",
    "fanli.users.auth.sign_out",
    "fanli.users.auth.settle_session",
}


def _services() -> set[str]:
    found = set()
    for module_info in pkgutil.walk_packages(fanli.__path__, "fanli."):
        if module_info.name.startswith(("fanli.interfaces", "fanli.demo")):
            continue
        module = importlib.import_module(module_info.name)
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != module.__name__ or name.startswith("_"):
                continue
            parameters = inspect.signature(function).parameters
            if "session" in parameters and "actor" in parameters:
                found.add(f"{module.__name__}.{name}")
    return found


class Walk:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.walked: dict[str, list[int]] = {}

    def _events(self) -> int:
        with self.store.work() as session:
            return session.scalar(select(func.count()).select_from(AuditEvent)) or 0

    def __call__(self, service: Callable[..., Any], call: Callable[[Session], Any]) -> Any:
        before = self._events()
        with self.store.work() as session:
            result = call(session)
        name = f"{service.__module__}.{service.__name__}"
        self.walked.setdefault(name, []).append(self._events() - before)
        return result


def test_every_state_change_writes_exactly_one_event(store: Store, tmp_path: Path) -> None:
    world = World(store, tmp_path)
    who = world.who
    facts = store.facts
    step = Walk(store)
    rebate_balance = {"settlement": {"form": "rebate_balance"}}
    day = NOW.date()

    # People, policy, master data.
    step(
        users.create_user,
        lambda s: users.create_user(
            s, "zoe", name="Zoe", roles=["finance"], actor=who["admin"], now=NOW
        ),
    )
    step(publish, lambda s: publish(s, Policy.model_validate(POLICY), actor=who["cora"], now=NOW))
    step(
        sales.import_customers,
        lambda s: sales.import_customers(
            s, facts, customers_file(tmp_path), actor=who["fay"], now=NOW
        ),
    )
    step(
        sales.import_products,
        lambda s: sales.import_products(
            s, facts, products_file(tmp_path), actor=who["fay"], now=NOW
        ),
    )
    step(customers.assign, lambda s: customers.assign(s, "C1", "sam", actor=who["admin"], now=NOW))
    account = step(
        customers.register_account,
        lambda s: (
            customers.register_account(
                s,
                "C1",
                bank_name="工商银行",
                account_number="1",
                holder_name="上海华东食品贸易有限公司",
                country="CN",
                actor=who["fay"],
                now=NOW,
            ).id
        ),
    )
    step(
        customers.verify_account,
        lambda s: customers.verify_account(s, account, actor=who["fred"], now=NOW),
    )
    step(
        customers.add_due_diligence,
        lambda s: customers.add_due_diligence(
            s,
            "C1",
            kind=DueDiligenceKind.BLACKLIST_CHECK,
            passed=True,
            reference="BL-1",
            checked_on=day,
            expires_on=day + dt.timedelta(days=365),
            actor=who["cora"],
            now=NOW,
        ),
    )

    # An agreement through its review: withdrawn, rejected, approved.
    version = step(
        agreements.add_version,
        lambda s: (
            agreements.add_version(
                s, percent_agreement(**rebate_balance), actor=who["sam"], now=NOW
            ).id
        ),
    )
    step(
        agreements.edit_draft,
        lambda s: agreements.edit_draft(
            s, version, percent_agreement(rate="3", **rebate_balance), actor=who["sam"], now=NOW
        ),
    )
    step(review.submit, lambda s: review.submit(s, version, actor=who["sam"], now=NOW))
    step(
        review.withdraw,
        lambda s: review.withdraw(s, version, reason="fix", actor=who["sam"], now=NOW),
    )
    step(review.submit, lambda s: review.submit(s, version, actor=who["sam"], now=NOW))
    step(review.reject, lambda s: review.reject(s, version, reason="no", actor=who["abe"], now=NOW))
    step(review.submit, lambda s: review.submit(s, version, actor=who["sam"], now=NOW))

    def _approve(s: Session) -> Any:
        terms_hash = s.get(AgreementVersion, version).terms_hash  # type: ignore[union-attr]
        return review.approve(s, version, terms_hash=terms_hash, actor=who["abe"], now=NOW)

    step(review.approve, _approve)

    # Sales, the accrual, a settlement paid into the rebate balance, and its use.
    lines = [
        ("L1", "C1", "P1", "2026-02-10", "10", "10000.00"),
        ("L2", "C2", "P1", "2026-02-11", "1", "500.00"),
    ]
    batch = step(
        sales.import_sales,
        lambda s: (
            sales.import_sales(
                s, facts, sales_file(tmp_path, "s1.csv", lines), actor=who["fay"], now=NOW
            ).batch_id
        ),
    )
    as_of = dt.date(2026, 3, 31)
    step(accrue, lambda s: accrue(s, facts, as_of=as_of, actor=who["fay"], now=NOW))
    first = step(
        settlements.propose,
        lambda s: (
            settlements.propose(
                s,
                facts,
                agreement_code="A1",
                beneficiary="C1",
                period_start=dt.date(2026, 1, 1),
                idempotency_key="p1",
                actor=who["fay"],
                now=NOW,
            ).id
        ),
    )
    step(
        settlements.approve,
        lambda s: settlements.approve(
            s, facts, first, idempotency_key="a1", actor=who["amy"], now=NOW
        ),
    )
    step(
        settlements.pay,
        lambda s: settlements.pay(
            s, facts, first, idempotency_key="pay1", actor=who["fay"], now=NOW
        ),
    )
    use = step(
        balances.request_use,
        lambda s: (
            balances.request_use(
                s,
                "C1",
                amount=Decimal("150.00"),
                order_reference="SO-1",
                idempotency_key="u1",
                actor=who["fay"],
                now=NOW,
            ).id
        ),
    )
    step(
        balances.decide_use,
        lambda s: balances.decide_use(
            s, use, approve=True, idempotency_key="d1", actor=who["fred"], now=NOW
        ),
    )
    expiry = day + dt.timedelta(days=90)
    step(
        balances.expire_credits,
        lambda s: balances.expire_credits(
            s,
            as_of=expiry,
            actor=who["fay"],
            now=dt.datetime.combine(expiry, dt.time(18), tzinfo=dt.UTC),
        ),
    )

    # A second settlement: refreshed after more sales, then rejected.
    second = step(
        settlements.propose,
        lambda s: (
            settlements.propose(
                s,
                facts,
                agreement_code="A1",
                beneficiary="C2",
                period_start=dt.date(2026, 1, 1),
                idempotency_key="p2",
                actor=who["fay"],
                now=NOW,
            ).id
        ),
    )
    more = [("L3", "C2", "P1", "2026-02-12", "1", "700.00")]
    step(
        sales.import_sales,
        lambda s: sales.import_sales(
            s, facts, sales_file(tmp_path, "s2.csv", more), actor=who["fay"], now=NOW
        ),
    )
    step(accrue, lambda s: accrue(s, facts, as_of=as_of, actor=who["fay"], now=NOW))
    step(
        settlements.refresh,
        lambda s: settlements.refresh(s, facts, second, actor=who["fay"], now=NOW),
    )
    step(
        settlements.reject,
        lambda s: settlements.reject(s, second, reason="no", actor=who["amy"], now=NOW),
    )

    # The month end.
    step(close_period, lambda s: close_period(s, "2026-03", actor=who["fay"], now=NOW))
    step(
        export_gl,
        lambda s: export_gl(s, facts, "2026-03", tmp_path / "gl.csv", actor=who["fay"], now=NOW),
    )
    step(
        sales.void_batch,
        lambda s: sales.void_batch(
            s, store.facts, batch, reason="wrong", actor=who["fay"], now=NOW
        ),
    )

    # The end of agreements: one terminated, one expired.
    step(
        agreements.terminate,
        lambda s: agreements.terminate(
            s, "A1", on=dt.date(2026, 12, 31), reason="ends", actor=who["sam"], now=NOW
        ),
    )
    given_up = step(
        agreements.add_version,
        lambda s: agreements.add_version(s, percent_agreement("A9"), actor=who["sam"], now=NOW).id,
    )
    step(
        agreements.discard_draft,
        lambda s: agreements.discard_draft(
            s, given_up, reason="a test draft", actor=who["sam"], now=NOW
        ),
    )
    short = step(
        agreements.add_version,
        lambda s: (
            agreements.add_version(
                s, percent_agreement("A2", end="2026-07-01"), actor=who["sam"], now=NOW
            ).id
        ),
    )
    step(review.submit, lambda s: review.submit(s, short, actor=who["sam"], now=NOW))
    version = short
    step(review.approve, _approve)
    step(
        agreements.expire_ended,
        lambda s: agreements.expire_ended(s, as_of=dt.date(2026, 7, 2), actor=who["fay"], now=NOW),
    )

    # Sign-in, second factor, sessions, tokens, delegation, disabling.
    step(
        auth.set_password,
        lambda s: auth.set_password(s, "zoe", "a long passphrase", actor=who["admin"], now=NOW),
    )
    secret = step(
        auth.enrol_second_factor,
        lambda s: auth.enrol_second_factor(s, "zoe", actor=who["admin"], now=NOW),
    )
    signed = step(
        auth.sign_in,
        lambda s: auth.sign_in(
            s,
            "zoe",
            "a long passphrase",
            totp_code=pyotp.TOTP(secret).at(NOW),
            source="10.0.0.1",
            now=NOW,
        ),
    )
    step(auth.sign_out, lambda s: auth.sign_out(s, signed.token, now=NOW))
    again = step(
        auth.sign_in,
        lambda s: auth.sign_in(
            s, "zoe", "wrong password!", totp_code=None, source="10.0.0.1", now=NOW
        ),
    )
    assert again.outcome is auth.Outcome.REFUSED  # a refused sign-in is recorded too
    idle = step(
        auth.sign_in,
        lambda s: auth.sign_in(
            s,
            "zoe",
            "a long passphrase",
            # a code signs in once: the next step's, which a clock one step off would show
            totp_code=pyotp.TOTP(secret).at(NOW + dt.timedelta(seconds=30)),
            source="10.0.0.1",
            now=NOW,
        ),
    )
    later = NOW + dt.timedelta(hours=1)
    step(
        auth.settle_session,
        lambda s: auth.settle_session(s, auth.check_session(s, idle.token, now=later), now=later),
    )
    token = step(
        auth.create_token,
        lambda s: (
            auth.create_token(
                s, name="erp", roles=[auth.Role.FINANCE], days=30, actor=who["fay"], now=NOW
            )[1].id
        ),
    )
    step(auth.revoke_token, lambda s: auth.revoke_token(s, token, actor=who["fay"], now=NOW))
    delegation = step(
        users.delegate,
        lambda s: (
            users.delegate(
                s,
                delegator="amy",
                delegate_to="abe",
                valid_from=day,
                valid_to=day + dt.timedelta(days=7),
                reason="leave",
                actor=who["admin"],
                now=NOW,
            ).id
        ),
    )
    step(
        users.revoke_delegation,
        lambda s: users.revoke_delegation(s, delegation, actor=who["admin"], now=NOW),
    )
    step(
        users.disable_user,
        lambda s: users.disable_user(s, "zoe", reason="left", actor=who["admin"], now=NOW),
    )

    # The audit's own changes.
    key = Ed25519PrivateKey.generate()
    step(make_checkpoint, lambda s: make_checkpoint(s, key, actor=who["ivan"], now=NOW))
    step(
        export_bundle,
        lambda s: export_bundle(s, "2026-03", tmp_path / "bundle", key, actor=who["ivan"], now=NOW),
    )

    # The customer disputes its statement, finance answers (the numbers stand), and the
    # customer then signs it off.
    buyer = Actor(id=0, code="c1", roles=frozenset({Role.CUSTOMER}), customer_code="C1")

    def answer(decision: StatementDecision, comment: str) -> Any:
        return step(
            statements.respond,
            lambda s: statements.respond(
                s, facts, "C1", dt.date(2026, 1, 1), decision=decision, comment=comment,
                actor=buyer, now=NOW,
            ),
        )  # fmt: skip

    disputed = answer(StatementDecision.DISPUTED, "INV-9 is missing")
    step(
        statements.answer_dispute,
        lambda s: statements.answer_dispute(
            s,
            disputed.id,
            outcome=DisputeOutcome.UPHELD,
            comment="INV-9 is dated in April",
            actor=who["fay"],
            now=NOW,
        ),
    )
    answer(StatementDecision.SIGNED_OFF, "")

    # The periodic audit and its findings' workflow.
    step(
        audits.run_audit,
        lambda s: audits.run_audit(s, facts, "2026-03", actor=who["ivan"], now=NOW),
    )
    with store.work() as session:
        session.add(
            Finding(
                detector="round_lump_sums",
                fingerprint="payout:0",
                period="2026-03",
                department="finance",
                summary="made for the walk",
                evidence={},
                first_run_id=1,
                last_run_id=1,
                opened_at=NOW,
            )
        )
        session.add(
            Finding(
                detector="round_lump_sums",
                fingerprint="payout:-1",
                period="2026-03",
                department="finance",
                summary="made for the walk",
                evidence={},
                first_run_id=1,
                last_run_id=1,
                opened_at=NOW,
            )
        )
    with store.work() as session:
        first, second = sorted(session.scalars(select(Finding.id)))[-2:]
    step(
        audits.assign_finding,
        lambda s: audits.assign_finding(s, first, "fay", actor=who["ivan"], now=NOW),
    )
    step(
        audits.resolve_finding,
        lambda s: audits.resolve_finding(s, first, reason="done", actor=who["fay"], now=NOW),
    )
    step(
        audits.dismiss_finding,
        lambda s: audits.dismiss_finding(s, second, reason="fine", actor=who["ivan"], now=NOW),
    )

    # Every service walked, and each call wrote exactly one event.
    expected = (_services() - set(NOT_CALLS)) | WITHOUT_ACTOR
    assert sorted(expected - set(step.walked)) == []
    assert {name: counts for name, counts in step.walked.items() if set(counts) != {1}} == {}
    with store.work() as session:
        assert verify(session).holds
