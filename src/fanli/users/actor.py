"""The actor of a service call: a user's code, roles and approval limit, as a frozen value."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from fanli.kit.errors import FanliError, Said, said


class Role(StrEnum):
    SALES = "sales"
    FINANCE = "finance"
    APPROVER = "approver"
    COMPLIANCE = "compliance"
    INTERNAL_AUDITOR = "internal_auditor"
    EXTERNAL_AUDITOR = "external_auditor"
    CUSTOMER = "customer"
    ADMINISTRATOR = "administrator"


class PermissionDeniedError(FanliError):
    code = "forbidden"


@dataclass(frozen=True)
class Actor:
    id: int
    code: str
    roles: frozenset[Role]
    approval_limit: Decimal | None = None
    customer_code: str | None = None

    def has(self, role: Role) -> bool:
        return role in self.roles


def require(actor: Actor, *roles: Role, to: str | Said) -> None:
    """Refuse unless ``actor`` holds one of ``roles``; ``to`` says what they tried to do (said,
    so a page says it in the reader's language; a plain phrase is looked up as it is)."""
    if not any(actor.has(role) for role in roles):
        raise denied(actor, roles, to=to)


def denied(actor: Actor, roles: Iterable[Role], *, to: str | Said) -> PermissionDeniedError:
    """The refusal of an actor who holds none of ``roles``: "sam may not create users: it needs
    the role administrator"."""
    return PermissionDeniedError.said(
        "{user} may not {to}: it needs the role {needed}",
        user=actor.code,
        to=to if isinstance(to, Said) else Said(to),
        needed=either(list(roles)),
    )


def either(roles: list[Role]) -> Role | Said:
    """Roles as English joins them, "finance or sales", each a code a page names in its
    language."""
    first, *rest = roles
    return said("{one} or {other}", one=first, other=either(rest)) if rest else first


def said_steps(missing: Iterable[str]) -> tuple[Said, ...]:
    """Open approval steps (``open_steps``: "approver x1") as names a page says in its
    language; English joins them as ``open_steps`` wrote them."""
    steps = []
    for step in missing:
        role, count = step.rsplit(" x", 1)
        steps.append(said("{role} x{count}", role=Role(role), count=int(count)))
    return tuple(steps)


def open_steps(steps: Iterable[Mapping[str, Any]], roles_given: Iterable[str]) -> list[str]:
    """The approval steps ([{role, count}]) the given approvals (their roles) leave unfilled,
    as "role xN"."""
    given = list(roles_given)
    missing = []
    for step in steps:
        have = given.count(step["role"])
        if have < step["count"]:
            missing.append(f"{step['role']} x{step['count'] - have}")
    return missing
