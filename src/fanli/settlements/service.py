"""Settlements: propose, approve, reject, refresh, pay.

A settlement is for one agreement x beneficiary x rebate period. ``propose`` computes the
period-to-date amount due from the latest accrual results: the rebate on the basis so far, per
agreement version, minus what paid settlements already took. It may be negative (a claw-back)
only where the agreement allows. The policy in force decides the approval steps by amount.

Allowed transitions (``TRANSITIONS``; anything else is refused and changes nothing):

    proposed --approve (last step)--> approved --pay--> paid
    proposed | approved --reject--> rejected
    proposed | approved --refresh (inputs changed)--> proposed

Every call that moves money or records a decision on it takes an idempotency key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from fanli.agreements.models import AgreementRecord, AgreementVersion
from fanli.agreements.terms import Agreement, SettlementForm
from fanli.audit.service import canonical_json, record
from fanli.compliance.policy import Policy, step_list
from fanli.compliance.queries import policy_in_force
from fanli.customers.credit_code import legal_entity_problem
from fanli.customers.models import BankAccount, Customer
from fanli.customers.queries import due_diligence_gaps
from fanli.db.session import Lock, serialize
from fanli.kit.errors import FanliError, NotFoundError, Said, said
from fanli.kit.money import RoundingMode, quantize_money
from fanli.ledger.models import Account, EntryKind
from fanli.ledger.postings import Posting, post_entry, signed
from fanli.ledger.queries import EarnedRow, earned
from fanli.sales.queries import invoice_lines_of
from fanli.sales.store import FactStore
from fanli.settlements.idempotency import claim, remember
from fanli.settlements.models import (
    OPEN,
    BalanceCredit,
    CreditStatus,
    Payout,
    Settlement,
    SettlementApproval,
    SettlementLine,
    SettlementStatus,
)
from fanli.users.actor import Actor, PermissionDeniedError, Role, denied, open_steps, require
from fanli.users.queries import principals


class SettlementError(FanliError):
    code = "settlement_refused"


class TransitionError(SettlementError):
    code = "transition_refused"


# (state, action) -> the roles that may attempt it. The policy narrows ``approve`` further (its
# steps, the approver's limit), and the proposer never approves.
TRANSITIONS: dict[tuple[SettlementStatus, str], frozenset[Role]] = {
    (SettlementStatus.PROPOSED, "approve"): frozenset({Role.APPROVER, Role.FINANCE}),
    (SettlementStatus.PROPOSED, "reject"): frozenset(
        {Role.APPROVER, Role.FINANCE, Role.COMPLIANCE}
    ),
    (SettlementStatus.APPROVED, "reject"): frozenset(
        {Role.APPROVER, Role.FINANCE, Role.COMPLIANCE}
    ),
    (SettlementStatus.PROPOSED, "refresh"): frozenset({Role.FINANCE}),
    (SettlementStatus.APPROVED, "refresh"): frozenset({Role.FINANCE}),
    (SettlementStatus.APPROVED, "pay"): frozenset({Role.FINANCE}),
}
ACTIONS = ("approve", "reject", "refresh", "pay")

# Where a payout's money goes, per form.
_TARGET = {
    SettlementForm.CREDIT_NOTE: Account.RECEIVABLE,
    SettlementForm.RED_INVOICE: Account.RECEIVABLE,
    SettlementForm.RECEIVABLE_OFFSET: Account.RECEIVABLE,
    SettlementForm.BANK_TRANSFER: Account.BANK,
    SettlementForm.REBATE_BALANCE: Account.REBATE_BALANCE,
}
# A claw-back is collected with a document or by offset; money is never pulled from an account.
_CLAWBACK_FORMS = (
    SettlementForm.CREDIT_NOTE,
    SettlementForm.RED_INVOICE,
    SettlementForm.RECEIVABLE_OFFSET,
)


@dataclass(frozen=True)
class Due:
    """What is due for one key: per version line, and the inputs that decide it."""

    agreement_code: str
    beneficiary: str
    period_start: dt.date
    period_end: dt.date
    currency: str
    terms: Agreement  # of the latest version with a result for the period
    lines: list[dict[str, Any]]  # version_id, period_index, run_id, rebate, settled, due
    amount: Decimal

    @property
    def period_total(self) -> Decimal:
        """The rebate of the whole period so far: what earlier settlements paid plus this one."""
        return sum((Decimal(line["rebate"]) for line in self.lines), Decimal(0))

    @property
    def approval_basis(self) -> Decimal:
        """What approval bands and limits are judged on: the larger of this amount and the
        period's total, so that settling a period in instalments never stays under a band."""
        return max(abs(self.amount), abs(self.period_total))

    @property
    def inputs(self) -> dict[str, Any]:
        return {"period_end": self.period_end, "lines": self.lines}

    @property
    def inputs_hash(self) -> str:
        """What approvals are given for: per version, the rebate and what was settled. The run
        that produced a rebate is kept in ``inputs`` for tracing but not hashed: a later run
        with the same amounts changes nothing an approver saw."""
        decisive = [
            {key: value for key, value in line.items() if key != "run_id"} for line in self.lines
        ]
        body = canonical_json({"period_end": self.period_end, "lines": decisive})
        return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _open_key(agreement_code: str, beneficiary: str, period_start: dt.date) -> str:
    return f"{agreement_code}|{beneficiary}|{period_start.isoformat()}"


