"""The routes. Each parses its input, calls one service or query, and returns its result; the
business rules live in the services. Object-level checks answer another customer's id exactly
as a missing one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from fanli.audit.models import AuditEvent
from fanli.compliance.queries import policy_versions
from fanli.config import company_now
from fanli.customers.models import Customer
from fanli.customers.queries import customer_by_code
from fanli.settlements import service as settlements
from fanli.settlements.models import Settlement, SettlementStatus
from fanli.settlements.queries import settlement_page, waiting_for
from fanli.settlements.statements import settlement_standings
from fanli.users.actor import Actor
from fanli.users.auth import Outcome, create_token, revoke_token, sign_in, sign_out

from .deps import (
    NOT_MODIFIED,
    SESSION_COOKIE,
    Authorized,
    Db,
    Facts,
    Id,
    IdempotencyKey,
    Limit,
    Offset,
    cached_json,
    check_customer,
    credential,
    paged,
    visible_customers,
    visible_settlement,
)
from .errors import error_body
from .schemas import (
    ERRORS,
    CustomerOut,
    EventOut,
    Me,
    Page,
    PayoutOut,
    PayRequest,
    PolicyOut,
    ProposeRequest,
    RejectRequest,
    SettlementDetailOut,
    SettlementOut,
    SignInRequest,
    StandingOut,
    TokenCreated,
    TokenRequest,
)
from .strict_json import StrictJsonRoute

router = APIRouter(prefix="/api", responses=ERRORS, route_class=StrictJsonRoute)


# ---- sign-in ----------------------------------------------------------------------------------


@router.post("/session", response_model=Me, responses={401: {}, 429: {}})
def create_session(
    body: SignInRequest, request: Request, response: Response, session: Db
) -> Me | JSONResponse:
    """Sign in; the session cookie is Secure, HttpOnly and SameSite=Strict. A refusal is a
    response, not an exception, so that the recorded attempt commits (throttling counts it)."""
    source = request.client.host if request.client else "unknown"
    result = sign_in(
        session, body.user, body.password, totp_code=body.totp, source=source, now=company_now()
    )
    if result.outcome is Outcome.THROTTLED:
        return JSONResponse(
            error_body("throttled", "too many failed sign-ins; wait 15 minutes"), status_code=429
        )
    if result.outcome is not Outcome.SIGNED_IN or result.actor is None:
        return JSONResponse(
            error_body("unauthenticated", "wrong user, password or second-factor code"),
            status_code=401,
        )
    assert result.token is not None
    response.set_cookie(
        SESSION_COOKIE,
        result.token,
        httponly=True,
        secure=True,
        samesite="strict",
        path="/",
    )
    return _me(result.actor, result.csrf_token, change_password=result.password_change_required)


@router.delete("/session", status_code=204)
def end_session(request: Request, _access: Authorized, session: Db) -> Response:
    found = credential(request)
    if found and found[0] == "cookie":
        sign_out(session, found[1], now=company_now())
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _me(actor: Actor, csrf: str | None, *, change_password: bool) -> Me:
    return Me(
        code=actor.code,
        roles=sorted(role.value for role in actor.roles),
        customer=actor.customer_code,
        approval_limit=actor.approval_limit,
        csrf_token=csrf,
        password_change_required=change_password,
    )


@router.get("/me", response_model=Me)
def me(access: Authorized) -> Me:
    return _me(
        access.actor,
        access.who.csrf_token,
        change_password=access.who.password_change_required,
    )


@router.post("/tokens", response_model=TokenCreated, status_code=201)
def new_token(body: TokenRequest, access: Authorized, session: Db) -> TokenCreated:
    token, row = create_token(
        session,
        name=body.name,
        roles=body.roles,
        days=body.days,
        actor=access.actor,
        now=company_now(),
    )
    return TokenCreated(id=row.id, token=token, roles=row.roles, expires_at=row.expires_at)


@router.delete("/tokens/{token_id}", status_code=204)
def delete_token(token_id: Id, access: Authorized, session: Db) -> Response:
    revoke_token(session, token_id, actor=access.actor, now=company_now())
    return Response(status_code=204)


# ---- customers --------------------------------------------------------------------------------


@router.get("/customers", response_model=Page[CustomerOut])
def customers(
    access: Authorized,
    session: Db,
    offset: Offset = 0,
    limit: Limit = 50,
    segment: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[CustomerOut]:
    query = select(Customer)
    visible = visible_customers(session, access)
    if visible is not None:
        query = query.where(Customer.code.in_(sorted(visible)))
    if segment is not None:
        query = query.where(Customer.segment == segment)
    return paged(session, query, Customer.code, offset, limit, shape=CustomerOut)


@router.get("/customers/{code}", response_model=CustomerOut, responses={404: {}})
def customer(code: str, access: Authorized, session: Db) -> CustomerOut:
    check_customer(session, access, code, f"customer {code}")
    return CustomerOut.model_validate(customer_by_code(session, code))


# ---- settlements ------------------------------------------------------------------------------


@router.get("/settlements", response_model=Page[SettlementOut], responses=NOT_MODIFIED)
def settlement_list(  # noqa: PLR0917 - FastAPI maps parameters to query and dependencies
    request: Request,
    access: Authorized,
    session: Db,
    offset: Offset = 0,
    limit: Limit = 50,
    status: Annotated[SettlementStatus | None, Query()] = None,
    beneficiary: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    visible = visible_customers(session, access)

    def page() -> Page[SettlementOut]:
        rows, total = settlement_page(
            session,
            status=status,
            beneficiary=beneficiary,
            customers=visible,
            offset=offset,
            limit=limit,
        )
        return Page[SettlementOut](
            items=[SettlementOut.model_validate(row) for row in rows],
            total=total,
            offset=offset,
            limit=limit,
        )

    frozen = None if visible is None else frozenset(visible)
    key = ("settlements", offset, limit, status, beneficiary, frozen)
    return cached_json(request, session, key, page)


def _detailed(session: Db, store: Facts, rows: list[Settlement]) -> list[SettlementDetailOut]:
    """The settlements with their period's statement standing, where one is open and contested."""
    found = settlement_standings(session, store, rows)
    out = []
    for row in rows:
        detail = SettlementDetailOut.model_validate(row)
        said = found.get(row.id)
        if said is not None:
            detail.statement = StandingOut(
                standing=said.standing.value, since=said.since, comment=said.comment
            )
        out.append(detail)
    return out


