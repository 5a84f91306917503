"""Every route x every role x own/other object against ``authorization.yaml``.

A route missing from the matrix fails here. A role the matrix does not list gets the matrix's
403; a listed role never does. Where the matrix narrows a role to its own or assigned
customers, their objects answer and another customer's answer 404, exactly as a missing one.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from fanli.customers.service import assign
from fanli.db.session import unit_of_work
from fanli.interfaces.api.deps import matrix, scope_for
from fanli.settlements import service as settlements
from fanli.settlements.models import StatementDecision
from fanli.settlements.statements import respond
from fanli.users.actor import Actor, Role
from fanli.users.auth import create_token
from fanli.users.queries import actor
from interfaces.test_api import Api, api
from store.conftest import NOW

__all__ = ["api"]

# One user per role (c1 is C1's buyer; sam is assigned C1).
USERS = {
    Role.SALES: "sam",
    Role.FINANCE: "fred",
    Role.APPROVER: "abe",
    Role.COMPLIANCE: "cora",
    Role.INTERNAL_AUDITOR: "ivan",
    Role.EXTERNAL_AUDITOR: "eve",
    Role.CUSTOMER: "c1",
    Role.ADMINISTRATOR: "admin",
}
BODIES: dict[str, dict[str, Any]] = {
    "POST /api/session": {"user": "x", "password": "y"},
    "POST /api/tokens": {"name": "t", "roles": ["sales"], "days": 1},
    "POST /api/settlements": {"agreement": "A1", "beneficiary": "C1", "period_start": "2026-01-01"},
    "POST /api/settlements/{settlement_id}/rejection": {"reason": "no"},
    "POST /api/settlements/{settlement_id}/payout": {"document_number": "CN-1"},
    "POST /api/audit/runs": {"period": "2026-03"},
    "POST /api/audit/findings/{finding_id}/assignment": {"owner": "fay"},
    "POST /api/audit/findings/{finding_id}/resolution": {"reason": "done"},
    "POST /api/audit/findings/{finding_id}/dismissal": {"reason": "fine"},
    "POST /api/customers/{code}/statements/{start}/answer": {
        "decision": "disputed",
        "comment": "x",
    },
    "POST /api/disputes/{response_id}/answer": {"outcome": "upheld", "comment": "as invoiced"},
}


def _routes(api: Api) -> list[str]:
    """Every operation the published OpenAPI document lists."""
    paths = api.client.get("/api/openapi.json").json()["paths"]
    return sorted(f"{method.upper()} {path}" for path, item in paths.items() for method in item)


def test_every_route_is_in_the_matrix(api: Api) -> None:
    assert _routes(api) == sorted(matrix())


def _tokens(api: Api) -> dict[Role, str]:
    tokens = {}
    with unit_of_work(api.sessions) as session:
        assign(session, "C1", "sam", actor=api.who["admin"], now=NOW)
        for role, code in USERS.items():
            holder = actor(session, code)
            assert role in holder.roles
            # Made now, not at the fixed test time: the API checks a token against the real
            # clock, so one made at NOW would stop working a day after NOW.
            token, _row = create_token(
                session,
                name="matrix",
                roles=[role],
                days=1,
                actor=holder,
                now=dt.datetime.now(dt.UTC),
            )
            tokens[role] = token
    return tokens


def _settlements(api: Api) -> dict[str, int]:
    """A proposed settlement for C1 (own) and one for C2 (other)."""
    ids = {}
    with unit_of_work(api.sessions) as session:
        for which, beneficiary in (("own", "C1"), ("other", "C2")):
            ids[which] = settlements.propose(
                session,
                api.client.app.state.facts,  # type: ignore[attr-defined]
                agreement_code="A1",
                beneficiary=beneficiary,
                period_start=NOW.date().replace(month=1, day=1),
                idempotency_key=f"matrix-{which}",
                actor=api.who["fay"],
                now=NOW,
            ).id
    return ids


def _disputes(api: Api) -> dict[str, int]:
    """A dispute of C1's Q1 statement (own) and one of C2's (other)."""
    ids = {}
    with unit_of_work(api.sessions) as session:
        for which, customer in (("own", "C1"), ("other", "C2")):
            buyer = Actor(id=0, code="b", roles=frozenset({Role.CUSTOMER}), customer_code=customer)
            ids[which] = respond(
                session,
                api.client.app.state.facts,  # type: ignore[attr-defined]
                customer,
                NOW.date().replace(month=1, day=1),
                decision=StatementDecision.DISPUTED,
                comment="not what we count",
                actor=buyer,
                now=NOW,
            ).id
    return ids


def _path(template: str, which: str, ids: dict[str, int], disputes: dict[str, int]) -> str:
    return (
        template.replace("{code}", "C1" if which == "own" else "C2")
        .replace("{settlement_id}", str(ids[which]))
        .replace("{response_id}", str(disputes[which]))
        .replace("{start}", "2026-01-01")
        .replace("{token_id}", "999")
        .replace("{kind}", "sales")
        .replace("{batch_id}", "999")
        .replace("{account_id}", "999")
        .replace("{use_id}", "999")
        .replace("{delegation_id}", "999")
        .replace("{finding_id}", "999")
    )


def test_every_route_for_every_role(api: Api) -> None:
    tokens = _tokens(api)
    ids = _settlements(api)
    disputes = _disputes(api)
    checked = 0
    for route, entry in sorted(matrix().items()):
        method, template = route.split(" ", 1)
        has_object = any(key in template for key in ("{code}", "{settlement_id}", "{response_id}"))
        for role, token in tokens.items():
            scope = "all" if entry in ("public", "signed_in") else scope_for(entry, _only(role))
            for which in ("own", "other") if has_object else ("own",):
                response = api.client.request(
                    method,
                    _path(template, which, ids, disputes),
                    json=BODIES.get(route),
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Idempotency-Key": f"{role}-{which}-{checked}",
                    },
                )
                checked += 1
                where = (route, role.value, which, response.status_code, response.text[:200])
                body = response.json() if response.content else {}
                denied_by_matrix = response.status_code == 403 and "may not call" in str(
                    body.get("detail", "")
                )
                if scope is None:
                    assert denied_by_matrix, where
                    continue
                assert not denied_by_matrix, where
                assert response.status_code < 500, where
                if has_object and which == "other" and scope in ("own", "assigned"):
                    assert response.status_code == 404, where
                    assert re.fullmatch(
                        r"there is no (customer|settlement|dispute) \w+", body["detail"]
                    )
    assert checked > 100


def _only(role: Role) -> Actor:
    return Actor(id=0, code="probe", roles=frozenset({role}))


@pytest.mark.parametrize("role", [Role.INTERNAL_AUDITOR, Role.EXTERNAL_AUDITOR])
def test_auditors_change_nothing(role: Role) -> None:
    """No state-changing route lists an external auditor; an internal auditor only those of its
    own work (audit runs and findings)."""
    changing = 0
    for route, entry in matrix().items():
        if route.startswith("GET ") or entry in ("public", "signed_in") or entry.get("read"):
            continue
        changing += 1
        if role is Role.INTERNAL_AUDITOR and entry.get("audit_work"):
            assert route.startswith("POST /api/audit/"), route
            continue
        assert scope_for(entry, _only(role)) is None, route
    assert changing >= 30  # the check saw the state-changing routes
