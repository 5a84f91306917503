"""The periodic audit's detectors: each looks at one accounting period and returns candidates,
the anomalies it sees, with the evidence an auditor needs to judge them.

The services already refuse most of what these look for: a payout without approval, an
unverified account, a settlement over the policy. The detectors look anyway, because the records
can also come from a migration, an integration, a database edit or a bug, and because an
auditor has to show that the controls held, not assume it. Each candidate names:
- its evidence: the objects, the audit events (their ``seq``), the documents and the amounts;
- a fingerprint: the objects it is about, so that running the audit again finds the same
  finding rather than a new one.

The period's payouts are those whose journal entry lies in the period. Where a check holds
records to the policy, it uses the policy in force on the day; with none in force there is
nothing to hold them to, and the check passes over them.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.agreements.models import AgreementRecord, AgreementVersion, VersionStatus
from fanli.agreements.terms import Agreement, SettlementForm
from fanli.audit.models import AuditEvent
from fanli.compliance.policy import Policy
from fanli.compliance.queries import NoPolicyError, policy_in_force
from fanli.compliance.review import rate_deviations
from fanli.customers.models import BankAccount, Customer, DueDiligenceRecord
from fanli.kit.errors import Code, Said, said
from fanli.ledger.models import AccountingPeriod, JournalEntry
from fanli.ledger.queries import results_between, statement_rows
from fanli.sales.queries import returns_between
from fanli.sales.store import FactStore
from fanli.settlements.models import (
    Payout,
    Settlement,
    SettlementApproval,
    SettlementLine,
    SettlementStatus,
)
from fanli.users.actor import open_steps

# Tuning, stated in every finding that uses it.
OUTLIER_Z = Decimal("3.5")  # modified z-score (Iglewicz and Hoaglin) above which a rate stands out
OUTLIER_PEERS = 5  # fewest customers in a segment for a peer comparison
SPLIT_WINDOW_DAYS = 7  # settlements proposed this close together count as one decision
ROUND_UNIT = Decimal(1000)  # a lump sum is "round" when it is a whole multiple of this
OVERRIDE_MARGIN = Decimal(1)  # percentage points above the policy limit that need a finding


@dataclass(frozen=True)
class Candidate:
    fingerprint: str
    summary: Said  # English by str(); the pages say it in the reader's language
    customer: str | None
    amount: Decimal | None
    evidence: dict[str, Any]


@dataclass
class Scope:
    """What the detectors look at: one accounting period of one store."""

    session: Session
    facts: FactStore
    period: AccountingPeriod
    # The company's zone: a stored time (UTC) falls on the day it was there.
    zone: dt.tzinfo = dt.UTC
    _customers: dict[str, Customer] = field(default_factory=dict)

    @cached_property
    def payouts(self) -> list[tuple[Payout, Settlement]]:
        entries = select(JournalEntry.id).where(JournalEntry.accounting_period_id == self.period.id)
        return [
            (payout, settlement)
            for payout, settlement in self.session.execute(
                select(Payout, Settlement)
                .join(Settlement, Settlement.id == Payout.settlement_id)
                .where(Payout.journal_entry_id.in_(entries))
                .order_by(Payout.id)
            )
        ]

    @property
    def last_day(self) -> dt.date:
        return self.period.end - dt.timedelta(days=1)  # a period's end is exclusive

    def day(self, moment: dt.datetime) -> dt.date:
        """The company's day of a stored time."""
        return moment.astimezone(self.zone).date()

    def in_period(self, moment: dt.datetime | None) -> bool:
        return moment is not None and self.period.start <= self.day(moment) < self.period.end

    def policy(self, day: dt.date) -> Policy | None:
        """The policy in force on ``day``; None when there was none (nothing to hold it to)."""
        try:
            return policy_in_force(self.session, day)[1]
        except NoPolicyError:
            return None

    def customer(self, code: str) -> Customer | None:
        if code not in self._customers:
            found = self.session.scalar(select(Customer).where(Customer.code == code))
            if found is None:
                return None
            self._customers[code] = found
        return self._customers[code]

    def events(self, entity_type: str, entity_id: int | str) -> list[dict[str, Any]]:
        """The audit events of one object: their seq and type (the evidence's trail)."""
        rows = self.session.execute(
            select(AuditEvent.seq, AuditEvent.type)
            .where(AuditEvent.entity_type == entity_type)
            .where(AuditEvent.entity_id == str(entity_id))
            .order_by(AuditEvent.seq)
        )
        return [{"seq": seq, "type": kind} for seq, kind in rows]