def compute_due(
    session: Session,
    store: FactStore,
    agreement_code: str,
    beneficiary: str,
    period_start: dt.date,
) -> Due:
    """Rebate on the basis so far minus what paid settlements took, per version."""
    rows = [
        row
        for row in earned(session, store, agreement_code, beneficiary)
        if row.period_start == period_start
    ]
    paid = session.execute(
        select(
            SettlementLine.version_id,
            SettlementLine.period_index,
            func.sum(SettlementLine.amount),
            func.min(Settlement.period_end),
            func.min(Settlement.currency),
        )
        .join(Settlement, Settlement.id == SettlementLine.settlement_id)
        .where(
            Settlement.agreement_code == agreement_code,
            Settlement.beneficiary == beneficiary,
            Settlement.period_start == period_start,
            Settlement.status == SettlementStatus.PAID,
        )
        .group_by(SettlementLine.version_id, SettlementLine.period_index)
    ).all()
    settled = {version_id: amount for version_id, _index, amount, _end, _cur in paid}
    # A version whose lines are all gone (voided, returned) has no result row any more, but
    # what was paid for it is still to be netted: its rebate is now zero.
    rated = {row.version_id for row in rows}
    rows += [
        EarnedRow(None, version_id, index, period_start, end, currency, Decimal(0))
        for version_id, index, _amount, end, currency in paid
        if version_id not in rated
    ]
    if not rows:
        raise SettlementError.said(
            "no accrual result for {agreement} / {customer} in the rebate period starting "
            "{day}: run an accrual first, or check the period",
            agreement=agreement_code,
            customer=beneficiary,
            day=period_start,
        )
    currency = rows[0].currency
    lines: list[dict[str, Any]] = []
    for row in sorted(rows, key=lambda row: row.version_id):
        rebate = _exact(row.rebate, currency)
        before = _exact(settled.get(row.version_id, Decimal(0)), currency)
        lines.append(
            {
                "version_id": row.version_id,
                "period_index": row.period_index,
                "run_id": row.run_id,
                "rebate": rebate,
                "settled": before,
                "due": rebate - before,
            }
        )
    ends = {row.period_end for row in rows}
    if len(ends) > 1:
        raise SettlementError.said(
            "the versions of {agreement} end the rebate period starting {day} on different days "
            "({ends}): settle them once the versions agree",
            agreement=agreement_code,
            day=period_start,
            ends=tuple(sorted(ends, key=str)),
        )
    latest = session.get(AgreementVersion, max(row.version_id for row in rows))
    assert latest is not None
    return Due(
        agreement_code=agreement_code,
        beneficiary=beneficiary,
        period_start=period_start,
        period_end=rows[0].period_end,
        currency=rows[0].currency,
        terms=Agreement.model_validate(latest.terms),
        lines=lines,
        amount=sum((Decimal(line["due"]) for line in lines), Decimal(0)),
    )


