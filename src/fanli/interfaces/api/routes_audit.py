"""Routes of the periodic audit: runs, findings and their workflow, and the trail's own check.
Thin: one service or query each (``fanli.oversight``, ``fanli.audit.trail``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from fanli.audit.trail import verify
from fanli.config import company_now
from fanli.kit.errors import NotFoundError
from fanli.oversight.audits import (
    assign_finding,
    dismiss_finding,
    resolve_finding,
    run_audit,
)
from fanli.oversight.models import Finding, FindingStatus

from .deps import Authorized, Db, Facts, Id, Limit, Offset, paged
from .schemas import (
    ERRORS,
    AssignmentRequest,
    AuditRunIn,
    AuditRunOut,
    FindingOut,
    Page,
    ReasonRequest,
    TrailOut,
)
from .strict_json import StrictJsonRoute

router = APIRouter(prefix="/api/audit", responses=ERRORS, route_class=StrictJsonRoute)


@router.post("/runs", response_model=AuditRunOut, status_code=201)
def audit_run(body: AuditRunIn, access: Authorized, session: Db, store: Facts) -> AuditRunOut:
    """Run the detectors (all, or those named) over an accounting period."""
    run = run_audit(
        session,
        store,
        body.period,
        actor=access.actor,
        now=company_now(),
        detectors=body.detectors,
    )
    return AuditRunOut.model_validate(run)


@router.get("/findings", response_model=Page[FindingOut])
def findings(  # noqa: PLR0917 - FastAPI maps parameters to query and dependencies
    _access: Authorized,
    session: Db,
    offset: Offset = 0,
    limit: Limit = 50,
    period: Annotated[str | None, Query(max_length=7)] = None,
    detector: Annotated[str | None, Query(max_length=40)] = None,
    department: Annotated[str | None, Query(max_length=40)] = None,
    owner: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[FindingStatus | None, Query()] = None,
) -> Page[FindingOut]:
    """Findings, oldest first; filtered."""
    query = select(Finding)
    for column, value in (
        (Finding.period, period),
        (Finding.detector, detector),
        (Finding.department, department),
        (Finding.owner, owner),
        (Finding.status, status),
    ):
        if value is not None:
            query = query.where(column == value)
    return paged(session, query, Finding.id, offset, limit, shape=FindingOut)


@router.get("/findings/{finding_id}", response_model=FindingOut, responses={404: {}})
def finding(finding_id: Id, _access: Authorized, session: Db) -> FindingOut:
    found = session.get(Finding, finding_id)
    if found is None:
        raise NotFoundError(f"there is no finding {finding_id}")
    return FindingOut.model_validate(found)


@router.post("/findings/{finding_id}/assignment", response_model=FindingOut)
def finding_assign(
    finding_id: Id, body: AssignmentRequest, access: Authorized, session: Db
) -> FindingOut:
    done = assign_finding(session, finding_id, body.owner, actor=access.actor, now=company_now())
    return FindingOut.model_validate(done)


@router.post("/findings/{finding_id}/resolution", response_model=FindingOut)
def finding_resolve(
    finding_id: Id, body: ReasonRequest, access: Authorized, session: Db
) -> FindingOut:
    done = resolve_finding(
        session, finding_id, reason=body.reason, actor=access.actor, now=company_now()
    )
    return FindingOut.model_validate(done)


@router.post("/findings/{finding_id}/dismissal", response_model=FindingOut)
def finding_dismiss(
    finding_id: Id, body: ReasonRequest, access: Authorized, session: Db
) -> FindingOut:
    done = dismiss_finding(
        session, finding_id, reason=body.reason, actor=access.actor, now=company_now()
    )
    return FindingOut.model_validate(done)


@router.get("/trail", response_model=TrailOut)
def trail(_access: Authorized, session: Db) -> TrailOut:
    """Recompute the whole chain in the database (checkpoints are checked with the command
    line's ``fanli audit verify``, by whoever holds them)."""
    result = verify(session)
    return TrailOut(
        holds=result.holds,
        events=result.events,
        first_bad_event=result.first_bad_event,
        problem=str(result.broken) if result.broken else None,
    )
