"""Agreement approval: submission runs the compliance checks, approvals follow the policy.

Submitting a draft checks, against the policy in force on the day of submission:

1. the counterparty (and every named member) is a registered legal entity, not a person;
2. the written terms carry a contract reference and the sha256 of the signed document;
3. the settlement form is one the policy allows;
4. the tier bands are valid (contiguous, half-open; the terms model refuses anything else);
5. every rate is within the policy's limits, or the submitter gives a written justification,
   which makes the version a deviation needing one more approver (R23).

Any failure blocks with every reason at once and changes nothing. The review records the policy
version, the deviations and the approval steps. Approvers confirm the terms hash they reviewed;
the submitter never approves; each person counts once; a delegate approves with the delegator's
roles. When the last step is filled the version becomes active.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.agreements.models import (
    AgreementApproval,
    AgreementRecord,
    AgreementVersion,
    VersionStatus,
)
from fanli.agreements.service import (
    activate_version,
    approvals_of,
    locked_version,
    missing_approvals,
    return_to_draft,
    submit_version,
)
from fanli.agreements.terms import Agreement, RateForm
from fanli.audit.models import AuditEvent
from fanli.audit.service import record
from fanli.compliance.policy import Policy, RateLimit, step_list
from fanli.compliance.queries import policy_in_force
from fanli.customers.credit_code import legal_entity_problem
from fanli.customers.models import Customer
from fanli.kit.errors import FanliError, Said, said
from fanli.users.actor import Actor, PermissionDeniedError, Role, require, said_steps
from fanli.users.queries import principals


class ComplianceError(FanliError):
    """A check failed; ``reasons`` lists every one."""

    code = "compliance_blocked"

    reasons: list[str]

    @classmethod
    def blocked(cls, subject: Said, reasons: Sequence[Said]) -> ComplianceError:
        """ "<subject> is blocked: (1) ...; (2) ...", said in the reader's language on a page."""
        error = cls.said("{subject} is blocked: {reasons}", subject=subject, reasons=list(reasons))
        error.reasons = [str(reason) for reason in reasons]
        return error


_LIMIT_FIELD = {
    RateForm.PERCENT: "max_percent",
    RateForm.PER_UNIT: "max_per_unit",
    RateForm.FIXED: "max_fixed",
}
# What a band above the limit says, per rate form (templates: a page says them in the reader's
# language, and the English is what the version's review stores).
_ABOVE_LIMIT = {
    RateForm.PERCENT: "band {position} rate {rate}% is above the policy limit {ceiling}%",
    RateForm.PER_UNIT: (
        "band {position} rate {rate} per unit is above the policy limit {ceiling} per unit"
    ),
    RateForm.FIXED: "band {position} rate {rate} fixed is above the policy limit {ceiling} fixed",
}


def _segments(session: Session, terms: Agreement) -> set[str | None] | None:
    """The customer segments the agreement can pay: its parties' (None: any segment)."""
    if terms.pool is None:
        return None
    return set(session.scalars(select(Customer.segment).where(Customer.code.in_(terms.pool))).all())


def _applies(
    limit: RateLimit, segments: set[str | None] | None, categories: set[str] | None
) -> bool:
    segment_ok = limit.segment is None or segments is None or limit.segment in segments
    category_ok = limit.category is None or categories is None or limit.category in categories
    return segment_ok and category_ok


def rate_deviations(session: Session, terms: Agreement, policy: Policy) -> list[Said]:
    """Each band whose rate is above the lowest policy limit that can apply to it."""
    field = _LIMIT_FIELD[terms.rebate.form]
    include = terms.eligibility.products.include.category
    categories = set(include) if include else None
    segments = _segments(session, terms)
    limits = [
        getattr(limit, field)
        for limit in policy.rates
        if getattr(limit, field) is not None and _applies(limit, segments, categories)
    ]
    if not limits:
        return []
    ceiling = min(limits)
    template = _ABOVE_LIMIT[terms.rebate.form]
    return [
        said(template, position=position, rate=band.rate, ceiling=ceiling)
        for position, band in enumerate(terms.rebate.tiers, start=1)
        if band.rate > ceiling
    ]