def _exact(value: Decimal, currency: str) -> Decimal:
    """An amount at the currency's minor unit; results and settlements are already exact
    there (the database keeps four places), so this only fixes how they are written."""
    amount = quantize_money(value, currency, RoundingMode.HALF_UP)
    assert amount == value, f"{value} is not a whole number of {currency} minor units"
    return amount


def _beneficiary(session: Session, code: str) -> Customer:
    customer = session.scalar(select(Customer).where(Customer.code == code))
    if customer is None:
        raise SettlementError.said("there is no customer {customer}", customer=code)
    return customer


def _payee_problems(
    session: Session, customer: Customer, policy: Policy, day: dt.date
) -> list[Said]:
    problems = []
    entity = legal_entity_problem(customer.credit_code)
    if entity:
        problems.append(
            said(
                "{customer} ({name}): {problem}",
                customer=customer.code,
                name=customer.legal_name,
                problem=entity,
            )
        )
    gaps = due_diligence_gaps(session, customer, policy.due_diligence.required, day)
    if gaps:
        problems.append(
            said(
                "due diligence of {customer} is not current: {gaps}",
                customer=customer.code,
                gaps=tuple(gaps),
            )
        )
    return problems


def _refuse(subject: Said, problems: list[Said]) -> None:
    """One refusal naming every problem, numbered: "(1) ...; (2) ..."."""
    if problems:
        raise SettlementError.said(
            "{subject} is blocked: {problems}", subject=subject, problems=problems
        )


def _amount_problems(due: Due, policy: Policy, customer: Customer) -> list[Said]:
    problems = []
    if due.amount == 0:
        problems.append(said("nothing is due: the rebate so far equals what was settled"))
    if due.amount < 0 and not due.terms.settlement.clawback:
        problems.append(
            said(
                "the amount due is {amount} (a claw-back) and agreement {agreement} does not "
                "allow claw-backs",
                amount=due.amount,
                agreement=due.agreement_code,
            )
        )
    ceiling = policy.max_settlement_for(customer.segment)
    if ceiling is not None and due.approval_basis > ceiling:
        problems.append(
            said(
                "{amount} (this settlement, or the period's total with it) is above the "
                "policy's largest settlement {ceiling} for segment {segment}",
                amount=due.approval_basis,
                ceiling=ceiling,
                segment=customer.segment or "(none)",
            )
        )
    return problems


def _steps(policy: Policy, due: Due) -> list[dict[str, Any]]:
    return step_list(policy.settlement_steps(due.approval_basis))


