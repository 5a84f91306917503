"""The demo company in a store, for the web application: ``fanli demo web`` (``make run``).

The bundled distributor (customers with Chinese names, products, two years of generated
sales, eight agreements of several kinds) is loaded through the services, as a company would:
- users for every role;
- a policy;
- the imports;
- each agreement submitted and approved;
- an accrual to the end of last month;
- settlements in every state (proposed, approved, paid in several forms, rejected);
- a periodic audit.

Everything goes through the same services and writes the same audit trail as real use. Every
demo user has the password ``DEMO_PASSWORD``. Approvers, finance and administrators also need
a second factor: the command prints their TOTP secrets, to enter in an authenticator app.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fanli.agreements.models import AgreementRecord, AgreementVersion
from fanli.agreements.service import add_version
from fanli.agreements.terms import Agreement
from fanli.compliance import review
from fanli.compliance.policy import Policy
from fanli.compliance.service import publish
from fanli.config import company_now
from fanli.customers.credit_code import check_character
from fanli.customers.models import Customer, DueDiligenceKind
from fanli.customers.service import add_due_diligence, assign
from fanli.db.session import unit_of_work
from fanli.demo import data_path, demo_agreements, export_demo
from fanli.kit.errors import FanliError
from fanli.ledger.service import accrue
from fanli.oversight.audits import run_audit
from fanli.sales.service import import_customers, import_products, import_sales
from fanli.sales.store import FactStore
from fanli.settlements import service as settlements
from fanli.settlements.models import StatementDecision
from fanli.settlements.statements import period_statement, respond, running_until
from fanli.users.actor import Actor, Role
from fanli.users.auth import enrol_second_factor, set_password
from fanli.users.models import User
from fanli.users.queries import actor, as_actor
from fanli.users.service import create_user

DEMO_PASSWORD = "fanli-demo-2026"  # noqa: S105 - the demo's, printed at start
# code, name, roles, approval limit, customer
USERS = [
    ("admin", "管理员 Admin", ["administrator"], None, None),
    ("sales", "销售 李明", ["sales"], None, None),
    ("finance", "财务 王芳", ["finance"], "500000", None),
    ("approver", "审批 张伟", ["approver"], "1000000", None),
    ("compliance", "合规 陈静", ["compliance"], None, None),
    ("auditor", "内审 刘洋", ["internal_auditor"], None, None),
    ("external", "外审 赵磊", ["external_auditor"], None, None),
    ("c001", "上海华东食品贸易 采购", ["customer"], None, "C001"),
]
POLICY = {
    "title": "返利政策 2026",
    "text": "返利须有书面协议，经审批后只支付给客户法人主体。Rebates are written, approved "
    "and paid only to the customer entity.",
    "rates": [{"max_percent": "10"}, {"max_per_unit": "5"}],
    "max_settlement": [{"amount": "2000000"}],
    "settlement_forms": [
        "credit_note",
        "red_invoice",
        "bank_transfer",
        "rebate_balance",
        "receivable_offset",
    ],
    "agreement_approval": [{"role": "approver"}],
    "deviation": {"role": "compliance"},
    "settlement_approval": [
        {"from": "0", "to": "100000", "steps": [{"role": "approver"}]},
        {"from": "100000", "steps": [{"role": "approver"}, {"role": "finance"}]},
    ],
    "due_diligence": {"required": ["blacklist_check"]},
    "rebate_balance": {"validity_days": 180},
}


@dataclass
class DemoStore:
    secrets: dict[str, str] = field(default_factory=dict)  # user -> TOTP secret
    notes: list[str] = field(default_factory=list)  # what was built, for the console


def credit_code(n: int) -> str:
    """A valid 统一社会信用代码 of a company (organisation type 91), made from ``n``."""
    first17 = f"9131000{n:010d}"
    return first17 + check_character(first17)


def _customers_file(folder: Path) -> Path:
    """The demo customers, with a credit code each: the store pays only legal entities."""
    target = folder / "customers-with-codes.csv"
    with data_path("customers.csv").open(encoding="utf-8") as source:
        rows = list(csv.reader(source))
    with target.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([*rows[0], "统一社会信用代码"])
        for n, row in enumerate(rows[1:], start=1):
            writer.writerow([*row, credit_code(n)])
    return target


def build(sessions: sessionmaker[Session], facts: FactStore, folder: Path) -> DemoStore:
    """Build the demo company into an empty, migrated store."""
    built = DemoStore()
    now = company_now()  # the demo's dates are the company's days
    with unit_of_work(sessions) as session:
        admin = as_actor(
            create_user(
                session, "admin", name=USERS[0][1], roles=[Role.ADMINISTRATOR], actor=None, now=now
            )
        )
        # Customer users come once their customers are imported (a user names a real entity).
        for code, name, roles, limit, customer in [u for u in USERS[1:] if not u[4]]:
            create_user(
                session,
                code,
                name=name,
                roles=[Role(role) for role in roles],
                approval_limit=Decimal(limit) if limit else None,
                customer_code=customer,
                actor=admin,
                now=now,
            )
        for code, *_rest in USERS:
            if not _rest[3]:
                # The demo's published password is everyone's by design: not one to change
                # at the first sign-in.
                set_password(session, code, DEMO_PASSWORD, actor=admin, now=now, must_change=False)
        for code in ("admin", "finance", "approver"):
            built.secrets[code] = enrol_second_factor(session, code, actor=admin, now=now)
        publish(session, Policy.model_validate(POLICY), actor=actor(session, "compliance"), now=now)
    files = export_demo(folder)
    sales_file = next(path for path in files if path.name == "sales.csv")
    with unit_of_work(sessions) as session:
        finance = actor(session, "finance")
        import_customers(session, facts, _customers_file(folder), actor=finance, now=now)
        for code, name, roles, _limit, customer in [u for u in USERS[1:] if u[4]]:
            create_user(
                session,
                code,
                name=name,
                roles=[Role(role) for role in roles],
                customer_code=customer,
                actor=admin,
                now=now,
            )
            set_password(session, code, DEMO_PASSWORD, actor=admin, now=now, must_change=False)
        who = {code: actor(session, code) for code, *_rest in USERS}
        import_products(session, facts, data_path("products.csv"), actor=who["finance"], now=now)
        today = now.date()
        for code in _customer_codes(session):
            add_due_diligence(
                session,
                code,
                kind=DueDiligenceKind.BLACKLIST_CHECK,
                passed=True,
                reference=f"黑名单核查-{code}",
                checked_on=today,
                expires_on=today + dt.timedelta(days=365),
                actor=who["compliance"],
                now=now,
            )
        for code in ("C001", "C002", "C003", "C004", "C005"):
            assign(session, code, "sales", actor=admin, now=now)
    with unit_of_work(sessions) as session:
        import_sales(session, facts, sales_file, actor=who["finance"], now=now)
    for terms in demo_agreements():
        # The demo's files are for calculating; a store also needs the signed contract.
        signed = {
            **terms.model_dump(by_alias=True, mode="json", exclude_none=True),
            "contract": {
                "reference": f"HT-2026-{terms.id}",
                "document_sha256": hashlib.sha256(terms.id.encode()).hexdigest(),
            },
        }
        _approve(sessions, Agreement.model_validate(signed), who, now)
    last_month_end = today.replace(day=1) - dt.timedelta(days=1)
    with unit_of_work(sessions) as session:
        accrue(session, facts, as_of=last_month_end, actor=who["finance"], now=now)
    built.notes.append(f"accrued to {last_month_end}")
    built.notes.extend(_settle(sessions, facts, who, now))
    built.notes.extend(_answer_statements(sessions, facts, who["c001"], now))
    with unit_of_work(sessions) as session:
        run = run_audit(
            session, facts, last_month_end.strftime("%Y-%m"), actor=who["auditor"], now=now
        )
        built.notes.append(f"audit of {run.period}: {run.found} findings")
    return built


def _customer_codes(session: Session) -> list[str]:
    return list(session.scalars(select(Customer.code).order_by(Customer.code)))


def _approve(
    sessions: sessionmaker[Session], terms: Agreement, who: dict[str, Actor], now: dt.datetime
) -> None:
    with unit_of_work(sessions) as session:
        version = add_version(session, terms, actor=who["sales"], now=now)
        review.submit(
            session,
            version.id,
            justification="演示协议 demo agreement",
            actor=who["sales"],
            now=now,
        )
        for step in ("approver", "compliance"):
            current = session.get(AgreementVersion, version.id)
            if current is None or current.status == "active":
                break
            review.approve(
                session,
                version.id,
                terms_hash=current.terms_hash,
                actor=who[step],
                now=now,
            )


def _settle(
    sessions: sessionmaker[Session], facts: FactStore, who: dict[str, Actor], now: dt.datetime
) -> list[str]:
    """Settlements in every state, from the first results that allow them."""
    notes: list[str] = []
    with unit_of_work(sessions) as session:
        codes = list(session.scalars(select(AgreementRecord.code).order_by(AgreementRecord.code)))
        customers = _customer_codes(session)
    wanted = ["paid", "paid", "approved", "proposed", "proposed", "rejected"]
    attempt = 0
    for agreement in codes:
        for customer in customers:
            if not wanted:
                return notes
            for start in _period_starts():
                attempt += 1
                try:
                    state = _one(
                        sessions, facts, who, now, agreement, customer, start, attempt, wanted[0]
                    )
                except FanliError:
                    continue
                notes.append(f"settlement {agreement}/{customer}/{start}: {state}")
                wanted.pop(0)
                break
    return notes


def _answer_statements(
    sessions: sessionmaker[Session], facts: FactStore, buyer: Actor, now: dt.datetime
) -> list[str]:
    """C001's buyer signs off its first quarter and disputes its second, so the portal shows
    both answers and finance finds a dispute to answer in its inbox."""
    notes = []
    first, second, *_later = _period_starts()
    with unit_of_work(sessions) as session:
        for start, decision, comment in (
            (first, StatementDecision.SIGNED_OFF, ""),
            (second, StatementDecision.DISPUTED, "五月的退货单 RT-0518 未冲减，请核对。"),
        ):
            shown = period_statement(session, facts, "C001", start)
            if not shown.rows or running_until(shown, now.date()) is not None:
                continue  # nothing to answer yet on this day
            respond(session, facts, "C001", start, decision=decision, comment=comment,
                    actor=buyer, now=now)  # fmt: skip
            notes.append(f"C001 {decision.value} its statement from {start}")
    return notes


def _period_starts() -> list[dt.date]:
    return [dt.date(2026, month, 1) for month in (1, 4, 7)]


def _one(  # noqa: PLR0917 - one settlement taken to one state
    sessions: sessionmaker[Session],
    facts: FactStore,
    who: dict[str, Actor],
    now: dt.datetime,
    agreement: str,
    customer: str,
    start: dt.date,
    attempt: int,
    state: str,
) -> str:
    with unit_of_work(sessions) as session:
        proposed = settlements.propose(
            session,
            facts,
            agreement_code=agreement,
            beneficiary=customer,
            period_start=start,
            idempotency_key=f"demo-propose-{attempt}",
            actor=who["finance"],
            now=now,
        )
    if state == "proposed":
        return state
    if state == "rejected":
        with unit_of_work(sessions) as session:
            settlements.reject(
                session,
                proposed.id,
                reason="演示：金额待核对",
                actor=who["approver"],
                now=now,
            )
        return state
    with unit_of_work(sessions) as session:
        done = settlements.approve(
            session,
            facts,
            proposed.id,
            idempotency_key=f"demo-approve-{attempt}",
            actor=who["approver"],
            now=now,
        )
    if done.status != "approved" or state == "approved":
        return done.status
    with unit_of_work(sessions) as session:
        settlements.pay(
            session,
            facts,
            proposed.id,
            document_number=f"CN-DEMO-{attempt}",
            idempotency_key=f"demo-pay-{attempt}",
            actor=who["finance"],
            now=now,
        )
    return "paid"


def is_built(sessions: sessionmaker[Session]) -> bool:
    with unit_of_work(sessions) as session:
        return session.scalar(select(User.id).limit(1)) is not None
