"""Small literal inputs for store tests: customer, product and sales files, agreement terms."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from fanli.agreements.models import AgreementVersion
from fanli.agreements.terms import Agreement
from fanli.audit.models import AuditEvent
from fanli.compliance import review
from fanli.compliance.policy import Policy
from fanli.compliance.service import publish
from fanli.users.actor import Actor, Role
from fanli.users.models import User
from fanli.users.queries import actor, as_actor
from fanli.users.service import create_user

CUSTOMERS = [
    # code, legal name, 统一社会信用代码 (valid check characters), segment, region
    ("C1", "上海华东食品贸易有限公司", "91350100M000100Y43", "批发", "华东"),
    ("C2", "北京京北商贸有限公司", "91110000600037341L", "零售", "华北"),
    ("C3", "广州南粤连锁有限公司", "", "零售", "华南"),
]
PRODUCTS = [("P1", "矿泉水550ml", "饮料", "清泉"), ("P2", "苏打水", "饮料", "清泉")]


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def customers_file(directory: Path, rows: Sequence[Sequence[Any]] = CUSTOMERS) -> Path:
    return write_csv(
        directory / "customers.csv",
        ("客户编码", "客户名称", "统一社会信用代码", "客户分类", "区域"),
        rows,
    )


def products_file(directory: Path, rows: Sequence[Sequence[Any]] = PRODUCTS) -> Path:
    return write_csv(directory / "products.csv", ("物料编码", "物料名称", "品类", "品牌"), rows)


def sales_file(directory: Path, name: str, lines: Sequence[Sequence[Any]]) -> Path:
    """Lines: (line id, customer, product, invoice date, quantity, net amount), each with its
    currency as a seventh value where any has one (the others are written without)."""
    header = ("line_id", "customer_id", "product_id", "invoice_date", "quantity", "net_amount")
    if any(len(line) > len(header) for line in lines):
        header = (*header, "currency")
        lines = [[*line, *[""] * (len(header) - len(line))] for line in lines]
    return write_csv(directory / name, header, lines)


def percent_agreement(
    code: str = "A1",
    *,
    rate: str = "2",
    start: str = "2026-01-01",
    end: str = "2027-01-01",
    effective_from: str | None = None,
    tiers: list[dict[str, str]] | None = None,
    **extra: Any,
) -> Agreement:
    """A quarterly percent-of-net programme for every customer."""
    data: dict[str, Any] = {
        "id": code,
        "name": f"programme {code}",
        "term": {"start": start, "end": end},
        "rebate": {
            "form": "percent",
            "basis": "net",
            "tiers": tiers or [{"from": "0", "rate": rate}],
        },
        "periods": {"kind": "quarter"},
        "contract": CONTRACT,
        **extra,
    }
    if effective_from:
        data["effective_from"] = effective_from
    return Agreement.model_validate(data)


# ---- people, policy and the approval path ---------------------------------------------------

CONTRACT = {"reference": "HT-2026-001", "document_sha256": "ab" * 32}
POLICY = {
    "title": "返利政策 2026",
    "text": "Rebates are written, approved, paid only to the customer entity.",
    "rates": [
        {"max_percent": "10"},
        {"segment": "零售", "max_percent": "5"},
        {"max_per_unit": "2"},
    ],
    "max_settlement": [{"amount": "1000000"}],
    "settlement_forms": [
        "credit_note",
        "red_invoice",
        "bank_transfer",
        "rebate_balance",
        "receivable_offset",
    ],
    "agreement_approval": [{"role": "approver", "count": 1}],
    "deviation": {"role": "compliance"},
    "settlement_approval": [
        {"from": "0", "to": "10000", "steps": [{"role": "approver"}]},
        {"from": "10000", "steps": [{"role": "approver"}, {"role": "finance"}]},
    ],
    "due_diligence": {"required": []},
    "rebate_balance": {"validity_days": 90},
}
# code, roles, approval limit
PEOPLE = [
    ("admin", ("administrator",), None),
    ("sam", ("sales",), None),
    ("fay", ("finance",), None),
    ("fred", ("finance",), "50000"),  # a second finance user who approves
    ("amy", ("approver",), "20000"),
    ("abe", ("approver",), "1000000"),
    ("cora", ("compliance",), None),
    ("ivan", ("internal_auditor",), None),
    ("eve", ("external_auditor",), None),
]


def people(session: Any, now: Any, policy: dict[str, Any] | None = None) -> dict[str, Any]:
    """The users of ``PEOPLE`` and the policy, created once per store; their actors by code."""
    if session.scalar(select(User.id).where(User.code == "admin")) is None:
        admin = as_actor(
            create_user(
                session, "admin", name="Admin", roles=["administrator"], actor=None, now=now
            )
        )
        for code, roles, limit in PEOPLE[1:]:
            create_user(
                session,
                code,
                name=code.title(),
                roles=roles,
                approval_limit=Decimal(limit) if limit else None,
                actor=admin,
                now=now,
            )
        publish(
            session, Policy.model_validate(policy or POLICY), actor=actor(session, "cora"), now=now
        )
    return {code: actor(session, code) for code, _roles, _limit in PEOPLE}


def activate(session: Any, version_id: int, *, now: Any, justification: str | None = None) -> Any:
    """Submit a draft version and approve it the way the policy asks: sales submits, an
    approver (and compliance, for a deviation) approves."""
    who = people(session, now)
    review.submit(session, version_id, justification=justification, actor=who["sam"], now=now)
    version = session.get(AgreementVersion, version_id)
    review.approve(session, version_id, terms_hash=version.terms_hash, actor=who["abe"], now=now)
    if version.status != "active":
        review.approve(
            session, version_id, terms_hash=version.terms_hash, actor=who["cora"], now=now
        )
    return version


def staff(code: str) -> Actor:
    """An actor holding every staff role, for tests about something other than permissions.
    Services check roles, not the user table; the audit trail records ``code``."""
    return Actor(id=0, code=code, roles=frozenset(Role) - {Role.CUSTOMER})


def last_event(session: Any, type_: str) -> AuditEvent:
    """The latest audit event of a type."""
    return session.scalars(
        select(AuditEvent).where(AuditEvent.type == type_).order_by(AuditEvent.seq.desc()).limit(1)
    ).one()