def propose(
    session: Session,
    store: FactStore,
    *,
    agreement_code: str,
    beneficiary: str,
    period_start: dt.date,
    idempotency_key: str | None,
    actor: Actor,
    now: dt.datetime,
) -> Settlement:
    """Propose the settlement of what is due for one agreement x beneficiary x period."""
    require(actor, Role.FINANCE, to=said("propose settlements"))
    request = {
        "agreement": agreement_code,
        "beneficiary": beneficiary,
        "period": period_start,
        "actor": actor.code,
    }
    replay = claim(session, idempotency_key, "settlement.propose", request, now)
    if replay is not None:
        return _settlement(session, replay["settlement_id"])
    assert idempotency_key is not None
    # Two proposals for one key would both see none open; they queue here.
    serialize(session, Lock.SETTLEMENT)
    if (
        session.scalar(select(AgreementRecord.id).where(AgreementRecord.code == agreement_code))
        is None
    ):
        raise SettlementError.said("there is no agreement {agreement}", agreement=agreement_code)
    customer = _beneficiary(session, beneficiary)
    open_key = _open_key(agreement_code, beneficiary, period_start)
    existing = session.scalar(select(Settlement).where(Settlement.open_key == open_key))
    if existing is not None:
        raise SettlementError.said(
            "settlement {id} is already {status} for {agreement} / {customer} / {day}: "
            "approve, pay or reject it first",
            id=existing.id,
            status=SettlementStatus(existing.status),
            agreement=agreement_code,
            customer=beneficiary,
            day=period_start,
        )
    day = now.date()
    policy_version, policy = policy_in_force(session, day)
    due = compute_due(session, store, agreement_code, beneficiary, period_start)
    if due.period_end > day + dt.timedelta(days=1):
        # Its numbers can still change (the customer cannot sign its statement off either):
        # paying now would pay a figure the period may not keep. (A day's grace: a ``now``
        # taken in UTC can be a day behind the company's date, as for audit runs.)
        raise SettlementError.said(
            "the rebate period of {agreement} / {customer} runs until {last_day}; it is settled "
            "once it has ended",
            agreement=agreement_code,
            customer=beneficiary,
            last_day=due.period_end - dt.timedelta(days=1),
        )
    _refuse(
        said(
            "settling {agreement} / {customer} / {day}",
            agreement=agreement_code,
            customer=beneficiary,
            day=period_start,
        ),
        _payee_problems(session, customer, policy, day) + _amount_problems(due, policy, customer),
    )
    settlement = Settlement(
        agreement_code=agreement_code,
        beneficiary=beneficiary,
        period_start=period_start,
        period_end=due.period_end,
        currency=due.currency,
        amount=due.amount,
        form=due.terms.settlement.form.value,
        status=SettlementStatus.PROPOSED,
        inputs=canonical_inputs(due),
        inputs_hash=due.inputs_hash,
        steps=_steps(policy, due),
        approval_basis=due.approval_basis,
        policy_version=policy_version.version,
        open_key=open_key,
        proposed_by=actor.code,
        proposed_at=now,
    )
    session.add(settlement)
    session.flush()
    _write_lines(session, settlement, due)
    record(
        session,
        type="settlement.proposed",
        actor=actor.code,
        entity_type="settlement",
        entity_id=settlement.id,
        inputs={**request, "idempotency_key": idempotency_key},
        outcome={
            "amount": settlement.amount,
            "inputs_hash": settlement.inputs_hash,
            "inputs": settlement.inputs,
            "steps": settlement.steps,
            "policy_version": settlement.policy_version,
        },
        now=now,
    )
    remember(session, idempotency_key, {"settlement_id": settlement.id})
    return settlement


def canonical_inputs(due: Due) -> dict[str, Any]:
    """The inputs as stored (JSON): amounts and dates as strings, exactly as hashed."""
    stored: dict[str, Any] = json.loads(canonical_json(due.inputs))
    return stored


def _write_lines(session: Session, settlement: Settlement, due: Due) -> None:
    session.execute(delete(SettlementLine).where(SettlementLine.settlement_id == settlement.id))
    for line in due.lines:
        session.add(
            SettlementLine(
                settlement_id=settlement.id,
                version_id=line["version_id"],
                period_index=line["period_index"],
                amount=line["due"],
            )
        )
    session.flush()


def _settlement(session: Session, settlement_id: int, *, lock: bool = False) -> Settlement:
    query = select(Settlement).where(Settlement.id == settlement_id)
    if lock:
        # Concurrent decisions on one settlement queue on its row (PostgreSQL; SQLite's
        # writers always queue), so exactly one of them sees each state.
        query = query.with_for_update()
    settlement = session.scalar(query.execution_options(populate_existing=True))
    if settlement is None:
        raise NotFoundError.said("there is no settlement {id}", id=settlement_id)
    return settlement


def check_transition(
    settlement: Settlement, action: str, actor: Actor, *, acting_for: list[Actor] | None = None
) -> None:
    """Refuse an action the transition table does not allow in this state for this actor (or,
    for approvals, for anyone the actor stands in for under a delegation)."""
    roles = TRANSITIONS.get((SettlementStatus(settlement.status), action))
    if roles is None:
        refusal = _cannot(settlement, action)
        raise TransitionError.said(refusal.template, **refusal.values)
    if not any(who.has(role) for role in roles for who in (acting_for or [actor])):
        raise denied(actor, sorted(roles), to=_doing(settlement, action))


