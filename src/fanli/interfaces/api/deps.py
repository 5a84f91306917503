"""What every route depends on: one unit of work, the fact store, the caller, the matrix.

- ``db``: one transaction per request, committed when the route returns, rolled back if it
  raises (so a refused request leaves nothing behind).
- ``caller``: the signed-in user, from ``Authorization: Bearer <token>`` (an API token) or the
  session cookie. A state-changing request with the cookie must echo the session's CSRF token
  in ``X-CSRF-Token``: another site can make the browser send the cookie, not read the token.
- ``authorized``: the route's entry in ``authorization.yaml`` decides, deny by default; the
  scope it grants (all, assigned, own) comes back for the route's object-level checks.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Annotated, Any, TypeVar

import yaml
from fastapi import Depends, Header, Path, Query, Request
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from fanli.customers.queries import assigned_codes
from fanli.db.session import unit_of_work
from fanli.kit.errors import NotFoundError
from fanli.sales.store import FactStore
from fanli.settlements.models import Settlement
from fanli.users.actor import Actor, PermissionDeniedError
from fanli.users.auth import (
    Authenticated,
    AuthError,
    check_session,
    refusal,
    settle_session,
    token_actor,
)

Q = TypeVar("Q", bound=Select)  # type: ignore[type-arg]  # any select, of any row shape
SESSION_COOKIE = "fanli_session"
# Ids in paths: database integers (an id beyond them is simply not found, never a crash).
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
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


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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


def caller(request: Request) -> Authenticated:
    """Who calls. Checked in its own short transactions, before the request's own one begins:
    a read, and a write only when a session ends or its activity is a minute old."""
    found = credential(request)
    if found is None:
        raise AuthError("sign in first (session cookie or Authorization: Bearer token)")
    kind, value = found
    now = now_utc()
    with unit_of_work(request.app.state.read_sessions) as session:
        if kind == "token":
            return token_actor(session, value, now=now)
        check = check_session(session, value, now=now)
    if check.end_reason or check.touch:
        with unit_of_work(request.app.state.sessions) as session:
            settle_session(session, check, now=now)
    if check.who is None:
        raise AuthError(refusal(check))
    who = check.who
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not who.csrf_token or not hmac.compare_digest(sent, who.csrf_token):
            raise PermissionDeniedError(f"a state-changing request needs the {CSRF_HEADER} header")
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


def authorized(request: Request) -> Access:
    """The caller, and the scope the matrix grants them on this route (one dependency, so one
    trip to the worker threads)."""
    who = caller(request)
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


def visible_settlement(session: Session, access: Access, settlement_id: int) -> Settlement:
    """A settlement the caller may see; another customer's answers as a missing one."""
    found = session.get(Settlement, settlement_id)
    if found is None:
        raise NotFoundError(f"there is no settlement {settlement_id}")
    check_customer(session, access, found.beneficiary, f"settlement {settlement_id}")
    return found
