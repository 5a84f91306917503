"""Agreement lifecycle: versions are written as drafts, activated, and then never change.

A version goes draft -> submitted (``fanli.compliance.review`` ran the policy checks) -> active
(every approval step the review named is filled); a rejected or withdrawn submission returns to
draft. An agreement is active from its first active version until it expires (the term has
ended) or is terminated (ended early, from a date).
A change to an active agreement is a new version with a later effective date; the earlier
version keeps counting the sales dated before it (``queries.terms_for_run``).
A draft that is not wanted is discarded, not deleted: it keeps its number and its place in the
audit trail, and an agreement left with nothing but discarded drafts is discarded too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fanli.agreements.models import (
    AgreementApproval,
    AgreementRecord,
    AgreementStatus,
    AgreementVersion,
    VersionStatus,
)
from fanli.agreements.terms import Agreement
from fanli.audit.service import Change, canonical_json, record, record_all
from fanli.kit.errors import FanliError, NotFoundError, said
from fanli.users.actor import Actor, Role, open_steps, require, said_steps


class AgreementError(FanliError):
    code = "agreement_error"


class ImmutableVersionError(AgreementError):
    code = "version_immutable"


def stored_terms(terms: Agreement) -> dict[str, object]:
    """The terms as stored: JSON-safe, amounts as decimal strings, names as written."""
    return terms.model_dump(mode="json", by_alias=True)


def terms_hash(data: dict[str, object]) -> str:
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


def add_version(
    session: Session, terms: Agreement, *, actor: Actor, now: dt.datetime
) -> AgreementVersion:
    """A new draft version of agreement ``terms.id`` (the agreement is created if new).

    The version number is assigned here (the next one); the effective date is the terms'
    ``effective_from`` or, for a first version, the term start.
    """
    require(actor, Role.SALES, Role.FINANCE, to=said("draft agreements"))
    agreement = session.scalar(select(AgreementRecord).where(AgreementRecord.code == terms.id))
    if agreement is None:
        agreement = AgreementRecord(
            code=terms.id, name=terms.name, status=AgreementStatus.DRAFT, created_at=now
        )
        session.add(agreement)
        session.flush()
        created = True  # recorded with its first version: one call, one event
    else:
        created = False
    if agreement.status == AgreementStatus.DISCARDED:  # its code is free for a fresh draft
        agreement.status = AgreementStatus.DRAFT
        agreement.name = terms.name
    if agreement.status in (AgreementStatus.EXPIRED, AgreementStatus.TERMINATED):
        raise AgreementError.said(
            "agreement {code} is {status}; it takes no new version",
            code=terms.id,
            status=AgreementStatus(agreement.status),
        )
    versions = session.scalars(
        select(AgreementVersion)
        .where(AgreementVersion.agreement_id == agreement.id)
        .order_by(AgreementVersion.version)
    ).all()
    pending = [v for v in versions if v.status in (VersionStatus.DRAFT, VersionStatus.SUBMITTED)]
    if pending:
        raise AgreementError.said(
            "agreement {code} has {status} version {version}: finish it first",
            code=terms.id,
            status=VersionStatus(pending[0].status),
            version=pending[0].version,
        )
    number = (versions[-1].version + 1) if versions else 1
    assert terms.term.start is not None
    effective = terms.effective_from or terms.term.start
    active = [v for v in versions if v.status == VersionStatus.ACTIVE]
    if active and effective <= active[-1].effective_from:
        raise AgreementError.said(
            "version {version} of {code} must take effect after {day} (version {active}); "
            "got {effective}",
            version=number,
            code=terms.id,
            day=active[-1].effective_from,
            active=active[-1].version,
            effective=effective,
        )
    if active and terms.pays_without_lines:
        starts = [period.start for period in terms.calculation_periods()]
        if effective not in starts:
            # Otherwise both versions would pay the guarantee (or fixed amount) of the period
            # the change falls in.
            raise AgreementError.said(
                "version {version} of {code} pays without lines (a guarantee or a fixed "
                "amount), so it must take effect at the start of a calculation period, not "
                "{effective}",
                version=number,
                code=terms.id,
                effective=effective,
            )
    data = stored_terms(terms.model_copy(update={"version": number, "effective_from": effective}))
    version = AgreementVersion(
        agreement_id=agreement.id,
        version=number,
        effective_from=effective,
        terms=data,
        terms_hash=terms_hash(data),
        status=VersionStatus.DRAFT,
        created_at=now,
    )
    session.add(version)
    session.flush()
    record(
        session,
        type="agreement.version.created",
        actor=actor.code,
        entity_type="agreement_version",
        entity_id=version.id,
        inputs={"agreement": terms.id, "name": terms.name, "terms_hash": version.terms_hash},
        outcome={
            "version": number,
            "effective_from": effective,
            "status": version.status,
            "agreement_created": created,
        },
        now=now,
    )
    return version


def edit_draft(
    session: Session, version_id: int, terms: Agreement, *, actor: Actor, now: dt.datetime
) -> AgreementVersion:
    """Replace the terms of a draft version. An active version refuses: make a new version."""
    require(actor, Role.SALES, Role.FINANCE, to=said("edit agreements"))
    version = locked_version(session, version_id)
    agreement = session.get(AgreementRecord, version.agreement_id)
    assert agreement is not None
    if version.status != VersionStatus.DRAFT:
        raise ImmutableVersionError.said(
            "version {version} of {code} is {status}: its terms cannot change; add a new "
            "version with an effective date instead",
            version=version.version,
            code=agreement.code,
            status=VersionStatus(version.status),
        )
    if terms.id != agreement.code:
        raise AgreementError.said(
            "these terms are for {terms}, not {code}", terms=terms.id, code=agreement.code
        )
    effective = terms.effective_from or version.effective_from
    data = stored_terms(
        terms.model_copy(update={"version": version.version, "effective_from": effective})
    )
    before = version.terms_hash
    version.terms = data
    version.terms_hash = terms_hash(data)
    version.effective_from = effective
    session.flush()
    record(
        session,
        type="agreement.version.edited",
        actor=actor.code,
        entity_type="agreement_version",
        entity_id=version.id,
        inputs={"terms_hash_before": before},
        outcome={"terms_hash": version.terms_hash},
        now=now,
    )
    return version


def submit_version(
    session: Session, version_id: int, *, review: dict[str, Any], actor: str, now: dt.datetime
) -> AgreementVersion:
    """Mark a draft as submitted with the review it passed (``fanli.compliance.review`` runs
    the checks and decides the approval steps: ``review["steps"]`` = [{role, count}])."""
    version = locked_version(session, version_id)
    code = _code(session, version)
    _require_draft(version, code)
    version.status = VersionStatus.SUBMITTED
    version.submission += 1
    version.submitted_by = actor
    version.submitted_at = now
    version.review = {**review, "terms_hash": version.terms_hash}
    session.flush()
    record(
        session,
        type="agreement.version.submitted",
        actor=actor,
        entity_type="agreement_version",
        entity_id=version.id,
        inputs={"agreement": code, "version": version.version, "terms_hash": version.terms_hash},
        outcome={"submission": version.submission, "review": version.review},
        now=now,
    )
    return version


def return_to_draft(
    session: Session, version_id: int, *, reason: str, event: str, actor: str, now: dt.datetime
) -> AgreementVersion:
    """A submitted version goes back to draft (rejected or withdrawn); its approvals lapse,
    because approvals count only for the submission they were given to."""
    version = locked_version(session, version_id)
    code = _code(session, version)
    if version.status != VersionStatus.SUBMITTED:
        raise AgreementError.said(
            "version {version} of {code} is {status}, not submitted",
            version=version.version,
            code=code,
            status=VersionStatus(version.status),
        )
    if not reason.strip():
        raise AgreementError.said("sending a version back to draft needs a reason")
    version.status = VersionStatus.DRAFT
    session.flush()
    record(
        session,
        type=event,
        actor=actor,
        entity_type="agreement_version",
        entity_id=version.id,
        inputs={"agreement": code, "version": version.version, "reason": reason},
        outcome={"status": version.status},
        now=now,
    )
    return version


def discard_draft(
    session: Session, version_id: int, *, reason: str, actor: Actor, now: dt.datetime
) -> AgreementVersion:
    """Give up a draft version (a submitted one must be withdrawn first). It is kept, marked
    discarded, so its number is never reused and the trail still names it; the agreement
    itself is discarded when no other version is left."""
    require(actor, Role.SALES, Role.FINANCE, to=said("discard drafts"))
    version = locked_version(session, version_id)
    code = _code(session, version)
    _require_draft(version, code)
    if not reason.strip():
        raise AgreementError.said("discarding a draft needs a reason")
    version.status = VersionStatus.DISCARDED
    agreement = session.get(AgreementRecord, version.agreement_id)
    assert agreement is not None
    others = session.scalar(
        select(func.count())
        .select_from(AgreementVersion)
        .where(
            AgreementVersion.agreement_id == agreement.id,
            AgreementVersion.id != version.id,
            AgreementVersion.status != VersionStatus.DISCARDED,
        )
    )
    if not others:
        agreement.status = AgreementStatus.DISCARDED
    session.flush()
    record(
        session,
        type="agreement.version.discarded",
        actor=actor.code,
        entity_type="agreement_version",
        entity_id=version.id,
        inputs={"agreement": code, "version": version.version, "reason": reason.strip()},
        outcome={"status": version.status, "agreement_status": agreement.status},
        now=now,
    )
    return version


def missing_approvals(version: AgreementVersion, approvals: list[AgreementApproval]) -> list[str]:
    """The approval steps of the current submission still unfilled, as "role xN"."""
    assert version.review is not None
    counted = [
        a.role
        for a in approvals
        if a.submission == version.submission and a.terms_hash == version.terms_hash
    ]
    return open_steps(version.review["steps"], counted)


def approvals_of(session: Session, version: AgreementVersion) -> list[AgreementApproval]:
    return list(
        session.scalars(
            select(AgreementApproval)
            .where(
                AgreementApproval.version_id == version.id,
                AgreementApproval.submission == version.submission,
            )
            .order_by(AgreementApproval.id)
        )
    )


def activate_version(
    session: Session,
    version_id: int,
    *,
    last_approval: dict[str, Any],
    actor: str,
    now: dt.datetime,
) -> AgreementVersion:
    """Make a submitted version active once every approval step of its submission is filled;
    its terms are fixed from here on. There is no other way to activate a version."""
    version = locked_version(session, version_id)
    agreement = session.get(AgreementRecord, version.agreement_id)
    assert agreement is not None
    if version.status != VersionStatus.SUBMITTED:
        raise AgreementError.said(
            "version {version} of {code} is {status}: only a submitted and approved version "
            "becomes active",
            version=version.version,
            code=agreement.code,
            status=VersionStatus(version.status),
        )
    if agreement.status in (AgreementStatus.EXPIRED, AgreementStatus.TERMINATED):
        raise AgreementError.said(
            "agreement {code} is {status}",
            code=agreement.code,
            status=AgreementStatus(agreement.status),
        )
    if terms_hash(version.terms) != version.terms_hash or (
        version.review is None or version.review.get("terms_hash") != version.terms_hash
    ):
        raise AgreementError.said(
            "version {version} of {code}: its terms are not the ones reviewed",
            version=version.version,
            code=agreement.code,
        )
    missing = missing_approvals(version, approvals_of(session, version))
    if missing:
        raise AgreementError.said(
            "version {version} of {code} still needs approvals: {steps}",
            version=version.version,
            code=agreement.code,
            steps=said_steps(missing),
        )
    version.status = VersionStatus.ACTIVE
    version.activated_at = now
    agreement.status = AgreementStatus.ACTIVE
    session.flush()
    record(
        session,
        type="agreement.version.activated",
        actor=actor,
        entity_type="agreement_version",
        entity_id=version.id,
        inputs={
            "agreement": agreement.code,
            "version": version.version,
            "last_approval": last_approval,
        },
        outcome={"terms_hash": version.terms_hash, "effective_from": version.effective_from},
        now=now,
    )
    return version


def terminate(
    session: Session, code: str, *, on: dt.date, reason: str, actor: Actor, now: dt.datetime
) -> AgreementRecord:
    """End an agreement early: sales dated on or after ``on`` no longer count."""
    require(actor, Role.SALES, Role.FINANCE, Role.COMPLIANCE, to=said("terminate agreements"))
    # Locked and read fresh: a second termination waits for the first, then finds it ended.
    agreement = session.scalar(
        select(AgreementRecord)
        .where(AgreementRecord.code == code)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if agreement is None:
        raise NotFoundError.said("there is no agreement {agreement}", agreement=code)
    if agreement.status != AgreementStatus.ACTIVE:
        raise AgreementError.said(
            "agreement {code} is {status}, not active",
            code=code,
            status=AgreementStatus(agreement.status),
        )
    if not reason.strip():
        raise AgreementError.said("terminating an agreement needs a reason")
    agreement.status = AgreementStatus.TERMINATED
    agreement.ended_at = now
    agreement.ended_on = on
    session.flush()
    record(
        session,
        type="agreement.terminated",
        actor=actor.code,
        entity_type="agreement",
        entity_id=code,
        inputs={"on": on, "reason": reason},
        outcome={"status": agreement.status},
        now=now,
    )
    return agreement


def expire_ended(session: Session, *, as_of: dt.date, actor: Actor, now: dt.datetime) -> list[str]:
    """Mark active agreements whose term has ended by ``as_of`` as expired."""
    require(actor, Role.FINANCE, to=said("expire agreements"))
    expired = []
    latest = (
        select(AgreementVersion.agreement_id, func.max(AgreementVersion.version).label("version"))
        .where(AgreementVersion.status == VersionStatus.ACTIVE)
        .group_by(AgreementVersion.agreement_id)
        .subquery()
    )
    rows = session.execute(
        select(AgreementRecord, AgreementVersion)
        .join(latest, latest.c.agreement_id == AgreementRecord.id)
        .join(
            AgreementVersion,
            (AgreementVersion.agreement_id == AgreementRecord.id)
            & (AgreementVersion.version == latest.c.version),
        )
        .where(AgreementRecord.status == AgreementStatus.ACTIVE)
        # Locked and read fresh: a termination committed meanwhile is seen (the row is no
        # longer active) instead of being overwritten by the expiry.
        .with_for_update(of=AgreementRecord)
        .execution_options(populate_existing=True)
    ).all()
    changes = []
    for agreement, version in rows:
        end = dt.date.fromisoformat(version.terms["term"]["end"])
        if end <= as_of:
            agreement.status = AgreementStatus.EXPIRED
            agreement.ended_at = now
            expired.append(agreement.code)
            changes.append(
                Change(
                    type="agreement.expired",
                    actor=actor.code,
                    entity_type="agreement",
                    entity_id=agreement.code,
                    inputs={"as_of": as_of, "term_end": end},
                    outcome={"status": agreement.status},
                )
            )
    # One event per agreement, written together (the statuses flush with them).
    record_all(session, changes, now=now)
    session.flush()
    return expired


def locked_version(session: Session, version_id: int) -> AgreementVersion:
    """The version, its row locked until the transaction ends (PostgreSQL; SQLite's writers
    always queue) and re-read, so that a lifecycle step never acts on terms or a status that
    another transaction has just changed."""
    version = session.scalar(
        select(AgreementVersion)
        .where(AgreementVersion.id == version_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if version is None:
        raise NotFoundError.said("there is no agreement version {version}", version=version_id)
    return version


def add_versions(
    session: Session, agreements: list[Agreement], *, actor: Actor, now: dt.datetime
) -> list[AgreementVersion]:
    """A new draft version of each agreement in a terms file."""
    return [add_version(session, terms, actor=actor, now=now) for terms in agreements]


def draft_of(session: Session, code: str) -> AgreementVersion:
    """The version of agreement ``code`` that is a draft or submitted (at most one is)."""
    version = session.scalar(
        select(AgreementVersion)
        .join(AgreementRecord, AgreementRecord.id == AgreementVersion.agreement_id)
        .where(
            AgreementRecord.code == code,
            AgreementVersion.status.in_([VersionStatus.DRAFT, VersionStatus.SUBMITTED]),
        )
    )
    if version is None:
        if session.scalar(select(AgreementRecord.id).where(AgreementRecord.code == code)) is None:
            raise NotFoundError.said("there is no agreement {agreement}", agreement=code)
        raise AgreementError.said("agreement {code} has no draft or submitted version", code=code)
    return version


def _require_draft(version: AgreementVersion, code: str) -> None:
    if version.status != VersionStatus.DRAFT:
        raise AgreementError.said(
            "version {version} of {code} is {status}, not a draft",
            version=version.version,
            code=code,
            status=VersionStatus(version.status),
        )


def _code(session: Session, version: AgreementVersion) -> str:
    agreement = session.get(AgreementRecord, version.agreement_id)
    assert agreement is not None
    return agreement.code