def _payout_evidence(scope: Scope, payout: Payout, settlement: Settlement) -> dict[str, Any]:
    return {
        "payout": payout.id,
        "settlement": settlement.id,
        "beneficiary": settlement.beneficiary,
        "agreement": settlement.agreement_code,
        "rebate_period": [settlement.period_start.isoformat(), settlement.period_end.isoformat()],
        "paid": str(payout.amount),
        "form": payout.form,
        "document": payout.document_number,
        "paid_by": payout.paid_by,
        "paid_at": payout.paid_at.isoformat(),
        "events": scope.events("settlement", settlement.id),
    }


# ---- payouts ---------------------------------------------------------------------------------


def approval_chain(scope: Scope) -> Iterable[Candidate]:
    """A payout whose settlement lacks an approval its steps require, in its last round, or
    whose approvals were given to other inputs."""
    for payout, settlement in scope.payouts:
        given = scope.session.scalars(
            select(SettlementApproval)
            .where(SettlementApproval.settlement_id == settlement.id)
            .where(SettlementApproval.round == settlement.round)
        ).all()
        missing = open_steps(settlement.steps, [a.role for a in given])
        stale = [a.approver for a in given if a.inputs_hash != settlement.inputs_hash]
        if missing or stale:
            problems = [said("missing {roles}", roles=tuple(missing))] if missing else []
            problems += (
                [said("{people} approved other inputs", people=tuple(stale))] if stale else []
            )
            yield Candidate(
                f"payout:{payout.id}",
                said(
                    "payout {payout} of {amount} to {customer} has an incomplete approval "
                    "chain: {problems}",
                    payout=payout.id,
                    amount=payout.amount,
                    customer=settlement.beneficiary,
                    problems=problems,
                ),
                settlement.beneficiary,
                payout.amount,
                {
                    **_payout_evidence(scope, payout, settlement),
                    "steps": settlement.steps,
                    "approvals": [
                        {"approver": a.approver, "role": a.role, "at": a.approved_at.isoformat()}
                        for a in given
                    ],
                },
            )


def amount_mismatch(scope: Scope) -> Iterable[Candidate]:
    """A payout of another amount than its settlement's approved amount."""
    for payout, settlement in scope.payouts:
        if payout.amount != settlement.amount:
            yield Candidate(
                f"payout:{payout.id}",
                said(
                    "payout {payout} paid {amount} to {customer}; the approved amount is "
                    "{approved}",
                    payout=payout.id,
                    amount=payout.amount,
                    customer=settlement.beneficiary,
                    approved=settlement.amount,
                ),
                settlement.beneficiary,
                payout.amount - settlement.amount,
                {**_payout_evidence(scope, payout, settlement), "approved": str(settlement.amount)},
            )


def payee_account(scope: Scope) -> Iterable[Candidate]:
    """A bank transfer to an account not registered to the beneficiary, or not verified by the
    time of payment."""
    for payout, settlement in scope.payouts:
        if payout.form != SettlementForm.BANK_TRANSFER:
            continue
        account = (
            scope.session.get(BankAccount, payout.bank_account_id)
            if payout.bank_account_id
            else None
        )
        owner = scope.session.get(Customer, account.customer_id) if account else None
        problems = []
        if account is None:
            problems.append(said("no payee account recorded"))
        else:
            if owner is None:
                problems.append(said("account {account} belongs to nobody", account=account.id))
            elif owner.code != settlement.beneficiary:
                problems.append(
                    said(
                        "account {account} belongs to {owner}", account=account.id, owner=owner.code
                    )
                )
            if account.verified_at is None or account.verified_at > payout.paid_at:
                problems.append(
                    said("account {account} was not verified when paid", account=account.id)
                )
        if problems:
            yield Candidate(
                f"payout:{payout.id}",
                said(
                    "payout {payout} of {amount} to {customer}: {problems}",
                    payout=payout.id,
                    amount=payout.amount,
                    customer=settlement.beneficiary,
                    problems=problems,
                ),
                settlement.beneficiary,
                payout.amount,
                {
                    **_payout_evidence(scope, payout, settlement),
                    "account": account.id if account else None,
                    "account_holder": account.holder_name if account else None,
                    "account_owner": owner.code if owner else None,
                    "verified_at": account.verified_at.isoformat()
                    if account and account.verified_at
                    else None,
                    "account_events": scope.events("bank_account", account.id) if account else [],
                },
            )


