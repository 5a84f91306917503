"""Reading users: the actor of a call, and whom an approver may act for on a day."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.kit.errors import FanliError
from fanli.users.actor import Actor, PermissionDeniedError, Role
from fanli.users.models import Delegation, User


class UnknownUserError(FanliError):
    code = "unknown_user"


def user_by_code(session: Session, code: str) -> User:
    user = session.scalar(select(User).where(User.code == code))
    if user is None:
        raise UnknownUserError.said("there is no user {user}", user=code)
    return user


def as_actor(user: User) -> Actor:
    return Actor(
        id=user.id,
        code=user.code,
        roles=frozenset(Role(role) for role in user.roles),
        approval_limit=user.approval_limit,
        customer_code=user.customer_code,
    )


def actor(session: Session, code: str) -> Actor:
    """The active user ``code`` as the actor of a call."""
    user = user_by_code(session, code)
    if not user.active:
        raise PermissionDeniedError.said("user {user} is disabled", user=code)
    return as_actor(user)


def principals(session: Session, approver: Actor, day: dt.date) -> list[tuple[Actor, int | None]]:
    """Whom ``approver`` can approve as on ``day``: themself, then every active user who has
    delegated to them for that day, each with the delegation's id."""
    found: list[tuple[Actor, int | None]] = [(approver, None)]
    rows = session.execute(
        select(User, Delegation.id)
        .join(Delegation, Delegation.delegator_id == User.id)
        .where(
            Delegation.delegate_id == approver.id,
            Delegation.valid_from <= day,
            Delegation.valid_to > day,
            Delegation.revoked_at.is_(None),
            User.active.is_(True),
        )
        .order_by(Delegation.id)
    ).all()
    found.extend((as_actor(user), grant_id) for user, grant_id in rows)
    return found


def users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.code)))
