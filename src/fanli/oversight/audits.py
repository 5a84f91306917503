"""Running the periodic audit, and the findings' workflow.

- ``run_audit`` runs the detectors over one accounting period. A candidate that matches an
  existing finding (same detector and fingerprint) refreshes that finding's evidence, and its
  status stays as it was. Any other candidate opens a new finding. Running again never
  duplicates.
- A finding goes open -> assigned -> resolved, or to dismissed from open or assigned. Resolving
  and dismissing need a written reason.
- ``report`` filters findings by period, detector, department, owner and status;
  ``write_report`` saves them, with counts per detector, department, owner and status, as an
  Excel workbook.

Each call writes one audit event.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from openpyxl import Workbook
from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.audit.service import record
from fanli.kit.errors import Code, FanliError, InputError, Month, NotFoundError, said, said_to_json
from fanli.kit.periods import add_months
from fanli.kit.progress import ProgressHook, Stage
from fanli.ledger.models import AccountingPeriod
from fanli.ledger.periods import parse_code
from fanli.oversight.detectors import DETECTORS, Scope
from fanli.oversight.models import AuditRun, Finding, FindingStatus
from fanli.sales.store import FactStore
from fanli.users.actor import Actor, Role, either, require
from fanli.users.models import User

AUDITORS = (Role.INTERNAL_AUDITOR, Role.ADMINISTRATOR)
# Who can own a finding: the roles that may resolve one (as over the API). A customer user, an
# external auditor or an approver could never close it.
OWNERS = frozenset({Role.INTERNAL_AUDITOR, Role.COMPLIANCE, Role.FINANCE, Role.ADMINISTRATOR})


class FindingError(FanliError):
    code = "transition_refused"


def run_audit(
    session: Session,
    facts: FactStore,
    period_code: str,
    *,
    actor: Actor,
    now: dt.datetime,
    detectors: Sequence[str] | None = None,
    progress: ProgressHook | None = None,
) -> AuditRun:
    """Run the detectors (all, or those named) over ``period_code`` and record the findings."""
    require(actor, *AUDITORS, to=said("run audits"))
    period = session.scalar(select(AccountingPeriod).where(AccountingPeriod.code == period_code))
    if period is None:
        # Nothing was posted in it yet; its returns and agreements can still be audited.
        start = parse_code(period_code)
        period = AccountingPeriod(code=period_code, start=start, end=add_months(start, 1))
    if period.start > now.date() + dt.timedelta(days=1):
        # A month to come has nothing to audit: "0 findings" would read as a clean bill. (A
        # running month may be audited: an interim look, run again once it is over. A day's
        # grace: a ``now`` taken in UTC can be a day behind the company's.)
        raise InputError.said_at(
            "{period} has not started yet; there is nothing to audit",
            field="period",
            period=Month(period_code),
        )
    names = list(detectors) if detectors else list(DETECTORS)
    unknown = [name for name in names if name not in DETECTORS]
    if unknown:
        raise InputError.said_at(
            "unknown detector {names} (known: {known})",
            field="detector",
            names=", ".join(unknown),
            known=tuple(Code(name) for name in DETECTORS),
        )
    run = AuditRun(
        period=period.code, started_at=now, actor=actor.code, detectors=names, found=0, opened=0
    )
    session.add(run)
    session.flush()
    # Stored times fall on the company's days: ``now`` is taken in its zone (config.company_now).
    scope = Scope(session, facts, period, zone=now.tzinfo or dt.UTC)
    per_detector: Counter[str] = Counter()
    if progress is not None:
        progress(Stage.DETECTING.value, 0, 1)
    for done, name in enumerate(names):
        if progress is not None:  # within the one stage: detectors run so far
            progress(name, done, len(names))
        detector = DETECTORS[name]
        for candidate in detector.find(scope):
            per_detector[name] += 1
            finding = session.scalar(
                select(Finding)
                .where(Finding.detector == name)
                .where(Finding.fingerprint == candidate.fingerprint)
            )
            if finding is None:
                session.add(
                    Finding(
                        detector=name,
                        fingerprint=candidate.fingerprint,
                        period=period.code,
                        department=detector.department,
                        customer_code=candidate.customer,
                        amount=candidate.amount,
                        summary=str(candidate.summary)[:500],
                        summary_said=said_to_json(candidate.summary),
                        evidence=candidate.evidence,
                        status=FindingStatus.OPEN,
                        first_run_id=run.id,
                        last_run_id=run.id,
                        opened_at=now,
                    )
                )
                run.opened += 1
            else:
                finding.summary = str(candidate.summary)[:500]
                finding.summary_said = said_to_json(candidate.summary)
                finding.evidence = candidate.evidence
                finding.amount = candidate.amount
                finding.last_run_id = run.id
            run.found += 1
    session.flush()
    record(
        session,
        type="audit.run",
        actor=actor.code,
        entity_type="audit_run",
        entity_id=run.id,
        inputs={"period": period.code, "detectors": names},
        outcome={"found": run.found, "opened": run.opened, "per_detector": dict(per_detector)},
        now=now,
    )
    return run


def _finding(session: Session, finding_id: int) -> Finding:
    found = session.get(Finding, finding_id, with_for_update=True, populate_existing=True)
    if found is None:
        raise NotFoundError.said("there is no finding {finding}", finding=finding_id)
    return found


def _move(
    session: Session,
    finding: Finding,
    status: FindingStatus,
    *,
    actor: Actor,
    now: dt.datetime,
    reason: str | None = None,
) -> Finding:
    before = finding.status
    finding.status = status
    if status in (FindingStatus.RESOLVED, FindingStatus.DISMISSED):
        finding.resolution = reason
        finding.closed_at = now
        finding.closed_by = actor.code
    session.flush()
    record(
        session,
        type=f"audit.finding.{status.value}",
        actor=actor.code,
        entity_type="finding",
        entity_id=finding.id,
        inputs={"reason": reason, "owner": finding.owner},
        outcome={"from": before, "to": status.value},
        now=now,
    )
    return finding


def assign_finding(
    session: Session, finding_id: int, owner: str, *, actor: Actor, now: dt.datetime
) -> Finding:
    """Give an open or assigned finding to a user, who answers for it."""
    require(actor, *AUDITORS, to=said("assign findings"))
    finding = _finding(session, finding_id)
    if finding.status not in (FindingStatus.OPEN, FindingStatus.ASSIGNED):
        raise FindingError.said(
            "finding {id} is {status}: it cannot be assigned",
            id=finding_id,
            status=FindingStatus(finding.status),
        )
    user = session.scalar(select(User).where(User.code == owner))
    if user is None or not user.active:
        raise NotFoundError.said("there is no active user {user}", user=owner)
    if not OWNERS & {Role(role) for role in user.roles}:
        raise InputError.said_at(
            "{user} cannot resolve findings; give it to a user with the role {roles}",
            field="owner",
            user=owner,
            roles=either(sorted(OWNERS)),
        )
    finding.owner = owner
    return _move(session, finding, FindingStatus.ASSIGNED, actor=actor, now=now)


def _reason(reason: str) -> str:
    if not reason.strip():
        raise InputError.said_at("a reason is required", field="reason")
    return reason.strip()


def resolve_finding(
    session: Session, finding_id: int, *, reason: str, actor: Actor, now: dt.datetime
) -> Finding:
    """Close an assigned finding as dealt with; its owner or an auditor may."""
    finding = _finding(session, finding_id)
    if actor.code != finding.owner:
        require(actor, *AUDITORS, to=said("resolve findings assigned to others"))
    if finding.status != FindingStatus.ASSIGNED:
        raise FindingError.said(
            "finding {id} is {status}: assign it first",
            id=finding_id,
            status=FindingStatus(finding.status),
        )
    return _move(
        session, finding, FindingStatus.RESOLVED, actor=actor, now=now, reason=_reason(reason)
    )


def dismiss_finding(
    session: Session, finding_id: int, *, reason: str, actor: Actor, now: dt.datetime
) -> Finding:
    """Close an open or assigned finding as no anomaly (an auditor's call, with the reason)."""
    require(actor, *AUDITORS, to=said("dismiss findings"))
    finding = _finding(session, finding_id)
    if finding.status not in (FindingStatus.OPEN, FindingStatus.ASSIGNED):
        raise FindingError.said(
            "finding {id} is {status}: it cannot be dismissed",
            id=finding_id,
            status=FindingStatus(finding.status),
        )
    return _move(
        session, finding, FindingStatus.DISMISSED, actor=actor, now=now, reason=_reason(reason)
    )


@dataclass(frozen=True)
class Filters:
    period: str | None = None
    detector: str | None = None
    department: str | None = None
    owner: str | None = None
    status: str | None = None


def report(session: Session, filters: Filters = Filters()) -> list[Finding]:
    query = select(Finding).order_by(Finding.period, Finding.detector, Finding.id)
    for column, value in (
        (Finding.period, filters.period),
        (Finding.detector, filters.detector),
        (Finding.department, filters.department),
        (Finding.owner, filters.owner),
        (Finding.status, filters.status),
    ):
        if value is not None:
            query = query.where(column == value)
    return list(session.scalars(query))


COLUMNS = (
    "id", "period", "detector", "department", "status", "owner", "customer", "amount",
    "summary", "resolution", "opened_at", "closed_at", "closed_by",
)  # fmt: skip


def write_report(findings: Sequence[Finding], path: Path) -> None:
    """The findings and their counts per detector, department, owner and status, as .xlsx."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "findings"
    sheet.append(list(COLUMNS))
    for f in findings:
        sheet.append(
            [
                f.id,
                f.period,
                f.detector,
                f.department,
                f.status,
                f.owner or "",
                f.customer_code or "",
                f.amount,  # a Decimal: Excel keeps it a number
                f.summary,
                f.resolution or "",
                f.opened_at.replace(tzinfo=None),
                f.closed_at.replace(tzinfo=None) if f.closed_at else None,
                f.closed_by or "",
            ]
        )
    summary = book.create_sheet("summary")
    summary.append(["by", "value", "findings", "open", "assigned", "resolved", "dismissed"])
    for by in ("detector", "department", "owner", "status"):
        counts: dict[str, Counter[str]] = {}
        for f in findings:
            value = getattr(f, by) or "(none)"
            counts.setdefault(value, Counter())[f.status] += 1
        for value, by_status in sorted(counts.items()):
            summary.append(
                [
                    by,
                    value,
                    sum(by_status.values()),
                    *(by_status[s.value] for s in FindingStatus),
                ]
            )
    book.save(path)