def duplicate_payouts(scope: Scope) -> Iterable[Candidate]:
    """Two or more payouts of the same amount to the same beneficiary for the same agreement
    and rebate period (instalments of a period pay different amounts: what is new)."""
    groups: dict[tuple[str, str, dt.date, Decimal], list[tuple[Payout, Settlement]]] = defaultdict(
        list
    )
    for payout, settlement in scope.session.execute(
        select(Payout, Settlement)
        .join(Settlement, Settlement.id == Payout.settlement_id)
        .order_by(Payout.id)
    ):
        key = (
            settlement.beneficiary,
            settlement.agreement_code,
            settlement.period_start,
            payout.amount,
        )
        groups[key].append((payout, settlement))
    in_scope = {payout.id for payout, _ in scope.payouts}
    for (beneficiary, agreement, start, amount), found in groups.items():
        ids = [payout.id for payout, _ in found]
        if len(found) > 1 and in_scope.intersection(ids):
            yield Candidate(
                "payouts:" + ",".join(map(str, ids)),
                said(
                    "{count} payouts of {amount} each to {customer} for {agreement}, rebate "
                    "period from {start}: payouts {payouts}",
                    count=len(found),
                    amount=amount,
                    customer=beneficiary,
                    agreement=agreement,
                    start=start,
                    payouts=tuple(ids),
                ),
                beneficiary,
                amount * (len(found) - 1),
                {"payouts": [_payout_evidence(scope, p, s) for p, s in found]},
            )


def _segment_limits(limits: Iterable[Any], segment: str | None) -> list[Decimal]:
    return [limit.amount for limit in limits if limit.segment is None or limit.segment == segment]


def above_policy(scope: Scope) -> Iterable[Candidate]:
    """A settlement paid above the policy's maximum for the beneficiary's segment, or an active
    agreement version whose rates exceed the policy in force without an approved deviation."""
    for payout, settlement in scope.payouts:
        policy = scope.policy(scope.day(payout.paid_at))
        if policy is None:
            continue
        customer = scope.customer(settlement.beneficiary)
        limits = _segment_limits(policy.max_settlement, customer.segment if customer else None)
        if limits and settlement.amount > min(limits):
            yield Candidate(
                f"payout:{payout.id}",
                said(
                    "payout {payout} of {amount} to {customer} is above the policy maximum "
                    "{maximum} for its segment",
                    payout=payout.id,
                    amount=settlement.amount,
                    customer=settlement.beneficiary,
                    maximum=min(limits),
                ),
                settlement.beneficiary,
                settlement.amount - min(limits),
                {
                    **_payout_evidence(scope, payout, settlement),
                    "policy_maximum": str(min(limits)),
                },
            )
    policy = scope.policy(scope.last_day)
    for version, code in _versions_active_in(scope) if policy else []:
        assert policy is not None
        terms = Agreement.model_validate(version.terms)
        excess = rate_deviations(scope.session, terms, policy)
        approved = (version.review or {}).get("deviations") or []
        if excess and not approved:
            yield Candidate(
                f"version:{version.id}",
                said(
                    "agreement {code} v{version} pays above the policy in force without an "
                    "approved deviation: {deviations}",
                    code=code,
                    version=version.version,
                    deviations=excess,
                ),
                None,
                None,
                {
                    "agreement": code,
                    "version": version.version,
                    "deviations": [str(deviation) for deviation in excess],
                    "events": scope.events("agreement_version", version.id),
                },
            )


def _versions_active_in(scope: Scope) -> list[tuple[AgreementVersion, str]]:
    return list(
        scope.session.execute(
            select(AgreementVersion, AgreementRecord.code)
            .join(AgreementRecord, AgreementRecord.id == AgreementVersion.agreement_id)
            .where(AgreementVersion.status == VersionStatus.ACTIVE)
            .where(AgreementVersion.effective_from < scope.period.end)
            .order_by(AgreementVersion.id)
        )
    )


