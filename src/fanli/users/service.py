"""Creating and disabling users, granting and revoking delegations. Each writes an audit event."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from decimal import Decimal

from sqlalchemy import column, func, select, table, update
from sqlalchemy.orm import Session

from fanli.audit.service import record
from fanli.db.session import Lock, serialize
from fanli.kit.errors import FanliError, said
from fanli.kit.money import MAX_AMOUNT, decimal_places, minor_unit
from fanli.users.actor import Actor, PermissionDeniedError, Role, require
from fanli.users.models import Delegation, User, WebSession
from fanli.users.queries import user_by_code

USER_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
BOOTSTRAP = "system"  # the actor recorded for the very first administrator

# Places an approval limit may have: those of the default currency's fen.
LIMIT_PLACES = minor_unit("CNY")


class UserError(FanliError):
    code = "user_error"


def create_user(
    session: Session,
    code: str,
    *,
    name: str,
    roles: Iterable[Role],
    approval_limit: Decimal | None = None,
    customer_code: str | None = None,
    actor: Actor | None,
    now: dt.datetime,
) -> User:
    """A new user. An administrator creates users; with no users yet, the first one is created
    without an actor and must be an administrator."""
    chosen = sorted({Role(role) for role in roles})
    if actor is None:
        if session.scalar(select(func.count()).select_from(User)):
            raise UserError.said("users exist already: name an administrator with --as")
        if Role.ADMINISTRATOR not in chosen:
            raise UserError.said("the first user must hold the administrator role")
    else:
        require(actor, Role.ADMINISTRATOR, to=said("create users"))
    if not code.strip() or not name.strip():
        raise UserError.said("a user needs a code and a name")
    if not USER_CODE.fullmatch(code):
        # It is typed at sign-in, named in audit events and in addresses: no spaces or marks.
        raise UserError.said(
            "user code {user} may hold only letters, digits, '.', '_' and '-'", user=repr(code)
        )
    if not chosen:
        raise UserError.said("user {user} needs at least one role", user=code)
    if session.scalar(select(User.id).where(User.code == code)) is not None:
        raise UserError.said("user {user} exists already", user=code)
    if approval_limit is not None and not 0 <= approval_limit < MAX_AMOUNT:
        raise UserError.said("an approval limit lies between 0 and {limit}", limit=MAX_AMOUNT)
    if approval_limit is not None and decimal_places(approval_limit) > LIMIT_PLACES:
        # a settlement is paid in whole fen, so a limit in fractions of one means nothing
        raise UserError.said(
            "an approval limit has at most {places} decimal places, not {limit}",
            places=LIMIT_PLACES,
            limit=approval_limit,
        )
    if Role.CUSTOMER in chosen:
        if not customer_code:
            raise UserError.said("customer user {user} must name its customer", user=code)
        if len(chosen) > 1:
            # A customer's own staff must never hold a role inside the company.
            raise UserError.said("customer user {user} cannot hold staff roles", user=code)
        # The customer table by name: users sit below customers in the layers (no import).
        customers = table("customer", column("code"))
        if (
            session.scalar(select(customers.c.code).where(customers.c.code == customer_code))
            is None
        ):
            raise UserError.said(
                "there is no customer {customer} for customer user {user}",
                customer=customer_code,
                user=code,
            )
    elif customer_code:
        raise UserError.said("only customer users name a customer; {user} is staff", user=code)
    user = User(
        code=code,
        name=name,
        roles=[role.value for role in chosen],
        approval_limit=approval_limit,
        customer_code=customer_code,
        active=True,
        created_at=now,
    )
    session.add(user)
    session.flush()
    record(
        session,
        type="user.created",
        actor=actor.code if actor else BOOTSTRAP,
        entity_type="user",
        entity_id=code,
        inputs={"name": name, "roles": user.roles, "approval_limit": approval_limit},
        outcome={"id": user.id, "active": True},
        now=now,
    )
    return user


def disable_user(
    session: Session, code: str, *, reason: str, actor: Actor, now: dt.datetime
) -> User:
    require(actor, Role.ADMINISTRATOR, to=said("disable users"))
    user = user_by_code(session, code)
    # Locked and read fresh: a second disabling waits for the first, then finds it done.
    session.refresh(user, with_for_update=True)
    if not user.active:
        raise UserError.said("user {user} is disabled already", user=code)
    if not reason.strip():
        raise UserError.said("disabling a user needs a reason")
    if code == actor.code:
        raise UserError.said("{user} cannot disable their own account", user=code)
    if Role.ADMINISTRATOR in user.roles:
        # Without an active administrator nobody could create, enable or repair users again.
        # Two administrators disabling each other at once queue here (PostgreSQL; SQLite's
        # writers always do), so one of them stays.
        serialize(session, Lock.ADMINISTRATORS)
        others = [
            other
            for other in session.scalars(select(User).where(User.active, User.id != user.id))
            if Role.ADMINISTRATOR in other.roles
        ]
        if not others:
            raise UserError.said("{user} is the last active administrator", user=code)
    user.active = False
    # Their sessions end now, not at their next request.
    session.execute(
        update(WebSession)
        .where(WebSession.user_id == user.id, WebSession.ended_at.is_(None))
        .values(ended_at=now, end_reason="disabled")
    )
    session.flush()
    record(
        session,
        type="user.disabled",
        actor=actor.code,
        entity_type="user",
        entity_id=code,
        inputs={"reason": reason},
        outcome={"active": False},
        now=now,
    )
    return user


def delegate(
    session: Session,
    *,
    delegator: str,
    delegate_to: str,
    valid_from: dt.date,
    valid_to: dt.date,
    reason: str,
    actor: Actor,
    now: dt.datetime,
) -> Delegation:
    """Let ``delegate_to`` approve for ``delegator`` on days in ``[valid_from, valid_to)``.
    The delegator grants it, or an administrator does."""
    if actor.code != delegator:
        require(actor, Role.ADMINISTRATOR, to=said("grant a delegation for {user}", user=delegator))
        if actor.code == delegate_to:
            # Nobody takes someone else's authority for themself.
            raise PermissionDeniedError.said(
                "{user} cannot grant themself {delegator}'s authority; {delegator} grants it, "
                "or another administrator does",
                user=actor.code,
                delegator=delegator,
            )
    source = user_by_code(session, delegator)
    target = user_by_code(session, delegate_to)
    if source.id == target.id:
        raise UserError.said("a user cannot delegate to themself")
    if not target.active:
        raise UserError.said("user {user} is disabled", user=delegate_to)
    if Role.CUSTOMER in target.roles:
        raise UserError.said("a customer user cannot approve for staff")
    if valid_from >= valid_to:
        raise UserError.said(
            "a delegation must end after it starts ({start} to {end})",
            start=valid_from,
            end=valid_to,
        )
    if not reason.strip():
        raise UserError.said("a delegation needs a reason")
    grant = Delegation(
        delegator_id=source.id,
        delegate_id=target.id,
        valid_from=valid_from,
        valid_to=valid_to,
        reason=reason,
        created_by=actor.code,
        created_at=now,
    )
    session.add(grant)
    session.flush()
    record(
        session,
        type="user.delegation.granted",
        actor=actor.code,
        entity_type="delegation",
        entity_id=grant.id,
        inputs={
            "delegator": delegator,
            "delegate": delegate_to,
            "valid_from": valid_from,
            "valid_to": valid_to,
            "reason": reason,
        },
        outcome={"id": grant.id},
        now=now,
    )
    return grant


def revoke_delegation(
    session: Session, delegation_id: int, *, actor: Actor, now: dt.datetime
) -> Delegation:
    # Locked and read fresh: a second revocation waits for the first, then finds it done.
    grant = session.get(Delegation, delegation_id, with_for_update=True, populate_existing=True)
    if grant is None:
        raise UserError.said("there is no delegation {delegation}", delegation=delegation_id)
    delegator = session.get(User, grant.delegator_id)
    assert delegator is not None
    if actor.code != delegator.code:
        require(
            actor,
            Role.ADMINISTRATOR,
            to=said("revoke a delegation of {user}", user=delegator.code),
        )
    if grant.revoked_at is not None:
        raise UserError.said("delegation {delegation} is revoked already", delegation=delegation_id)
    grant.revoked_at = now
    session.flush()
    record(
        session,
        type="user.delegation.revoked",
        actor=actor.code,
        entity_type="delegation",
        entity_id=grant.id,
        inputs={},
        outcome={"revoked_at": now},
        now=now,
    )
    return grant