def _cannot(settlement: Settlement, action: str) -> Said:
    """Why ``action`` is refused in the settlement's status: a sentence for each action."""
    values = {"id": settlement.id, "status": SettlementStatus(settlement.status)}
    return {
        "approve": said("settlement {id} is {status}: it cannot be approved", **values),
        "reject": said("settlement {id} is {status}: it cannot be rejected", **values),
        "refresh": said("settlement {id} is {status}: it cannot be refreshed", **values),
        "pay": said("settlement {id} is {status}: it cannot be paid", **values),
    }[action]


def _doing(settlement: Settlement, action: str) -> Said:
    """``action`` on the settlement, as a refusal names what was tried."""
    return {
        "approve": said("approve settlement {id}", id=settlement.id),
        "reject": said("reject settlement {id}", id=settlement.id),
        "refresh": said("refresh settlement {id}", id=settlement.id),
        "pay": said("pay settlement {id}", id=settlement.id),
    }[action]


def approvals(session: Session, settlement: Settlement) -> list[SettlementApproval]:
    """The approvals that count: those given for the settlement's current inputs."""
    return list(
        session.scalars(
            select(SettlementApproval)
            .where(
                SettlementApproval.settlement_id == settlement.id,
                SettlementApproval.round == settlement.round,
            )
            .order_by(SettlementApproval.id)
        )
    )


def missing_steps(settlement: Settlement, given: list[SettlementApproval]) -> list[str]:
    return open_steps(settlement.steps, (a.role for a in given))


def approval_slot(
    session: Session,
    settlement: Settlement,
    given: list[SettlementApproval],
    actor: Actor,
    day: dt.date,
) -> tuple[str, str, int | None] | None:
    """(role, principal, delegation) of the first open step ``actor`` can fill, or None."""
    if actor.code == settlement.proposed_by:
        return None
    people = {a.approver for a in given} | {a.principal for a in given}
    if actor.code in people:
        return None
    size = settlement.approval_basis
    for step in settlement.steps:
        if sum(1 for a in given if a.role == step["role"]) >= step["count"]:
            continue
        for principal, delegation_id in principals(session, actor, day):
            if principal.code == settlement.proposed_by or principal.code in people:
                continue
            limit = principal.approval_limit
            if principal.has(Role(step["role"])) and limit is not None and limit >= size:
                return step["role"], principal.code, delegation_id
    return None


def approve(
    session: Session,
    store: FactStore,
    settlement_id: int,
    *,
    idempotency_key: str | None,
    actor: Actor,
    now: dt.datetime,
) -> Settlement:
    """Approve one step of a proposed settlement; the last step makes it approved."""
    request = {"settlement": settlement_id, "approver": actor.code}
    replay = claim(session, idempotency_key, "settlement.approve", request, now)
    if replay is not None:
        return _settlement(session, replay["settlement_id"])
    assert idempotency_key is not None
    settlement = _settlement(session, settlement_id, lock=True)
    standing_for = [who for who, _grant in principals(session, actor, now.date())]
    check_transition(settlement, "approve", actor, acting_for=standing_for)
    if actor.code == settlement.proposed_by:
        raise PermissionDeniedError.said(
            "{user} proposed settlement {id} and cannot approve it",
            user=actor.code,
            id=settlement.id,
        )
    _require_fresh(session, store, settlement, "approved")
    given = approvals(session, settlement)
    slot = approval_slot(session, settlement, given, actor, now.date())
    if slot is None:
        needed = ", ".join(missing_steps(settlement, given))
        raise PermissionDeniedError.said(
            "{user} cannot approve settlement {id} (approval basis {amount}): already approved "
            "by them, or no open step ({steps}) matches their roles and approval limit",
            user=actor.code,
            id=settlement.id,
            amount=settlement.approval_basis,
            steps=needed,
        )
    role, principal, delegation_id = slot
    approval = SettlementApproval(
        settlement_id=settlement.id,
        inputs_hash=settlement.inputs_hash,
        round=settlement.round,
        approver=actor.code,
        principal=principal,
        delegation_id=delegation_id,
        role=role,
        approved_at=now,
    )
    session.add(approval)
    session.flush()
    complete = not missing_steps(settlement, [*given, approval])
    if complete:
        settlement.status = SettlementStatus.APPROVED
        settlement.approved_hash = settlement.inputs_hash
        settlement.decided_at = now
        session.flush()
    record(
        session,
        type="settlement.approved" if complete else "settlement.approval.recorded",
        actor=actor.code,
        entity_type="settlement",
        entity_id=settlement.id,
        inputs={"inputs_hash": settlement.inputs_hash, "idempotency_key": idempotency_key},
        outcome={
            "role": role,
            "for": principal,
            "delegation": delegation_id,
            "status": settlement.status,
            "amount": settlement.amount,
        },
        now=now,
    )
    remember(session, idempotency_key, {"settlement_id": settlement.id})
    return settlement


