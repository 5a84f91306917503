"""Reading settlements: one settlement's approval status, and what waits for a user."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fanli.agreements.models import AgreementRecord, AgreementVersion, VersionStatus
from fanli.agreements.service import approvals_of, missing_approvals
from fanli.customers.models import BankAccount
from fanli.settlements.models import Payout, Settlement, SettlementApproval, SettlementStatus
from fanli.settlements.service import SettlementError, approval_slot, approvals, missing_steps
from fanli.users.actor import Actor, Role


@dataclass(frozen=True)
class ApprovalStatus:
    settlement: Settlement
    approvals: list[SettlementApproval]  # those given for the current inputs
    missing: list[str]  # open steps, "role xN"
    payout: Payout | None


def approval_status(session: Session, settlement_id: int) -> ApprovalStatus:
    settlement = session.get(Settlement, settlement_id)
    if settlement is None:
        raise SettlementError.said("there is no settlement {id}", id=settlement_id)
    given = approvals(session, settlement)
    payout = session.scalar(select(Payout).where(Payout.settlement_id == settlement.id))
    return ApprovalStatus(settlement, given, missing_steps(settlement, given), payout)


def settlements(
    session: Session, *, status: SettlementStatus | None = None, beneficiary: str | None = None
) -> list[Settlement]:
    query = select(Settlement).order_by(Settlement.id)
    if status is not None:
        query = query.where(Settlement.status == status)
    if beneficiary is not None:
        query = query.where(Settlement.beneficiary == beneficiary)
    return list(session.scalars(query))


LISTED = (
    Settlement.id,
    Settlement.agreement_code,
    Settlement.beneficiary,
    Settlement.period_start,
    Settlement.period_end,
    Settlement.currency,
    Settlement.amount,
    Settlement.approval_basis,
    Settlement.form,
    Settlement.status,
    Settlement.steps,
    Settlement.proposed_by,
    Settlement.rejection_reason,
)


def settlement_page(
    session: Session,
    *,
    status: SettlementStatus | None = None,
    beneficiary: str | None = None,
    customers: set[str] | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], int]:
    """One page of settlements, newest first, as rows of ``LISTED`` columns, and how many
    match (``customers``: only these beneficiaries). Rows, not objects: a list page is read
    often and shows neither the inputs nor anything to change."""
    conditions = []
    if status is not None:
        conditions.append(Settlement.status == status)
    if beneficiary is not None:
        conditions.append(Settlement.beneficiary == beneficiary)
    if customers is not None:
        conditions.append(Settlement.beneficiary.in_(sorted(customers)))
    total = session.scalar(select(func.count(Settlement.id)).where(*conditions)) or 0
    rows = session.execute(
        select(*LISTED)
        .where(*conditions)
        .order_by(Settlement.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return [dict(row._mapping) for row in rows], total


@dataclass(frozen=True)
class SettledResult:
    """A run result a settlement settles: the key the engine's explanation of it is read by."""

    run_id: int
    agreement_code: str
    version: int  # the version's number
    beneficiary: str
    period_index: int


def settled_results(session: Session, rows: list[Settlement]) -> dict[int, list[SettledResult]]:
    """By settlement id: the results each settles, one per version line of its inputs, in
    their order (lines recorded without their run are left out)."""
    lines = {row.id: row.inputs.get("lines", []) for row in rows}
    ids = {line["version_id"] for found in lines.values() for line in found}
    query = select(AgreementVersion.id, AgreementVersion.version)
    numbers: dict[int, int] = dict(session.execute(query.where(AgreementVersion.id.in_(ids))).all())
    return {
        row.id: [
            SettledResult(
                line["run_id"],
                row.agreement_code,
                numbers[line["version_id"]],
                row.beneficiary,
                line["period_index"],
            )
            for line in lines[row.id]
            if line.get("run_id") is not None and line["version_id"] in numbers
        ]
        for row in rows
    }


@dataclass(frozen=True)
class PayoutRow:
    """A payout as its beneficiary sees it: when, for what, how, and the document to find it by."""

    settlement_id: int
    agreement_code: str
    period_start: dt.date
    paid_at: dt.datetime
    form: str
    amount: Decimal
    currency: str
    document_number: str | None
    bank_name: str | None  # a transfer's bank, and the account's last four digits
    account_tail: str | None


def payouts_of(session: Session, beneficiary: str) -> list[PayoutRow]:
    """Every payout to ``beneficiary``, newest first."""
    rows = session.execute(
        select(Payout, Settlement, BankAccount.bank_name, BankAccount.account_number)
        .join(Settlement, Settlement.id == Payout.settlement_id)
        .outerjoin(BankAccount, BankAccount.id == Payout.bank_account_id)
        .where(Settlement.beneficiary == beneficiary)
        .order_by(Payout.paid_at.desc(), Payout.id.desc())
    ).all()
    return [
        PayoutRow(
            settlement.id,
            settlement.agreement_code,
            settlement.period_start,
            payout.paid_at,
            payout.form,
            payout.amount,
            settlement.currency,
            payout.document_number,
            bank_name,
            account_number[-4:] if account_number else None,
        )
        for payout, settlement, bank_name, account_number in rows
    ]


@dataclass(frozen=True)
class Waiting:
    settlements: list[Settlement]
    agreement_versions: list[tuple[str, AgreementVersion]]  # (agreement code, version)


def waiting_for(session: Session, actor: Actor, day: dt.date) -> Waiting:
    """What ``actor`` can approve now (themself or for whoever delegated to them)."""
    ready = [
        settlement
        for settlement in settlements(session, status=SettlementStatus.PROPOSED)
        if approval_slot(session, settlement, approvals(session, settlement), actor, day)
    ]
    versions = []
    for code, version in session.execute(
        select(AgreementRecord.code, AgreementVersion)
        .join(AgreementVersion, AgreementVersion.agreement_id == AgreementRecord.id)
        .where(AgreementVersion.status == VersionStatus.SUBMITTED)
        .order_by(AgreementVersion.id)
    ).all():
        given = approvals_of(session, version)
        if not missing_approvals(version, given) or actor.code == version.submitted_by:
            continue
        if actor.code in {a.approver for a in given} | {a.principal for a in given}:
            continue
        open_roles = {part.split(" x")[0] for part in missing_approvals(version, given)}
        if any(actor.has(Role(role)) for role in open_roles):
            versions.append((code, version))
    return Waiting(ready, versions)