def _top_rate(terms: dict[str, Any]) -> Decimal:
    return max(Decimal(str(band["rate"])) for band in terms["rebate"]["tiers"])


def backdated_terms(scope: Scope) -> Iterable[Candidate]:
    """A version activated in the period that improves its agreement's rates from a day before
    its activation: better terms for sales already made."""
    for version, code in _versions_activated_in(scope):
        if version.version == 1 or version.activated_at is None:
            continue
        earlier = scope.session.scalar(
            select(AgreementVersion)
            .where(AgreementVersion.agreement_id == version.agreement_id)
            .where(AgreementVersion.version < version.version)
            .order_by(AgreementVersion.version.desc())
        )
        activated = scope.day(version.activated_at)
        if earlier is None or version.effective_from >= activated:
            continue
        old, new = _top_rate(earlier.terms), _top_rate(version.terms)
        if new > old:
            days = (activated - version.effective_from).days
            yield Candidate(
                f"version:{version.id}",
                said(
                    "agreement {code} v{version} raised its top rate from {old} to {new} on "
                    "{activated}, effective {days} days earlier ({effective})",
                    code=code,
                    version=version.version,
                    old=old,
                    new=new,
                    activated=activated,
                    days=days,
                    effective=version.effective_from,
                ),
                None,
                None,
                {
                    "agreement": code,
                    "version": version.version,
                    "effective_from": version.effective_from.isoformat(),
                    "activated_at": version.activated_at.isoformat(),
                    "days_back": days,
                    "old_top_rate": str(old),
                    "new_top_rate": str(new),
                    "events": scope.events("agreement_version", version.id),
                },
            )


def _versions_activated_in(scope: Scope) -> list[tuple[AgreementVersion, str]]:
    return [
        (version, code)
        for version, code in scope.session.execute(
            select(AgreementVersion, AgreementRecord.code)
            .join(AgreementRecord, AgreementRecord.id == AgreementVersion.agreement_id)
            .where(AgreementVersion.activated_at.is_not(None))
            .order_by(AgreementVersion.id)
        )
        if scope.in_period(version.activated_at)
    ]


def split_settlements(scope: Scope) -> Iterable[Candidate]:
    """Settlements for one beneficiary and agreement proposed within a few days of each other,
    each under an approval threshold of the policy, together over it."""
    proposed = scope.session.scalars(
        select(Settlement)
        .where(Settlement.status.in_([SettlementStatus.APPROVED, SettlementStatus.PAID]))
        .order_by(Settlement.proposed_at, Settlement.id)
    ).all()
    groups: dict[tuple[str, str], list[Settlement]] = defaultdict(list)
    for settlement in proposed:
        if scope.in_period(settlement.proposed_at):
            groups[(settlement.beneficiary, settlement.agreement_code)].append(settlement)
    window = dt.timedelta(days=SPLIT_WINDOW_DAYS)
    for (beneficiary, agreement), found in groups.items():
        policy = scope.policy(scope.day(found[0].proposed_at))
        if policy is None:
            continue
        thresholds = sorted(band.lower for band in policy.settlement_approval if band.lower > 0)
        for start in range(len(found)):
            close = [s for s in found[start:] if s.proposed_at - found[start].proposed_at <= window]
            total = sum((s.amount for s in close), Decimal(0))
            for threshold in thresholds:
                if (
                    len(close) > 1
                    and all(s.approval_basis < threshold for s in close)
                    and (total >= threshold)
                ):
                    ids = [s.id for s in close]
                    yield Candidate(
                        "settlements:" + ",".join(map(str, ids)),
                        said(
                            "{count} settlements to {customer} for {agreement} within {days} "
                            "days, each under the approval threshold {threshold}, {total} "
                            "together",
                            count=len(close),
                            customer=beneficiary,
                            agreement=agreement,
                            days=SPLIT_WINDOW_DAYS,
                            threshold=threshold,
                            total=total,
                        ),
                        beneficiary,
                        total,
                        {
                            "settlements": [
                                {
                                    "id": s.id,
                                    "amount": str(s.amount),
                                    "approval_basis": str(s.approval_basis),
                                    "proposed_at": s.proposed_at.isoformat(),
                                    "events": scope.events("settlement", s.id),
                                }
                                for s in close
                            ],
                            "threshold": str(threshold),
                            "window_days": SPLIT_WINDOW_DAYS,
                        },
                    )
                    break
            else:
                continue
            break  # one finding per group: the earliest run that crosses