def reject(
    session: Session, settlement_id: int, *, reason: str, actor: Actor, now: dt.datetime
) -> Settlement:
    """Reject an open settlement, with the reason; the key may be proposed again."""
    settlement = _settlement(session, settlement_id, lock=True)
    check_transition(settlement, "reject", actor)
    if not reason.strip():
        raise SettlementError.said("rejecting a settlement needs a reason")
    before = settlement.status
    settlement.status = SettlementStatus.REJECTED
    settlement.open_key = None
    settlement.approved_hash = None  # nothing can be paid against it any more
    settlement.rejection_reason = reason.strip()
    settlement.decided_at = now
    session.flush()
    record(
        session,
        type="settlement.rejected",
        actor=actor.code,
        entity_type="settlement",
        entity_id=settlement.id,
        inputs={"reason": reason.strip(), "status_before": before},
        outcome={"status": settlement.status},
        now=now,
    )
    return settlement


def _changed_due(session: Session, store: FactStore, settlement: Settlement) -> Due | None:
    """What is due now for the settlement's key, if a later run changed its inputs."""
    due = compute_due(
        session, store, settlement.agreement_code, settlement.beneficiary, settlement.period_start
    )
    return due if due.inputs_hash != settlement.inputs_hash else None


def _require_fresh(session: Session, store: FactStore, settlement: Settlement, verb: str) -> None:
    due = _changed_due(session, store, settlement)
    if due is not None:
        raise SettlementError.said(
            "settlement {id} cannot be {verb}: its inputs changed since it was proposed "
            "(amount now {now}, was {was}); refresh it, and it needs approving again",
            id=settlement.id,
            verb=SettlementStatus(verb),  # approved or paid: said as the status it would reach
            # in the currency's minor unit, as the pages show them (the column keeps four
            # places); both are already whole minor units, so nothing is rounded away
            now=quantize_money(due.amount, settlement.currency, RoundingMode.HALF_UP),
            was=quantize_money(settlement.amount, settlement.currency, RoundingMode.HALF_UP),
        )


def outdated(session: Session, store: FactStore, rows: Iterable[Settlement]) -> dict[int, Decimal]:
    """The open settlements among ``rows`` whose inputs changed since they were proposed (a
    later run), with the amount now due: they are refreshed before they can be approved or
    paid, and the pages say so beside them."""
    found = {}
    for settlement in rows:
        if settlement.status not in OPEN:
            continue
        try:
            due = _changed_due(session, store, settlement)
        except SettlementError:  # its results are gone (a voided batch): nothing is due now
            found[settlement.id] = Decimal(0)
            continue
        if due is not None:
            found[settlement.id] = due.amount
    return found


def refresh(
    session: Session, store: FactStore, settlement_id: int, *, actor: Actor, now: dt.datetime
) -> Settlement:
    """Recompute an open settlement whose inputs changed; it goes back to proposed and every
    approval lapses (approvals count only for the inputs they were given to)."""
    settlement = _settlement(session, settlement_id, lock=True)
    check_transition(settlement, "refresh", actor)
    due = _changed_due(session, store, settlement)
    if due is None:
        raise SettlementError.said("settlement {id}: its inputs have not changed", id=settlement.id)
    day = now.date()
    policy_version, policy = policy_in_force(session, day)
    customer = _beneficiary(session, settlement.beneficiary)
    _refuse(
        said("refreshing settlement {id}", id=settlement.id),
        _amount_problems(due, policy, customer),
    )
    before = {"amount": settlement.amount, "inputs_hash": settlement.inputs_hash}
    settlement.amount = due.amount
    settlement.inputs = canonical_inputs(due)
    settlement.inputs_hash = due.inputs_hash
    settlement.steps = _steps(policy, due)
    settlement.approval_basis = due.approval_basis
    settlement.round += 1
    settlement.policy_version = policy_version.version
    settlement.status = SettlementStatus.PROPOSED
    settlement.approved_hash = None
    settlement.decided_at = None
    session.flush()
    _write_lines(session, settlement, due)
    record(
        session,
        type="settlement.refreshed",
        actor=actor.code,
        entity_type="settlement",
        entity_id=settlement.id,
        inputs=before,
        outcome={
            "amount": settlement.amount,
            "inputs_hash": settlement.inputs_hash,
            "inputs": settlement.inputs,
            "status": settlement.status,
        },
        now=now,
    )
    return settlement