@router.get("/settlements/waiting", response_model=list[SettlementDetailOut])
def settlements_waiting(access: Authorized, session: Db, store: Facts) -> list[SettlementDetailOut]:
    found = waiting_for(session, access.actor, company_now().date())
    return _detailed(session, store, found.settlements)


@router.get("/settlements/{settlement_id}", response_model=SettlementDetailOut, responses={404: {}})
def settlement(
    settlement_id: Id, access: Authorized, session: Db, store: Facts
) -> SettlementDetailOut:
    return _detailed(session, store, [visible_settlement(session, access, settlement_id)])[0]


@router.post("/settlements", response_model=SettlementOut, status_code=201)
def propose(
    body: ProposeRequest,
    access: Authorized,
    session: Db,
    store: Facts,
    idempotency_key: IdempotencyKey = None,
) -> SettlementOut:
    """Propose the period-to-date settlement. Needs an ``Idempotency-Key``."""
    created = settlements.propose(
        session,
        store,
        agreement_code=body.agreement,
        beneficiary=body.beneficiary,
        period_start=body.period_start,
        idempotency_key=idempotency_key,
        actor=access.actor,
        now=company_now(),
    )
    return SettlementOut.model_validate(created)


@router.post("/settlements/{settlement_id}/approvals", response_model=SettlementOut)
def approve(
    settlement_id: Id,
    access: Authorized,
    session: Db,
    store: Facts,
    idempotency_key: IdempotencyKey = None,
) -> SettlementOut:
    """Approve one step. Needs an ``Idempotency-Key``."""
    visible_settlement(session, access, settlement_id)
    done = settlements.approve(
        session,
        store,
        settlement_id,
        idempotency_key=idempotency_key,
        actor=access.actor,
        now=company_now(),
    )
    return SettlementOut.model_validate(done)


@router.post("/settlements/{settlement_id}/rejection", response_model=SettlementOut)
def reject(
    settlement_id: Id, body: RejectRequest, access: Authorized, session: Db
) -> SettlementOut:
    visible_settlement(session, access, settlement_id)
    done = settlements.reject(
        session, settlement_id, reason=body.reason, actor=access.actor, now=company_now()
    )
    return SettlementOut.model_validate(done)


@router.post("/settlements/{settlement_id}/payout", response_model=PayoutOut, status_code=201)
def pay(  # noqa: PLR0917 - FastAPI maps parameters to path, body and dependencies
    settlement_id: Id,
    body: PayRequest,
    access: Authorized,
    session: Db,
    store: Facts,
    idempotency_key: IdempotencyKey = None,
) -> PayoutOut:
    """Pay an approved settlement in its agreement's form. Needs an ``Idempotency-Key``."""
    visible_settlement(session, access, settlement_id)
    payout = settlements.pay(
        session,
        store,
        settlement_id,
        idempotency_key=idempotency_key,
        document_number=body.document_number,
        original_invoices=body.original_invoices,
        bank_account_id=body.bank_account_id,
        actor=access.actor,
        now=company_now(),
    )
    return PayoutOut.model_validate(payout)


# ---- policy and audit -------------------------------------------------------------------------


@router.get("/policy", response_model=list[PolicyOut])
def policy(_access: Authorized, session: Db) -> list[PolicyOut]:
    return [PolicyOut.model_validate(version) for version in policy_versions(session)]


@router.get("/audit/events", response_model=Page[EventOut])
def audit_events(
    _access: Authorized,
    session: Db,
    offset: Offset = 0,
    limit: Limit = 100,
    type: Annotated[str | None, Query(max_length=100)] = None,
) -> Page[EventOut]:
    query = select(AuditEvent)
    if type is not None:
        query = query.where(AuditEvent.type == type)
    return paged(session, query, AuditEvent.seq, offset, limit, shape=EventOut)