def lapsed_due_diligence(scope: Scope) -> Iterable[Candidate]:
    """A payout made while a kind of due diligence the policy requires was missing, failed or
    expired for the beneficiary."""
    for payout, settlement in scope.payouts:
        day = scope.day(payout.paid_at)
        policy = scope.policy(day)
        customer = scope.customer(settlement.beneficiary)
        if customer is None or policy is None or not policy.due_diligence.required:
            continue
        records = scope.session.scalars(
            select(DueDiligenceRecord).where(DueDiligenceRecord.customer_id == customer.id)
        ).all()
        lapsed = [
            kind.value
            for kind in policy.due_diligence.required
            if not any(
                r.kind == kind and r.passed and r.checked_on <= day <= r.expires_on for r in records
            )
        ]
        if lapsed:
            yield Candidate(
                f"payout:{payout.id}",
                said(
                    "payout {payout} of {amount} to {customer} on {day} while due diligence had "
                    "lapsed: {lapsed}",
                    payout=payout.id,
                    amount=payout.amount,
                    customer=settlement.beneficiary,
                    day=day,
                    lapsed=tuple(map(Code, lapsed)),
                ),
                settlement.beneficiary,
                payout.amount,
                {
                    **_payout_evidence(scope, payout, settlement),
                    "lapsed": lapsed,
                    "records": [
                        {
                            "kind": r.kind,
                            "passed": r.passed,
                            "checked_on": r.checked_on.isoformat(),
                            "expires_on": r.expires_on.isoformat(),
                        }
                        for r in records
                    ],
                },
            )


def segregation_of_duties(scope: Scope) -> Iterable[Candidate]:
    """One person in two roles of one payout: proposed and approved it, approved and paid it,
    or registered and verified the account it was paid to."""
    for payout, settlement in scope.payouts:
        approvers = set(
            scope.session.scalars(
                select(SettlementApproval.approver)
                .where(SettlementApproval.settlement_id == settlement.id)
                .where(SettlementApproval.round == settlement.round)
            )
        )
        conflicts = []
        if settlement.proposed_by in approvers:
            conflicts.append(said("{user} proposed and approved it", user=settlement.proposed_by))
        if payout.paid_by in approvers:
            conflicts.append(said("{user} approved and paid it", user=payout.paid_by))
        account = (
            scope.session.get(BankAccount, payout.bank_account_id)
            if payout.bank_account_id
            else None
        )
        if account is not None and account.registered_by == account.verified_by:
            conflicts.append(
                said(
                    "{user} registered and verified payee account {account}",
                    user=account.registered_by,
                    account=account.id,
                )
            )
        if conflicts:
            yield Candidate(
                f"payout:{payout.id}",
                said(
                    "payout {payout} to {customer}: {conflicts}",
                    payout=payout.id,
                    customer=settlement.beneficiary,
                    conflicts=conflicts,
                ),
                settlement.beneficiary,
                payout.amount,
                {
                    **_payout_evidence(scope, payout, settlement),
                    "proposed_by": settlement.proposed_by,
                    "approvers": sorted(approvers),
                },
            )