def payout_form(settlement: Settlement) -> SettlementForm:
    """The agreement's form; a claw-back is collected by document or offset instead of a
    transfer or a balance debit."""
    form = SettlementForm(settlement.form)
    if settlement.amount < 0 and form not in _CLAWBACK_FORMS:
        return SettlementForm.RECEIVABLE_OFFSET
    return form


def pay(
    session: Session,
    store: FactStore,
    settlement_id: int,
    *,
    idempotency_key: str | None,
    document_number: str | None = None,
    original_invoices: list[str] | None = None,
    bank_account_id: int | None = None,
    actor: Actor,
    now: dt.datetime,
) -> Payout:
    """Pay an approved settlement in the agreement's form, with its journal entry."""
    request = {
        "settlement": settlement_id,
        "actor": actor.code,
        "document_number": document_number,
        "original_invoices": sorted(original_invoices or []),
        "bank_account": bank_account_id,
    }
    replay = claim(session, idempotency_key, "settlement.pay", request, now)
    if replay is not None:
        payout = session.get(Payout, replay["payout_id"])
        assert payout is not None
        return payout
    assert idempotency_key is not None
    settlement = _settlement(session, settlement_id, lock=True)
    check_transition(settlement, "pay", actor)
    approvers = {a.approver for a in approvals(session, settlement)} | {
        a.principal for a in approvals(session, settlement)
    }
    if actor.code in approvers:
        raise PermissionDeniedError.said(
            "{user} approved settlement {id} and cannot also pay it",
            user=actor.code,
            id=settlement.id,
        )
    _require_fresh(session, store, settlement, "paid")
    day = now.date()
    _version, policy = policy_in_force(session, day)
    customer = _beneficiary(session, settlement.beneficiary)
    form = payout_form(settlement)
    problems = _payee_problems(session, customer, policy, day)
    problems += _form_problems(
        session,
        store,
        settlement,
        customer,
        form,
        document_number=document_number,
        original_invoices=original_invoices or [],
        bank_account_id=bank_account_id,
    )
    _refuse(said("paying settlement {id}", id=settlement.id), problems)
    target = _TARGET[form]
    lines = session.scalars(
        select(SettlementLine).where(SettlementLine.settlement_id == settlement.id)
    ).all()
    postings = []
    for line in lines:
        if line.amount == 0:
            continue
        debit, credit, amount = signed(line.amount, debit=Account.LIABILITY, credit=target)
        postings.append(
            Posting(
                debit=debit,
                credit=credit,
                amount=amount,
                agreement_code=settlement.agreement_code,
                version_id=line.version_id,
                beneficiary=settlement.beneficiary,
                period_index=line.period_index,
                period_start=settlement.period_start,
                period_end=settlement.period_end,
            )
        )
    entry = post_entry(
        session,
        kind=EntryKind.PAYOUT,
        day=day,
        memo=(
            f"settlement {settlement.id} {form.value}: {settlement.agreement_code} / "
            f"{settlement.beneficiary} / {settlement.period_start}"
        ),
        postings=postings,
        now=now,
    )
    assert settlement.approved_hash is not None
    payout = Payout(
        settlement_id=settlement.id,
        approved_hash=settlement.approved_hash,
        journal_entry_id=entry.id,
        form=form.value,
        amount=settlement.amount,
        document_number=document_number,
        original_invoices=sorted(original_invoices or []),
        bank_account_id=bank_account_id if form is SettlementForm.BANK_TRANSFER else None,
        paid_by=actor.code,
        paid_at=now,
    )
    session.add(payout)
    settlement.status = SettlementStatus.PAID
    settlement.open_key = None
    session.flush()
    credit_id = None
    if form is SettlementForm.REBATE_BALANCE:
        # The credit's journal key: the version line that carries most of the amount.
        first = max(lines, key=lambda line: line.amount)
        balance_credit = BalanceCredit(
            customer_code=settlement.beneficiary,
            amount=settlement.amount,
            valid_until=day + dt.timedelta(days=policy.rebate_balance.validity_days),
            status=CreditStatus.AVAILABLE,
            payout_id=payout.id,
            agreement_code=settlement.agreement_code,
            version_id=first.version_id,
            period_index=first.period_index,
            period_start=settlement.period_start,
            period_end=settlement.period_end,
            created_at=now,
        )
        session.add(balance_credit)
        session.flush()
        credit_id = balance_credit.id
    record(
        session,
        type="settlement.paid",
        actor=actor.code,
        entity_type="settlement",
        entity_id=settlement.id,
        inputs={**request, "idempotency_key": idempotency_key},
        outcome={
            "payout": payout.id,
            "form": form.value,
            "amount": payout.amount,
            "journal_entry": entry.id,
            "balance_credit": credit_id,
        },
        now=now,
    )
    remember(session, idempotency_key, {"payout_id": payout.id})
    return payout


