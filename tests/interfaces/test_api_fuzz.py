"""Schemathesis against the published OpenAPI document, as every role: no 5xx, and every
response conforms to the document (status, content type, body schema)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fanli.db.session import unit_of_work
from fanli.users.actor import Role
from fanli.users.auth import create_token
from fanli.users.queries import actor
from interfaces.test_api import Api, api
from interfaces.test_api_matrix import USERS

__all__ = ["api"]

EXAMPLES = 6  # per operation and role; HYPOTHESIS_PROFILE=thorough does not change it
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def tokens(api: Api) -> dict[Role, str]:
    made = {}
    with unit_of_work(api.sessions) as session:
        for role, code in USERS.items():
            # Made now, not at the fixed test time: the API checks a token against the real
            # clock, so one made at NOW would stop working a day after NOW.
            token, _row = create_token(
                session,
                name="fuzz",
                roles=[role],
                days=1,
                actor=actor(session, code),
                now=dt.datetime.now(dt.UTC),
            )
            made[role] = token
    # Every token signs in: with a dead one, each case would meet only 401s and pass unseen.
    for role, token in made.items():
        me = api.client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, (role, me.text)
        assert me.json()["roles"] == [role.value]
    return made


def test_every_role_gets_no_server_error_and_documented_answers(
    api: Api, tokens: dict[Role, str]
) -> None:
    """Each operation of the document, generated cases, sent as each role in turn."""
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", api.client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(api.client.get("/api/openapi.json").json()["paths"]) or (
        len(operations) > 40
    )
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            for role, token in tokens.items():
                case.call_and_validate(
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Idempotency-Key": f"fuzz-{role}",
                    },
                    checks=CHECKS,
                )

        fuzz()
