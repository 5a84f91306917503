"""What every route depends on: one unit of work, the fact store, the caller, the matrix.

- ``db``: one transaction per request, committed when the route returns, rolled back if it
  raises (so a refused request leaves nothing behind).
- ``caller``: the signed-in user, from ``Authorization: Bearer <token>`` (an API token) or the
  session cookie. A state-changing request with the cookie must echo the session's CSRF token
  in ``X-CSRF-Token``: another site can make the browser send the cookie, not read the token.
- ``authorized``: the route's entry in ``authorization.yaml`` decides, deny by default; the
  scope it grants (all, assigned, own) comes back for the route's object-level checks.
- ``cached_json``: the body of a hot read, kept while the store has not changed (ADR 0007).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Annotated, Any, TypeVar

import yaml
from fastapi import Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from fanli.audit.queries import store_version
from fanli.config import company_now
from fanli.customers.queries import assigned_codes
from fanli.db.session import unit_of_work
from fanli.kit.errors import NotFoundError
from fanli.sales.store import FactStore
from fanli.settlements.models import Settlement
from fanli.users.actor import Actor, PermissionDeniedError
from fanli.users.auth import (
    Authenticated,
    AuthError,
    PasswordChangeRequiredError,
    check_session,
    digest,
    refusal,
    settle_session,
    token_actor,
)

from .cache import VersionedCache
from .schemas import Page

Q = TypeVar("Q", bound=Select)  # type: ignore[type-arg]  # any select, of any row shape
SESSION_COOKIE = "fanli_session"
# Ids in paths: database integers (an id beyond them is simply not found, never a crash).
MAX_ID = 2**31 - 1  # ids and numbers in an address: what every database's integer holds
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Limit = Annotated[int, Query(ge=1, le=500)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=128,
        description="Required where money moves: a retry with the same key and body returns "
        "the first response.",
    ),
]
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def db(request: Request) -> Iterator[Session]:
    # A request that only reads runs in a read transaction: on SQLite it takes no lock, so
    # readers never queue behind each other or a writer; on PostgreSQL it is READ ONLY.
    factory = (
        request.app.state.read_sessions
        if request.method in SAFE_METHODS
        else request.app.state.sessions
    )
    with unit_of_work(factory) as session:
        yield session


async def facts(request: Request) -> FactStore:
    store: FactStore = request.app.state.facts
    return store


# "function" scope: the transaction commits before the response is sent, so a client never
# sees a success that did not commit.
Db = Annotated[Session, Depends(db, scope="function")]
Facts = Annotated[FactStore, Depends(facts)]


def credential(request: Request) -> tuple[str, str] | None:
    """("token", value) or ("cookie", value) from the request, if any."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return "token", header[7:].strip()
    cookie = request.cookies.get(SESSION_COOKIE)
    return ("cookie", cookie) if cookie else None


def caller(request: Request, session: Session) -> Authenticated:
    """Who calls, read in ``session`` (a read transaction). A session cookie may also need a
    write of its own: when the session ends or its activity is a minute old."""
    found = credential(request)
    if found is None:
        raise AuthError("sign in first (session cookie or Authorization: Bearer token)")
    kind, value = found
    now = company_now()
    if kind == "token":
        return token_caller(request.app.state.token_cache, session, value, now)
    check = check_session(session, value, now=now)
    if check.end_reason or check.touch:
        with unit_of_work(request.app.state.sessions) as writing:
            settle_session(writing, check, now=now)
    if check.who is None:
        raise AuthError(refusal(check))
    who = check.who
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not who.csrf_token or not hmac.compare_digest(sent, who.csrf_token):
            raise PermissionDeniedError(f"a state-changing request needs the {CSRF_HEADER} header")
    return who


def version_of(session: Session) -> int:
    """The store version a read transaction sees: read once, since its snapshot cannot change
    (the session lives for one transaction)."""
    version: int | None = session.info.get("store_version")
    if version is None:
        version = session.info["store_version"] = store_version(session)
    return version


def token_caller(
    tokens: VersionedCache[Authenticated], session: Session, token: str, now: dt.datetime
) -> Authenticated:
    """The user of an API token, looked up once per store version: a revocation, a disabled
    user or changed roles each write an audit event, so they count from the next request."""
    version = version_of(session)
    key = digest(token)
    known = tokens.get(key, version)
    if known is not None and known.expires_at is not None and now < known.expires_at:
        return known
    who = token_actor(session, token, now=now)
    tokens.put(key, version, who)
    return who


@cache
def matrix() -> dict[str, Any]:
    text = files("fanli.interfaces.api").joinpath("authorization.yaml").read_text("utf-8")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def route_id(request: Request) -> str:
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    return f"{request.method} {path}"