def _form_problems(
    session: Session,
    store: FactStore,
    settlement: Settlement,
    customer: Customer,
    form: SettlementForm,
    *,
    document_number: str | None,
    original_invoices: list[str],
    bank_account_id: int | None,
) -> list[Said]:
    problems = []
    if form in (SettlementForm.CREDIT_NOTE, SettlementForm.RED_INVOICE) and not (
        document_number and document_number.strip()
    ):
        problems.append(said("a {form} payout needs its document number", form=form))
    if document_number:
        booked = session.scalar(
            select(Payout.id).where(
                Payout.form == form.value, Payout.document_number == document_number
            )
        )
        if booked is not None:
            problems.append(
                said(
                    "{form} {document} is booked already (payout {payout})",
                    form=form,
                    document=document_number,
                    payout=booked,
                )
            )
    if form is SettlementForm.RED_INVOICE and not original_invoices:
        problems.append(said("a red-letter invoice must reference the original invoice lines"))
    if original_invoices:
        if form not in (SettlementForm.CREDIT_NOTE, SettlementForm.RED_INVOICE):
            problems.append(said("a {form} payout does not reference invoices", form=form))
        found = invoice_lines_of(session, store, customer.code, original_invoices)
        unknown = sorted(set(original_invoices) - found)
        if unknown:
            problems.append(
                said(
                    "original invoice lines {lines} are not {customer}'s lines in active batches",
                    lines=", ".join(unknown),
                    customer=customer.code,
                )
            )
    if form is SettlementForm.BANK_TRANSFER:
        problems.extend(_account_problems(session, customer, bank_account_id))
    elif bank_account_id is not None:
        problems.append(
            said("this settlement is paid as {form}; a bank account is not used", form=form)
        )
    return problems


def _account_problems(
    session: Session, customer: Customer, bank_account_id: int | None
) -> list[Said]:
    if bank_account_id is None:
        return [said("a bank transfer needs the beneficiary's verified bank account")]
    account = session.get(BankAccount, bank_account_id)
    if account is None:
        return [said("there is no bank account {id}", id=bank_account_id)]
    problems = []
    if account.customer_id != customer.id:
        problems.append(
            said(
                "bank account {id} is not registered to {customer}",
                id=bank_account_id,
                customer=customer.code,
            )
        )
    if account.holder_name != customer.legal_name:
        problems.append(
            said(
                "bank account {id} is not in {name}'s name",
                id=bank_account_id,
                name=customer.legal_name,
            )
        )
    if account.verified_by is None:
        problems.append(
            said("bank account {id} has not been verified by a second person", id=bank_account_id)
        )
    return problems
