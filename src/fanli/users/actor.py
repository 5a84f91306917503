"""The actor of a service call: a user's code, roles and approval limit, as a frozen value."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from fanli.kit.errors import FanliError


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


def require(actor: Actor, *roles: Role, to: str) -> None:
    """Refuse unless ``actor`` holds one of ``roles``; ``to`` says what they tried to do."""
    if not any(actor.has(role) for role in roles):
        needed = " or ".join(role.value for role in roles)
        raise PermissionDeniedError(f"{actor.code} may not {to}: it needs the role {needed}")


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