# What a session may call before its user has changed a handed-over password.
WHILE_PASSWORD_CHANGES = frozenset(
    {"GET /api/me", "POST /api/users/{code}/password", "DELETE /api/session"}
)


@dataclass(frozen=True)
class Access:
    actor: Actor
    scope: str  # all, assigned, own (signed_in routes: all)
    who: Authenticated


def scope_for(entry: Any, actor: Actor) -> str | None:
    """The widest scope ``entry`` grants any of ``actor``'s roles, or None."""
    if entry == "signed_in":
        return "all"
    if not isinstance(entry, dict):
        return None
    for scope in ("all", "assigned", "own"):
        if any(role.value in entry.get(scope, []) for role in actor.roles):
            return scope
    return None


def authorized(request: Request, session: Db) -> Access:
    """The caller, and the scope the matrix grants them on this route (one dependency, so one
    trip to the worker threads).

    A read request checks its caller in its own read transaction, the one its route then uses:
    one snapshot and one transaction per read. Any other request checks its caller in a short
    read transaction first, so a caller who is refused never opens (on SQLite: never locks) the
    write transaction."""
    if request.method in SAFE_METHODS:
        who = caller(request, session)
    else:
        with unit_of_work(request.app.state.read_sessions) as reading:
            who = caller(request, reading)
    if who.password_change_required and route_id(request) not in WHILE_PASSWORD_CHANGES:
        raise PasswordChangeRequiredError.said(
            "{user} must first change the password an administrator set",
            user=who.actor.code,
        )
    scope = scope_for(matrix().get(route_id(request)), who.actor)
    if scope is None:
        raise PermissionDeniedError(f"{who.actor.code} may not call {route_id(request)}")
    return Access(who.actor, scope, who)


Authorized = Annotated[Access, Depends(authorized)]


def visible_customers(session: Session, access: Access) -> set[str] | None:
    """The customer codes ``access`` may see (None: all of them)."""
    if access.scope == "all":
        return None
    if access.scope == "own":
        return {access.actor.customer_code} if access.actor.customer_code else set()
    return assigned_codes(session, access.actor.code)


def check_customer(session: Session, access: Access, code: str, what: str) -> None:
    """Another customer's object answers exactly as a missing one does."""
    visible = visible_customers(session, access)
    if visible is not None and code not in visible:
        raise NotFoundError(f"there is no {what}")


def window(session: Session, query: Q, order: Any, offset: int, limit: int) -> tuple[Q, int]:
    """A list page: the query narrowed to ``[offset, offset + limit)`` in ``order``, and how
    many rows match in all."""
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    return query.order_by(order).offset(offset).limit(limit), total


M = TypeVar("M", bound=BaseModel)


def paged(
    session: Session, query: Q, order: Any, offset: int, limit: int, *, shape: type[M]
) -> Page[M]:
    """A list page of ORM objects as ``shape``: the window, its rows, and how many match."""
    rows, total = window(session, query, order, offset, limit)
    return Page[shape](  # type: ignore[valid-type]
        items=[shape.model_validate(row) for row in session.scalars(rows).all()],
        total=total,
        offset=offset,
        limit=limit,
    )


def visible_settlement(session: Session, access: Access, settlement_id: int) -> Settlement:
    """A settlement the caller may see; another customer's answers as a missing one."""
    found = session.get(Settlement, settlement_id)
    if found is None:
        raise NotFoundError(f"there is no settlement {settlement_id}")
    check_customer(session, access, found.beneficiary, f"settlement {settlement_id}")
    return found


def cached_json(
    request: Request, session: Session, key: Hashable, compute: Callable[[], BaseModel]
) -> Response:
    """The JSON body ``compute`` makes, computed once per store version for ``key``.

    ``key`` must name everything the body depends on besides the store: the path's ids, the
    query, what the caller may see, the day. The body carries an ``ETag``; a client that sends
    it back in ``If-None-Match`` while nothing has changed gets ``304 Not Modified``."""
    if request.method not in SAFE_METHODS:
        raise TypeError("only a read transaction has one store version throughout")
    bodies: VersionedCache[tuple[bytes, str]] = request.app.state.read_cache
    version = version_of(session)
    found = bodies.get(key, version)
    if found is None:
        body = compute().model_dump_json(by_alias=True).encode("utf-8")
        found = (body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
        bodies.put(key, version, found)
    body, etag = found
    # Private (another caller may see another body) and revalidated on every use.
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    sent = request.headers.get("if-none-match", "")
    if etag in (tag.strip() for tag in sent.split(",")):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified: the body named by `If-None-Match` is still current."}
}
