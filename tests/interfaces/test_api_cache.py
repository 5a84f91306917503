"""The API's caches (ADR 0007): a body or a token's user is reused only while the store has not
changed, a change shows on the next request, bodies differ by what the caller may see, and a
read runs in one transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from fanli.db.session import unit_of_work
from fanli.interfaces.api.cache import VersionedCache
from fanli.users.service import disable_user
from interfaces.test_api import Api, api
from store.conftest import NOW

__all__ = ["api"]  # the fixture, shared with the other API tests


def _bearer(api: Api, user: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.token(user, [role])}"}


def test_a_kept_statement_gives_way_to_the_next_change(api: Api) -> None:
    c1 = _bearer(api, "c1", "customer")
    fay = _bearer(api, "fay", "finance")
    first = api.client.get("/api/customers/C1/statement", headers=c1)
    assert first.status_code == 200
    assert first.json()["settlements"] == []
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "private, no-cache"
    # Nothing changed: the same body, and a client that has it gets 304 without one.
    assert api.client.get("/api/customers/C1/statement", headers=c1).content == first.content
    unchanged = api.client.get("/api/customers/C1/statement", headers={**c1, "If-None-Match": etag})
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    # A settlement proposed for C1 shows on the very next read, whatever the client holds.
    proposed = api.client.post(
        "/api/settlements",
        json={"agreement": "A1", "beneficiary": "C1", "period_start": "2026-01-01"},
        headers={**fay, "Idempotency-Key": "k1"},
    )
    assert proposed.status_code == 201, proposed.text
    changed = api.client.get("/api/customers/C1/statement", headers={**c1, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert [(s["amount"], s["status"]) for s in changed.json()["settlements"]] == [
        ("200.00", "proposed")
    ]


def test_a_kept_settlement_page_is_only_what_the_caller_may_see(api: Api) -> None:
    fay = _bearer(api, "fay", "finance")
    c1 = _bearer(api, "c1", "customer")
    for beneficiary, key in (("C1", "k1"), ("C2", "k2")):
        made = api.client.post(
            "/api/settlements",
            json={"agreement": "A1", "beneficiary": beneficiary, "period_start": "2026-01-01"},
            headers={**fay, "Idempotency-Key": key},
        )
        assert made.status_code == 201, made.text
    # The same URL at the same store version: finance sees both, C1's user only its own.
    for _ in range(2):
        everything = api.client.get("/api/settlements", headers=fay).json()
        own = api.client.get("/api/settlements", headers=c1).json()
        assert [(s["beneficiary"], s["amount"]) for s in everything["items"]] == [
            ("C2", "10.00"),  # newest first
            ("C1", "200.00"),
        ]
        assert [(s["beneficiary"], s["amount"]) for s in own["items"]] == [("C1", "200.00")]
        assert (everything["total"], own["total"]) == (2, 1)


def test_a_known_token_stops_working_when_its_user_is_disabled(api: Api) -> None:
    fay = _bearer(api, "fay", "finance")
    assert api.client.get("/api/me", headers=fay).status_code == 200  # now known
    with unit_of_work(api.sessions) as session:
        disable_user(session, "fay", reason="left", actor=api.who["admin"], now=NOW)
    refused = api.client.get("/api/me", headers=fay)
    assert (refused.status_code, refused.json()["error"]) == (401, "unauthenticated")


def test_a_read_is_one_transaction(api: Api) -> None:
    c1 = _bearer(api, "c1", "customer")
    engine = api.client.app.state.engine  # type: ignore[attr-defined]
    begun: list[Any] = []

    def count(connection: Any) -> None:
        begun.append(connection)

    event.listen(engine, "begin", count)
    try:
        assert api.client.get("/api/customers/C1/statement", headers=c1).status_code == 200
        assert len(begun) == 1  # the caller and the statement, from one snapshot
        begun.clear()
        api.client.get("/api/customers/C1/statement", headers=c1)  # kept: still one
        assert len(begun) == 1
    finally:
        event.remove(engine, "begin", count)


def test_a_value_is_found_only_under_its_version() -> None:
    kept: VersionedCache[str] = VersionedCache(2)
    kept.put("a", 7, "seven")
    assert kept.get("a", 7) == "seven"
    assert kept.get("a", 8) is None  # the store moved on: a miss, never the old value
    kept.put("b", 7, "b")
    kept.get("a", 7)  # "a" is now the most recently used
    kept.put("c", 7, "c")
    assert (kept.get("a", 7), kept.get("b", 7), kept.get("c", 7)) == ("seven", None, "c")
    assert len(kept) == 2
    off: VersionedCache[str] = VersionedCache(0)
    off.put("a", 1, "x")
    assert off.get("a", 1) is None
