"""Reading agreements: the versions an accrual run rates, with the dates each one counts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.agreements.models import (
    BEEN_IN_FORCE,
    AgreementRecord,
    AgreementVersion,
    VersionStatus,
)
from fanli.agreements.terms import Agreement, DateRange
from fanli.audit.models import AuditEvent
from fanli.kit.sql import chunks


@dataclass(frozen=True)
class RunVersion:
    """An active version and its terms as the engine must see them: counting sales from its
    effective date until the next version's (or the termination date)."""

    version_id: int
    code: str
    version: int
    counts_from: dt.date
    counts_until: dt.date  # exclusive
    terms: Agreement


# Active terms never change (the hash is checked on activation), so parsed terms are kept by
# hash: validating 200 agreements on every run costs more than an incremental run's calculation.
_PARSED: dict[str, Agreement] = {}


def _parsed(version: AgreementVersion) -> Agreement:
    terms = _PARSED.get(version.terms_hash)
    if terms is None:
        terms = Agreement.model_validate(version.terms)
        if len(_PARSED) > 10_000:
            _PARSED.clear()
        _PARSED[version.terms_hash] = terms
    return terms


def terms_for_run(session: Session) -> list[RunVersion]:
    # Plain rows, not ORM objects, and the terms' JSON only for hashes not parsed yet: an
    # incremental run reads 200 versions in a few ms instead of about 17.
    rows = session.execute(
        select(
            AgreementRecord.code,
            AgreementRecord.ended_on,
            AgreementVersion.id,
            AgreementVersion.version,
            AgreementVersion.effective_from,
            AgreementVersion.terms_hash,
        )
        .join(AgreementVersion, AgreementVersion.agreement_id == AgreementRecord.id)
        .where(AgreementVersion.status == VersionStatus.ACTIVE)
        .order_by(AgreementRecord.code, AgreementVersion.version)
    ).all()
    # Held here, not looked up in the cache again: the cache may be emptied while filled.
    terms_of = {
        row.terms_hash: _PARSED[row.terms_hash] for row in rows if row.terms_hash in _PARSED
    }
    missing = [row.id for row in rows if row.terms_hash not in terms_of]
    for chunk in chunks(missing):
        for version in session.scalars(
            select(AgreementVersion).where(AgreementVersion.id.in_(chunk))
        ):
            terms_of[version.terms_hash] = _parsed(version)
    by_agreement: dict[str, list[Any]] = {}
    for row in rows:
        by_agreement.setdefault(row.code, []).append(row)
    result = []
    for code, chain in by_agreement.items():
        for position, row in enumerate(chain):
            terms = terms_of[row.terms_hash]
            assert terms.term.end is not None
            until = terms.earning_end
            if position + 1 < len(chain):
                until = min(until, chain[position + 1].effective_from)
            if row.ended_on is not None:
                until = min(until, row.ended_on)
            start = terms.earning_start
            if until <= start:
                continue  # superseded before it ever counted a day
            if until < terms.earning_end:
                dates = terms.eligibility.dates
                eligibility = terms.eligibility.model_copy(
                    update={"dates": DateRange(start=dates.start, end=until)}
                )
                terms = terms.model_copy(update={"eligibility": eligibility})
            result.append(RunVersion(row.id, code, row.version, start, until, terms))
    return result


def versions(
    session: Session, *, status: VersionStatus | None = None
) -> list[tuple[AgreementRecord, AgreementVersion]]:
    """Every agreement with each of its versions (of one status), by code and version."""
    query = (
        select(AgreementRecord, AgreementVersion)
        .join(AgreementVersion, AgreementVersion.agreement_id == AgreementRecord.id)
        .order_by(AgreementRecord.code, AgreementVersion.version)
    )
    if status is not None:
        query = query.where(AgreementVersion.status == status)
    rows = session.execute(query).all()
    return [(agreement, version) for agreement, version in rows]


def in_force(session: Session, code: str) -> tuple[int, Agreement] | None:
    """The latest active version of agreement ``code`` (its number and terms), if it has one."""
    found = session.execute(
        select(AgreementVersion)
        .join(AgreementRecord, AgreementRecord.id == AgreementVersion.agreement_id)
        .where(AgreementRecord.code == code, AgreementVersion.status == VersionStatus.ACTIVE)
        .order_by(AgreementVersion.version.desc())
        .limit(1)
    ).scalar()
    return (found.version, _parsed(found)) if found is not None else None


def settleable_codes(session: Session) -> list[str]:
    """The codes of the agreements that have been in force (drafts and discarded ones have no
    results to settle)."""
    query = select(AgreementRecord.code).where(AgreementRecord.status.in_(BEEN_IN_FORCE))
    return list(session.scalars(query.order_by(AgreementRecord.code)))


@dataclass(frozen=True)
class SentBack:
    """Why a draft is a draft again: who sent its last submission back, when, and the reason."""

    rejected: bool  # an approver or compliance rejected it (else: it was withdrawn)
    by: str
    at: dt.datetime
    reason: str


def sent_back(session: Session, version_ids: list[int]) -> dict[int, SentBack]:
    """For each of these versions sent back to draft, the latest such step (the reason lives in
    the audit trail, where ``return_to_draft`` wrote it)."""
    if not version_ids:
        return {}
    events = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.entity_type == "agreement_version")
        .where(AuditEvent.entity_id.in_([str(i) for i in version_ids]))
        .where(AuditEvent.type.in_(["agreement.version.rejected", "agreement.version.withdrawn"]))
        .order_by(AuditEvent.seq)
    )
    found = {}
    for event in events:  # the latest wins
        found[int(event.entity_id)] = SentBack(
            rejected=event.type == "agreement.version.rejected",
            by=event.actor,
            at=event.occurred_at,
            reason=str(event.inputs.get("reason", "")),
        )
    return found


# An agreement's currency when its terms name none (``Agreement.currency``'s default).
DEFAULT_CURRENCY = "CNY"


def version_currencies(session: Session) -> dict[int, str]:
    """Each agreement version's currency, by version id: the ledger's amounts are in it, and
    amounts in two currencies never add up."""
    return {
        version_id: (terms or {}).get("currency", DEFAULT_CURRENCY)
        for version_id, terms in session.execute(
            select(AgreementVersion.id, AgreementVersion.terms)
        ).all()
    }