def rate_outliers(scope: Scope) -> Iterable[Candidate]:
    """A customer whose effective rebate rate stands far above its segment's peers.

    The rate is all its rebates over its widest agreement's basis, in the rebate periods that
    overlap the audit period. The statistic is the modified z-score, 0.6745 x (rate - median) /
    MAD, flagged above ``OUTLIER_Z``: the median and the median absolute deviation are not moved
    by the outlier itself."""
    basis: dict[str, Decimal] = defaultdict(Decimal)
    rebate: dict[str, Decimal] = defaultdict(Decimal)
    by_key: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for beneficiary, agreement, row_basis, row_rebate in results_between(
        scope.session, scope.facts, scope.period.start, scope.last_day
    ):
        by_key[(beneficiary, agreement)] += row_basis
        rebate[beneficiary] += row_rebate
    # Every agreement measures the same purchases: the customer's basis is the widest one's,
    # not their sum (two programmes on the same sales do not double the sales).
    for (beneficiary, _agreement), row_basis in by_key.items():
        basis[beneficiary] = max(basis[beneficiary], row_basis)
    by_segment: dict[str | None, dict[str, Decimal]] = defaultdict(dict)
    for code, total in basis.items():
        customer = scope.customer(code)
        if total > 0 and customer is not None:
            by_segment[customer.segment][code] = rebate[code] / total * 100
    for segment, rates in by_segment.items():
        if len(rates) < OUTLIER_PEERS:
            continue
        median = Decimal(statistics.median(rates.values()))
        mad = Decimal(statistics.median(abs(r - median) for r in rates.values()))
        if mad == 0:
            continue  # most peers at one rate: nothing to scale by
        for code, rate in sorted(rates.items()):
            z = Decimal("0.6745") * (rate - median) / mad
            if z > OUTLIER_Z:
                yield Candidate(
                    f"customer:{code}:{scope.period.code}",
                    said(
                        "{customer} earned {rate}% of its basis; its {peers} peers in segment "
                        "{segment} have a median of {median}% (modified z-score {z}, median "
                        "absolute deviation {mad} points)",
                        customer=code,
                        rate=f"{rate:.2f}",
                        peers=len(rates),
                        segment=segment or "(none)",
                        median=f"{median:.2f}",
                        z=f"{z:.1f}",
                        mad=f"{mad:.2f}",
                    ),
                    code,
                    rebate[code],
                    {
                        "rate_percent": f"{rate:.4f}",
                        "basis": str(basis[code]),
                        "rebate": str(rebate[code]),
                        "segment": segment,
                        "peers": len(rates),
                        "median_percent": f"{median:.4f}",
                        "mad_points": f"{mad:.4f}",
                        "modified_z": f"{z:.2f}",
                        "threshold": str(OUTLIER_Z),
                        "statistic": "modified z-score 0.6745 (x - median) / MAD",
                    },
                )


def round_lump_sums(scope: Scope) -> Iterable[Candidate]:
    """A payout of a round amount whose settlement carries no calculation: no lines tying it to
    accrual results."""
    for payout, settlement in scope.payouts:
        lines = scope.session.scalars(
            select(SettlementLine).where(SettlementLine.settlement_id == settlement.id)
        ).all()
        if not lines and payout.amount % ROUND_UNIT == 0:
            yield Candidate(
                f"payout:{payout.id}",
                said(
                    "payout {payout} of a round {amount} to {customer} has no calculation "
                    "behind it",
                    payout=payout.id,
                    amount=payout.amount,
                    customer=settlement.beneficiary,
                ),
                settlement.beneficiary,
                payout.amount,
                {**_payout_evidence(scope, payout, settlement), "round_unit": str(ROUND_UNIT)},
            )


def manual_overrides(scope: Scope) -> Iterable[Candidate]:
    """An agreement version approved in the period as a deviation from the policy, with a rate
    more than ``OVERRIDE_MARGIN`` percentage points above the policy limit."""
    for version, code in _versions_activated_in(scope):
        review = version.review or {}
        if not review.get("deviations"):
            continue
        assert version.activated_at is not None  # the versions activated in the period
        policy = scope.policy(scope.day(version.activated_at))
        if policy is None:
            continue
        limits = [limit.max_percent for limit in policy.rates if limit.max_percent is not None]
        if not limits or version.terms["rebate"].get("form", "percent") != "percent":
            continue
        excess = _top_rate(version.terms) - min(limits)
        if excess > OVERRIDE_MARGIN:
            yield Candidate(
                f"version:{version.id}",
                said(
                    "agreement {code} v{version} was approved as a deviation {excess} points "
                    "above the policy limit {limit}%: {justification}",
                    code=code,
                    version=version.version,
                    excess=excess,
                    limit=min(limits),
                    justification=repr(review.get("justification")),
                ),
                None,
                None,
                {
                    "agreement": code,
                    "version": version.version,
                    "deviations": review.get("deviations"),
                    "justification": review.get("justification"),
                    "margin_points": str(OVERRIDE_MARGIN),
                    "events": scope.events("agreement_version", version.id),
                },
            )