def _party_problems(session: Session, terms: Agreement) -> list[Said]:
    if terms.pool is None:
        return []  # a programme: each beneficiary is checked when it is settled
    problems = []
    for code in terms.pool:
        customer = session.scalar(select(Customer).where(Customer.code == code))
        if customer is None:
            problems.append(said("party {code} is not a known customer", code=code))
            continue
        problem = legal_entity_problem(customer.credit_code)
        if problem:
            problems.append(
                said(
                    "party {code} ({name}): {problem}",
                    code=code,
                    name=customer.legal_name,
                    problem=problem,
                )
            )
    return problems


def check_terms(
    session: Session, terms: Agreement, policy: Policy, *, justification: str | None
) -> tuple[list[Said], list[Said]]:
    """(blocking reasons, deviations). Deviations block only without a justification."""
    reasons = _party_problems(session, terms)
    if terms.contract is None:
        reasons.append(
            said(
                "the terms carry no contract (reference and document_sha256 of the signed document)"
            )
        )
    if terms.settlement.form not in policy.settlement_forms:
        reasons.append(
            said(
                "settlement form {form} is not allowed by the policy (allowed: {allowed})",
                form=terms.settlement.form,
                allowed=tuple(policy.settlement_forms),
            )
        )
    deviations = rate_deviations(session, terms, policy)
    if deviations and not (justification and justification.strip()):
        reasons.extend(
            said("{deviation}: a deviation needs a written justification", deviation=deviation)
            for deviation in deviations
        )
    return reasons, deviations


def _parsed(version: AgreementVersion) -> Agreement:
    # The stored terms were validated when written; parsing again re-checks the bands (R12).
    return Agreement.model_validate(version.terms)


def submit(
    session: Session,
    version_id: int,
    *,
    justification: str | None = None,
    actor: Actor,
    now: dt.datetime,
) -> AgreementVersion:
    """Run the compliance checks on a draft version and submit it for approval."""
    require(actor, Role.SALES, Role.FINANCE, to=said("submit agreements"))
    # Locked before the checks: an edit committed meanwhile cannot slip past them.
    version = locked_version(session, version_id)
    terms = _parsed(version)
    # The policy in force now governs the decision being made now.
    policy_version, policy = policy_in_force(session, now.date())
    reasons, deviations = check_terms(session, terms, policy, justification=justification)
    if reasons:
        raise ComplianceError.blocked(
            said("agreement {code} version {version}", code=terms.id, version=version.version),
            reasons,
        )
    steps = step_list(policy.agreement_approval, plus=policy.deviation.role if deviations else None)
    review = {
        "policy_version": policy_version.version,
        "deviations": [str(deviation) for deviation in deviations],
        "justification": justification.strip() if deviations and justification else None,
        "steps": steps,
    }
    return submit_version(session, version.id, review=review, actor=actor.code, now=now)


def approve(
    session: Session,
    version_id: int,
    *,
    terms_hash: str,
    actor: Actor,
    now: dt.datetime,
) -> AgreementVersion:
    """Approve the submitted version whose terms hash is ``terms_hash`` (what the approver
    reviewed). The version becomes active when this fills its last step."""
    version = locked_version(session, version_id)
    code = _code(session, version)
    if version.status != VersionStatus.SUBMITTED:
        raise ComplianceError.blocked(
            said("agreement {code} version {version}", code=code, version=version.version),
            [said("it is {status}, not submitted", status=VersionStatus(version.status))],
        )
    assert version.review is not None
    if terms_hash != version.terms_hash or version.review.get("terms_hash") != terms_hash:
        raise ComplianceError.blocked(
            said(
                "approving agreement {code} version {version}", code=code, version=version.version
            ),
            [
                # Submitted terms cannot change, but a version can be withdrawn, edited and
                # submitted again after the approver read it; or the hash was mistyped.
                said(
                    "the terms hash given ({given}) is not that of the terms submitted now "
                    "({current}): they changed since you read them, or the hash is mistyped; "
                    "review them again",
                    given=terms_hash[:12],
                    current=version.terms_hash[:12],
                )
            ],
        )
    approvals = approvals_of(session, version)
    role, principal, delegation_id = _slot(session, version, approvals, actor, now.date())
    approval = AgreementApproval(
        version_id=version.id,
        submission=version.submission,
        approver=actor.code,
        principal=principal,
        delegation_id=delegation_id,
        role=role,
        terms_hash=version.terms_hash,
        approved_at=now,
    )
    session.add(approval)
    session.flush()
    evidence = {
        "terms_hash": terms_hash,
        "submission": version.submission,
        "role": role,
        "for": principal,
        "delegation": delegation_id,
    }
    # One event per call: the approval that fills the last step is recorded in the activation.
    if missing_approvals(version, [*approvals, approval]):
        record(
            session,
            type="agreement.version.approved",
            actor=actor.code,
            entity_type="agreement_version",
            entity_id=version.id,
            inputs={"terms_hash": terms_hash, "submission": version.submission},
            outcome=evidence,
            now=now,
        )
    else:
        activate_version(session, version.id, last_approval=evidence, actor=actor.code, now=now)
    return version