def tier_gaming(scope: Scope) -> Iterable[Candidate]:
    """A customer who crossed a tier, was paid at that tier, and then returned goods: had they
    been returned inside the rebate period, its basis would have stayed below the tier.

    The returns are those dated in the audit period. Each is held against the customer's latest
    paid settlement whose rebate period ended, and was paid, before it."""
    returns: dict[str, list[tuple[str, dt.date, Decimal]]] = defaultdict(list)
    for customer, line, day, amount in returns_between(
        scope.session, scope.facts, scope.period.start, scope.period.end
    ):
        returns[customer].append((line, day, -amount))
    for code, returned in returns.items():
        first_return = min(day for _line, day, _amount in returned)
        paid = scope.session.execute(
            select(Payout, Settlement)
            .join(Settlement, Settlement.id == Payout.settlement_id)
            .where(Settlement.beneficiary == code)
            .where(Settlement.period_end <= first_return)
            .order_by(Payout.paid_at.desc(), Payout.id.desc())
        ).first()
        if paid is None or scope.day(paid[0].paid_at) > first_return:
            continue
        payout, settlement = paid
        rows = [
            row
            for row in statement_rows(scope.session, scope.facts, code)
            if row.agreement_code == settlement.agreement_code
            and row.period_start == settlement.period_start
        ]
        for row in rows:
            version = scope.session.scalar(
                select(AgreementVersion)
                .join(AgreementRecord, AgreementRecord.id == AgreementVersion.agreement_id)
                .where(AgreementRecord.code == row.agreement_code)
                .where(AgreementVersion.version == row.version)
            )
            if version is None or row.tier < 2:
                continue
            threshold = Decimal(str(version.terms["rebate"]["tiers"][row.tier - 1]["from"]))
            total = sum((amount for _line, _day, amount in returned), Decimal(0))
            if row.tier_basis - total < threshold:
                yield Candidate(
                    f"settlement:{settlement.id}:returns:{scope.period.code}",
                    said(
                        "{customer} reached tier {tier} of {agreement} at basis {basis} "
                        "(threshold {threshold}), was paid {amount} on {day}, then returned "
                        "{returned}: {left} would not have reached the tier",
                        customer=code,
                        tier=row.tier,
                        agreement=row.agreement_code,
                        basis=row.tier_basis,
                        threshold=threshold,
                        amount=payout.amount,
                        day=scope.day(payout.paid_at),
                        returned=total,
                        left=row.tier_basis - total,
                    ),
                    code,
                    payout.amount,
                    {
                        **_payout_evidence(scope, payout, settlement),
                        "tier": row.tier,
                        "tier_basis": str(row.tier_basis),
                        "threshold": str(threshold),
                        "returns": [
                            {"line": line, "date": day.isoformat(), "amount": str(amount)}
                            for line, day, amount in returned
                        ],
                    },
                )


@dataclass(frozen=True)
class Detector:
    name: str
    department: str  # who answers for it
    find: Callable[[Scope], Iterable[Candidate]]

    @property
    def description(self) -> str:
        return (self.find.__doc__ or "").split("\n\n")[0].replace("\n", " ")


DETECTORS = {
    d.name: d
    for d in (
        Detector("approval_chain", "finance", approval_chain),
        Detector("amount_mismatch", "finance", amount_mismatch),
        Detector("payee_account", "finance", payee_account),
        Detector("duplicate_payouts", "finance", duplicate_payouts),
        Detector("above_policy", "compliance", above_policy),
        Detector("backdated_terms", "sales", backdated_terms),
        Detector("split_settlements", "finance", split_settlements),
        Detector("lapsed_due_diligence", "compliance", lapsed_due_diligence),
        Detector("segregation_of_duties", "finance", segregation_of_duties),
        Detector("rate_outliers", "sales", rate_outliers),
        Detector("tier_gaming", "sales", tier_gaming),
        Detector("round_lump_sums", "finance", round_lump_sums),
        Detector("manual_overrides", "compliance", manual_overrides),
    )
}