def _slot(
    session: Session,
    version: AgreementVersion,
    approvals: list[AgreementApproval],
    actor: Actor,
    day: dt.date,
) -> tuple[str, str, int | None]:
    """(role, principal, delegation) of the first unfilled step this approver can fill."""
    assert version.review is not None
    if actor.code == version.submitted_by:
        raise PermissionDeniedError.said(
            "{user} submitted this version and cannot approve it", user=actor.code
        )
    # Maker and checker: whoever wrote or changed the terms never approves them, also when
    # someone else submitted them.
    authors = _authors(session, version)
    if actor.code in authors:
        raise PermissionDeniedError.said(
            "{user} wrote or changed the terms of this version and cannot approve them",
            user=actor.code,
        )
    people = {a.approver for a in approvals} | {a.principal for a in approvals}
    if actor.code in people:
        raise PermissionDeniedError.said(
            "{user} has approved this submission already", user=actor.code
        )
    candidates = principals(session, actor, day)
    for step in version.review["steps"]:
        filled = sum(1 for a in approvals if a.role == step["role"])
        if filled >= step["count"]:
            continue
        for principal, delegation_id in candidates:
            if (
                principal.code == version.submitted_by
                or principal.code in people
                or principal.code in authors
            ):
                continue
            if principal.has(Role(step["role"])):
                return step["role"], principal.code, delegation_id
    needed = missing_approvals(version, approvals)
    if not needed:
        raise PermissionDeniedError.said(
            "{user} cannot fill any open approval step (still needed: none)", user=actor.code
        )
    raise PermissionDeniedError.said(
        "{user} cannot fill any open approval step (still needed: {steps})",
        user=actor.code,
        steps=said_steps(needed),
    )


def _authors(session: Session, version: AgreementVersion) -> set[str]:
    """Who wrote the version's terms or changed them while it was a draft (the audit trail
    holds each of those steps with its actor)."""
    return set(
        session.scalars(
            select(AuditEvent.actor).where(
                AuditEvent.entity_type == "agreement_version",
                AuditEvent.entity_id == str(version.id),
                AuditEvent.type.in_(["agreement.version.created", "agreement.version.edited"]),
            )
        )
    )


def reject(
    session: Session, version_id: int, *, reason: str, actor: Actor, now: dt.datetime
) -> AgreementVersion:
    """Send a submitted version back to draft, with the reason."""
    require(actor, Role.APPROVER, Role.COMPLIANCE, to=said("reject agreements"))
    return return_to_draft(
        session,
        version_id,
        reason=reason,
        event="agreement.version.rejected",
        actor=actor.code,
        now=now,
    )


def withdraw(
    session: Session, version_id: int, *, reason: str, actor: Actor, now: dt.datetime
) -> AgreementVersion:
    """The submitter (or compliance) takes a submitted version back to draft to change it."""
    version = locked_version(session, version_id)
    if actor.code != version.submitted_by:
        require(actor, Role.COMPLIANCE, to=said("withdraw another user's submission"))
    return return_to_draft(
        session,
        version_id,
        reason=reason,
        event="agreement.version.withdrawn",
        actor=actor.code,
        now=now,
    )


def _code(session: Session, version: AgreementVersion) -> str:
    agreement = session.get(AgreementRecord, version.agreement_id)
    assert agreement is not None
    return agreement.code
