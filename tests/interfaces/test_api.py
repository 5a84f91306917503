"""The HTTP API over a real SQLite store: sign-in (password, second factor, throttling, sessions,
CSRF), API tokens, the error shape, money as strings, object-level 404s, and Idempotency-Key."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import text, update

from fanli.agreements.service import add_version
from fanli.config import Settings
from fanli.db.migrate import upgrade
from fanli.db.session import make_engine, session_factory, unit_of_work
from fanli.interfaces.api.app import create_app
from fanli.interfaces.api.models import HttpIdempotency
from fanli.ledger.service import accrue
from fanli.sales.service import import_customers, import_products, import_sales
from fanli.sales.store import FactStore
from fanli.users.auth import enrol_second_factor, set_password
from fanli.users.models import WebSession
from fanli.users.service import create_user, disable_user
from postgres import empty_postgres
from second_factor import fresh_code
from store.builders import (
    activate,
    customers_file,
    people,
    percent_agreement,
    products_file,
    sales_file,
)
from store.conftest import NOW

PASSWORD = "correct horse battery"


@dataclass
class Api:
    client: TestClient
    sessions: Any
    secrets: dict[str, str]
    who: dict[str, Any]

    def sign_in(self, user: str, *, totp: bool = True, password: str = PASSWORD) -> Any:
        body: dict[str, Any] = {"user": user, "password": password}
        if totp and user in self.secrets:
            body["totp"] = fresh_code(self.secrets[user])
        return self.client.post("/api/session", json=body)

    def token(self, user: str, roles: list[str]) -> str:
        self.client.cookies.clear()
        signed = self.sign_in(user)
        assert signed.status_code == 200, signed.text
        made = self.client.post(
            "/api/tokens",
            json={"name": "test", "roles": roles, "days": 30},
            headers={"X-CSRF-Token": signed.json()["csrf_token"]},
        )
        assert made.status_code == 201, made.text
        self.client.cookies.clear()
        return str(made.json()["token"])


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    """The API over a store on each database, with users, a policy, one agreement, Q1 sales
    and an accrual run."""
    if request.param == "sqlite":
        settings = Settings(data_dir=tmp_path / "data")
        engine = make_engine(settings.resolved_database_url)
        upgrade(engine)
    else:
        url = request.getfixturevalue("postgres_url")
        settings = Settings(data_dir=tmp_path / "data", database_url=url)
        engine = make_engine(url)
        empty_postgres(engine)
    sessions = session_factory(engine)
    facts = FactStore(settings.facts_dir)
    secrets: dict[str, str] = {}
    with unit_of_work(sessions) as session:
        who = people(session, NOW)
    # an import comes first in its transaction (the import lock before the audit chain's)
    with unit_of_work(sessions) as session:
        import_customers(session, facts, customers_file(tmp_path), actor=who["fay"], now=NOW)
        create_user(
            session,
            "c1",
            name="C1 buyer",
            roles=["customer"],
            customer_code="C1",
            actor=who["admin"],
            now=NOW,
        )
        for code in ("admin", "sam", "fay", "fred", "amy", "abe", "cora", "ivan", "eve", "c1"):
            set_password(session, code, PASSWORD, actor=who["admin"], now=NOW, must_change=False)
        for code in ("admin", "fay", "fred", "amy", "abe"):
            secrets[code] = enrol_second_factor(session, code, actor=who["admin"], now=NOW)
        import_products(session, facts, products_file(tmp_path), actor=who["fay"], now=NOW)
        activate(
            session,
            add_version(session, percent_agreement(), actor=who["sam"], now=NOW).id,
            now=NOW,
        )
    lines = [
        ("L1", "C1", "P1", "2026-02-10", "10", "10000.00"),
        ("L2", "C2", "P1", "2026-02-11", "1", "500.00"),
    ]
    with unit_of_work(sessions) as session:
        import_sales(
            session, facts, sales_file(tmp_path, "s.csv", lines), actor=who["fay"], now=NOW
        )
    with unit_of_work(sessions) as session:
        accrue(session, facts, as_of=dt.date(2026, 3, 31), actor=who["fay"], now=NOW)
    client = TestClient(create_app(settings), base_url="https://testserver")
    yield Api(client, sessions, secrets, who)
    client.close()
    client.app.state.engine.dispose()  # type: ignore[attr-defined]
    engine.dispose()


def test_sign_in_needs_the_password_and_for_approvers_a_second_factor(api: Api) -> None:
    wrong = api.sign_in("amy", password="nope nope nope")
    assert (wrong.status_code, wrong.json()["error"]) == (401, "unauthenticated")
    assert api.sign_in("amy", totp=False).status_code == 401  # approver: TOTP required
    assert api.sign_in("nobody").json() == wrong.json()  # no account: the same answer
    signed = api.sign_in("amy")
    assert signed.status_code == 200
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "secure" in cookie
    assert "samesite=strict" in cookie
    me = api.client.get("/api/me").json()
    assert (me["code"], me["roles"], me["approval_limit"]) == ("amy", ["approver"], "20000.00")
    # A state-changing request with the cookie needs the CSRF token.
    refused = api.client.post("/api/tokens", json={"name": "x", "roles": ["approver"], "days": 1})
    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
    assert (
        api.client.delete("/api/session", headers={"X-CSRF-Token": me["csrf_token"]}).status_code
        == 204
    )
    assert api.client.get("/api/me").status_code == 401
    # Spaces around the code, as a pasted one often has, are not part of it.
    spaced = api.client.post(
        "/api/session",
        json={"user": " amy ", "password": PASSWORD, "totp": fresh_code(api.secrets["amy"])},
    )
    assert spaced.status_code == 200
    assert api.client.get("/api/me").json()["code"] == "amy"


def test_a_second_factor_once_enrolled_is_always_checked(api: Api) -> None:
    """Compliance needs no second factor, but one an administrator handed over is checked."""
    assert api.sign_in("cora").status_code == 200
    with unit_of_work(api.sessions) as session:
        secret = enrol_second_factor(session, "cora", actor=api.who["admin"], now=NOW)
    api.client.cookies.clear()
    assert api.sign_in("cora").status_code == 401  # no code
    wrong = api.client.post(
        "/api/session", json={"user": "cora", "password": PASSWORD, "totp": "000000"}
    )
    assert wrong.status_code == 401
    right = api.client.post(
        "/api/session",
        json={"user": "cora", "password": PASSWORD, "totp": fresh_code(secret)},
    )
    assert right.status_code == 200


def test_a_password_an_administrator_set_is_changed_before_anything_else(api: Api) -> None:
    """An administrator's reset leaves the password known to two people: the session it opens
    may read who it is, change it, or sign out, nothing more, until the user chooses their own."""
    admin = api.client
    admin.cookies.clear()
    csrf = api.sign_in("admin").json()["csrf_token"]
    reset = admin.post(
        "/api/users/cora/password",
        json={"password": "handed over to cora"},
        headers={"X-CSRF-Token": csrf},
    )
    assert reset.status_code == 204
    admin.cookies.clear()
    signed = api.sign_in("cora", password="handed over to cora")
    assert (signed.status_code, signed.json()["password_change_required"]) == (200, True)
    csrf = signed.json()["csrf_token"]
    refused = api.client.get("/api/customers")
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "password_change_required",
        "detail": "cora must first change the password an administrator set",
    }
    assert api.client.get("/api/me").json()["password_change_required"] is True
    same = api.client.post(
        "/api/users/cora/password",
        json={"password": "handed over to cora"},
        headers={"X-CSRF-Token": csrf},
    )
    assert (same.status_code, same.json()["error"]) == (422, "invalid_input")
    own = api.client.post(
        "/api/users/cora/password",
        json={"password": "cora's own passphrase"},
        headers={"X-CSRF-Token": csrf},
    )
    assert own.status_code == 204
    assert api.client.get("/api/me").status_code == 401  # the change ended the session
    signed = api.sign_in("cora", password="cora's own passphrase")
    assert signed.json()["password_change_required"] is False
    assert api.client.get("/api/customers").status_code == 200


def test_sign_in_is_throttled_per_account(api: Api) -> None:
    for _ in range(5):
        assert api.sign_in("sam", password="wrong password!").status_code == 401
    throttled = api.sign_in("sam")
    assert (throttled.status_code, throttled.json()["error"]) == (429, "throttled")
    assert api.sign_in("cora").status_code == 200  # another account is not affected


def test_sign_in_is_throttled_per_source_address(api: Api) -> None:
    """Twenty failures from one address, spread over accounts, block that address."""
    for n in range(20):
        assert api.sign_in(f"guess{n}", password="wrong password!").status_code == 401
    throttled = api.sign_in("cora")  # a right password, from the same address
    assert (throttled.status_code, throttled.json()["error"]) == (429, "throttled")


def test_sessions_end_when_idle_expired_or_the_user_is_disabled(api: Api) -> None:
    assert api.sign_in("sam").status_code == 200
    with unit_of_work(api.sessions) as session:
        session.execute(
            update(WebSession).values(last_seen_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        )
    ended = api.client.get("/api/me")
    assert (ended.status_code, "idle" in ended.json()["detail"]) == (401, True)
    assert api.sign_in("sam").status_code == 200
    with unit_of_work(api.sessions) as session:
        # Active all along (seen a minute ago), but signed in 13 hours ago: over the lifetime.
        session.execute(
            update(WebSession)
            .where(WebSession.ended_at.is_(None))
            .values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=13))
        )
    expired = api.client.get("/api/me")
    assert (expired.status_code, "expired" in expired.json()["detail"]) == (401, True)
    assert api.sign_in("cora").status_code == 200
    with unit_of_work(api.sessions) as session:
        disable_user(session, "cora", reason="left", actor=api.who["admin"], now=NOW)
    assert api.client.get("/api/me").status_code == 401


def test_tokens_carry_some_roles_and_can_be_revoked(api: Api) -> None:
    token = api.token("fay", ["finance"])
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/api/me", headers=bearer).json()["roles"] == ["finance"]
    signed = api.sign_in("fay")
    csrf = {"X-CSRF-Token": signed.json()["csrf_token"]}
    too_much = api.client.post(
        "/api/tokens", json={"name": "x", "roles": ["approver"], "days": 1}, headers=csrf
    )
    assert (too_much.status_code, too_much.json()["detail"]) == (
        403,  # signed in, but fay does not hold approver
        "fay cannot give a token roles they do not hold: approver",
    )
    lasting = api.client.post(
        "/api/tokens", json={"name": "x", "roles": ["finance"], "days": 9999}, headers=csrf
    )
    assert lasting.status_code == 422
    token_id = api.client.get("/api/me", headers=bearer).status_code
    assert token_id == 200
    unknown = api.client.delete("/api/tokens/99999", headers=csrf)
    assert (unknown.status_code, unknown.json()["detail"]) == (
        404,
        "there is no token 99999 of yours",
    )
    assert api.client.delete("/api/tokens/1", headers=csrf).status_code == 204
    api.client.cookies.clear()
    assert api.client.get("/api/me", headers=bearer).status_code == 401


def test_money_is_a_string_and_moving_it_needs_a_key(api: Api) -> None:
    fay = {"Authorization": f"Bearer {api.token('fay', ['finance'])}"}
    body = {"agreement": "A1", "beneficiary": "C1", "period_start": "2026-01-01"}
    missing = api.client.post("/api/settlements", json=body, headers=fay)
    assert (missing.status_code, missing.json()["error"]) == (400, "idempotency_key_missing")
    first = api.client.post("/api/settlements", json=body, headers={**fay, "Idempotency-Key": "k1"})
    assert first.status_code == 201, first.text
    assert first.json()["amount"] == "200.00"
    again = api.client.post("/api/settlements", json=body, headers={**fay, "Idempotency-Key": "k1"})
    assert (again.status_code, again.content) == (201, first.content)  # byte for byte
    other = api.client.post(
        "/api/settlements",
        json={**body, "beneficiary": "C2"},
        headers={**fay, "Idempotency-Key": "k1"},
    )
    assert (other.status_code, other.json()["error"]) == (422, "idempotency_key_reused")
    # Approve and pay through the API, each with its own key.
    amy = {"Authorization": f"Bearer {api.token('amy', ['approver'])}"}
    sid = first.json()["id"]
    approved = api.client.post(
        f"/api/settlements/{sid}/approvals", headers={**amy, "Idempotency-Key": "a1"}
    )
    assert approved.json()["status"] == "approved"
    paid = api.client.post(
        f"/api/settlements/{sid}/payout",
        json={"document_number": "CN-1"},
        headers={**fay, "Idempotency-Key": "p1"},
    )
    assert (paid.status_code, paid.json()["amount"], paid.json()["form"]) == (
        201,
        "200.00",
        "credit_note",
    )
    refused = api.client.post(
        f"/api/settlements/{sid}/payout",
        json={"document_number": "CN-2"},
        headers={**fay, "Idempotency-Key": "p2"},
    )
    assert refused.json() == {
        "error": "transition_refused",
        "detail": f"settlement {sid} is paid: it cannot be paid",
    }
    assert refused.status_code == 409
    assert Decimal(json.loads(paid.content)["amount"]) == Decimal("200.00")


def test_another_customers_object_is_the_same_404_as_a_missing_one(api: Api) -> None:
    fay = {"Authorization": f"Bearer {api.token('fay', ['finance'])}"}
    for beneficiary, key in (("C1", "x1"), ("C2", "x2")):
        made = api.client.post(
            "/api/settlements",
            json={"agreement": "A1", "beneficiary": beneficiary, "period_start": "2026-01-01"},
            headers={**fay, "Idempotency-Key": key},
        )
        assert made.status_code == 201
    assert api.sign_in("c1").status_code == 200
    mine = api.client.get("/api/settlements").json()
    assert [(s["beneficiary"], s["amount"]) for s in mine["items"]] == [("C1", "200.00")]
    other = api.client.get("/api/settlements/2")
    missing = api.client.get("/api/settlements/99")
    assert other.status_code == missing.status_code == 404
    assert other.json()["error"] == missing.json()["error"] == "not_found"
    assert other.json()["detail"] == "there is no settlement 2"
    api.client.cookies.clear()
    acting = api.client.post(
        "/api/settlements/99/approvals", headers={**fay, "Idempotency-Key": "x3"}
    )
    assert (acting.status_code, acting.json()["detail"]) == (404, "there is no settlement 99")
    ending = api.client.post(
        "/api/agreements/NOPE/termination",
        json={"on": "2026-06-01", "reason": "x"},
        headers=fay,
    )
    assert (ending.status_code, ending.json()["detail"]) == (404, "there is no agreement NOPE")
    assert api.sign_in("c1").status_code == 200
    assert api.client.get("/api/customers/C2").json() == {
        "error": "not_found",
        "detail": "there is no customer C2",
    }
    assert api.client.get("/api/customers/C1").json()["legal_name"] == "上海华东食品贸易有限公司"


def test_a_bad_request_names_the_field(api: Api) -> None:
    fay = {"Authorization": f"Bearer {api.token('fay', ['finance'])}"}
    bad = api.client.post(
        "/api/settlements",
        json={"agreement": "A1", "beneficiary": "C1", "period_start": "yesterday"},
        headers={**fay, "Idempotency-Key": "bad"},
    )
    assert bad.status_code == 422
    assert bad.json()["error"] == "invalid_input"
    assert bad.json()["detail"][0]["field"] == "body.period_start"


def test_a_body_that_says_a_key_twice_or_is_not_json_is_refused_where_it_is(api: Api) -> None:
    sam = {"Authorization": f"Bearer {api.token('sam', ['sales'])}"}
    as_json = {**sam, "Content-Type": "application/json"}
    # Python's json would keep the second rate: 9% instead of the 1% a reader sees first.
    twice = (
        '{"id": "B3", "term": {"start": "2026-01-01", "end": "2027-01-01"},\n'
        ' "parties": {"counterparty": "C1"},\n'
        ' "rebate": {"tiers": [{"from": "0", "rate": "1",\n'
        '                       "rate": "9"}]}}'
    )
    refused = api.client.post("/api/agreements", content=twice, headers=as_json)
    assert refused.status_code == 422
    assert refused.json() == {
        "error": "invalid_input",
        "detail": [
            {"field": "body", "message": 'the field "rate" is given twice (line 4, column 24)'}
        ],
    }
    assert api.client.get("/api/agreements/B3", headers=sam).status_code == 404
    constant = api.client.post(
        "/api/agreements", content='{"id": "B3", "rebate": {"cap": NaN}}', headers=as_json
    )
    assert constant.json()["detail"] == [
        {"field": "body", "message": "NaN is not a number JSON allows (line 1, column 24)"}
    ]
    broken = api.client.post(
        "/api/agreements", content='{"id": "B3",\n "term" {}}', headers=as_json
    )
    assert (broken.status_code, broken.json()["detail"]) == (
        422,
        [{"field": "body", "message": "Expecting ':' delimiter (line 2, column 9)"}],
    )
    lone = api.client.post(
        "/api/agreements", content='{"id": "B3", "name": "\\udfff x"}', headers=as_json
    )
    assert (lone.status_code, lone.json()["detail"]) == (
        422,
        [
            {
                "field": "body",
                "message": "\\udfff is half of a UTF-16 surrogate pair, not a character "
                "(line 1, column 23)",
            }
        ],
    )
    # The same terms said once are taken.
    once = twice.replace(',\n                       "rate": "9"', "")
    assert api.client.post("/api/agreements", content=once, headers=as_json).status_code == 201


def test_days_and_periods_outside_the_calendar_are_a_422(api: Api) -> None:
    fay = {"Authorization": f"Bearer {api.token('fay', ['finance'])}"}
    far = api.client.post("/api/accrual-runs", json={"as_of": "9999-12-31"}, headers=fay)
    assert (far.status_code, far.json()["detail"][0]["field"]) == (422, "body.as_of")
    short = api.client.post("/api/periods/26-10/close", headers=fay)
    assert (short.status_code, short.json()["detail"]) == (
        422,
        "'26-10' is not an accounting period (YYYY-MM)",
    )
    last = api.client.post("/api/periods/9999-12/close", headers=fay)
    assert (last.status_code, last.json()["detail"]) == (
        422,
        "'9999-12' is outside the days Fanli keeps (1900-01-01 to 9998-12-31)",
    )
    with unit_of_work(api.sessions) as session:
        codes = session.scalars(text("SELECT code FROM accounting_period ORDER BY code")).all()
        assert codes == ["2026-03"]  # the run's, and no other
    # The end of a check may be the calendar's last day, meaning "never".
    cora = {"Authorization": f"Bearer {api.token('cora', ['compliance'])}"}
    never = api.client.post(
        "/api/customers/C1/due-diligence",
        json={
            "kind": "business_licence",
            "reference": "营业执照 (no end)",
            "checked_on": "2026-11-01",
            "expires_on": "9999-12-31",
        },
        headers=cora,
    )
    assert (never.status_code, never.json()["expires_on"]) == (201, "9999-12-31")


def test_an_amount_is_written_one_way_only(api: Api) -> None:
    fay = {"Authorization": f"Bearer {api.token('fay', ['finance'])}"}
    for n, written in enumerate(("1_000", "\uff15", "1e3", " 5", "5.12345")):
        refused = api.client.post(
            "/api/balance-uses",
            json={"customer": "C1", "amount": written, "order_reference": "SO-1"},
            headers={**fay, "Idempotency-Key": f"amount-{n}"},
        )
        assert refused.status_code == 422, written
        assert refused.json()["detail"][0]["field"] == "body.amount"
        assert refused.json()["detail"][0]["message"] == (
            f"Value error, {written!r} is not an amount: write digits, a point and up to four "
            'places ("150.00")'
        )


def test_a_money_request_that_says_a_key_twice_moves_nothing(api: Api) -> None:
    fay = {
        "Authorization": f"Bearer {api.token('fay', ['finance'])}",
        "Content-Type": "application/json",
        "Idempotency-Key": "twice",
    }
    body = '{"agreement": "A1", "beneficiary": "C1", "beneficiary": "C2"}'
    refused = api.client.post("/api/settlements", content=body, headers=fay)
    assert refused.json()["detail"] == [
        {"field": "body", "message": 'the field "beneficiary" is given twice (line 1, column 42)'}
    ]
    with unit_of_work(api.sessions) as session:
        assert session.scalar(text("SELECT count(*) FROM settlement")) == 0
        # The claim on the key was released with the refusal: a corrected retry may use it.
        assert session.scalar(text("SELECT count(*) FROM http_idempotency")) == 0


def test_the_month_end_over_http(api: Api, tmp_path: Path) -> None:
    """Import (a refused file first), agreement draft -> submit -> approve, accrue, statement,
    journal, GL export: every step through the API."""
    fay = {"Authorization": f"Bearer {api.token('fay', ['finance'])}"}
    sam = {"Authorization": f"Bearer {api.token('sam', ['sales'])}"}
    amy = {"Authorization": f"Bearer {api.token('amy', ['approver'])}"}
    header = b"line_id,customer_id,product_id,invoice_date,quantity,net_amount\n"
    bad = header + b"L9,C1,P1,2026-13-01,1,1\nL10,C9,P1,2026-03-01,1,1\n"
    refused = api.client.post(
        "/api/imports/sales", files={"file": ("march.csv", bad, "text/csv")}, headers=fay
    )
    assert refused.status_code == 422
    problems = refused.json()["detail"]["problems"]
    assert [(p["row"], p["field"]) for p in problems] == [(2, "invoice_date"), (3, "customer_id")]
    assert refused.json()["detail"]["file"] == "march.csv"  # not the server's temporary copy
    empty = api.client.post("/api/imports/sales", files={"file": ("empty.csv", b"")}, headers=fay)
    assert (empty.status_code, empty.json()["detail"]) == (
        422,
        "file empty.csv, row 1: the file is empty or has no header row",
    )
    as_file = api.client.post(
        "/api/imports/sales?report=csv", files={"file": ("march.csv", bad)}, headers=fay
    )
    assert (as_file.status_code, as_file.headers["content-type"].startswith("text/csv")) == (
        422,
        True,
    )
    good = header + b"L9,C1,P1,2026-03-01,1,5000.00\n"
    imported = api.client.post(
        "/api/imports/sales", files={"file": ("march.csv", good)}, headers=fay
    )
    assert (imported.status_code, imported.json()["rows"]) == (201, 1)
    again = api.client.post("/api/imports/sales", files={"file": ("march.csv", good)}, headers=fay)
    assert (again.status_code, again.json()["already_imported"], again.json()["batch_id"]) == (
        200,
        True,
        imported.json()["batch_id"],
    )
    terms = {
        "id": "B1",
        "term": {"start": "2026-01-01", "end": "2027-01-01"},
        "parties": {"counterparty": "C1"},
        "rebate": {"tiers": [{"from": "0", "rate": "1"}]},
        "contract": {"reference": "HT-9", "document_sha256": "c" * 64},
    }
    draft = api.client.post("/api/agreements", json=terms, headers=sam)
    assert draft.status_code == 201, draft.text
    assert api.client.post("/api/agreements/B1/submission", json={}, headers=sam).status_code == 200
    approved = api.client.post(
        "/api/agreements/B1/approvals", json={"terms_hash": draft.json()["terms_hash"]}, headers=amy
    )
    assert approved.json()["status"] == "active"
    run = api.client.post("/api/accrual-runs", json={"as_of": "2026-03-31"}, headers=fay)
    assert (run.status_code, run.json()["net_change"]) == (201, "250.00")  # A1 100 + B1 150
    assert run.json()["adjusted"] == "0.00"  # no period is closed
    assert run.json()["by_currency"] == [
        {"currency": "CNY", "net_change": "250.00", "adjusted": "0.00"}
    ]
    statement = api.client.get("/api/customers/C1/statement", headers=sam)
    assert statement.status_code == 404  # sam has no customers assigned
    statement = api.client.get("/api/customers/C1/statement", headers=fay).json()
    assert [
        (line["agreement_code"], line["period_start"], line["rebate"])
        for line in statement["lines"]
    ] == [
        ("A1", "2026-01-01", "300.00"),
        ("B1", "2026-01-01", "150.00"),
    ]
    journal = api.client.get("/api/periods/2026-03/journal", headers=fay).json()
    assert journal["total"] == 4
    gl = api.client.post("/api/periods/2026-03/gl-exports?format=csv", headers=fay)
    assert gl.status_code == 200
    assert gl.text.splitlines()[-1].startswith("total,,2026-03,,,,460.00,460.00,CNY,")
    workbook = api.client.post("/api/periods/2026-03/gl-exports?format=xlsx", headers=fay)
    assert (workbook.status_code, workbook.headers["content-type"]) == (
        200,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )


def test_the_journal_and_a_runs_change_name_their_currencies(api: Api) -> None:
    """A yen programme beside the yuan one: each journal line names its currency and has its
    places (whole yen), and a run in two currencies gives its change per currency only."""
    fay = {"Authorization": f"Bearer {api.token('fay', ['finance'])}"}
    sam = {"Authorization": f"Bearer {api.token('sam', ['sales'])}"}
    amy = {"Authorization": f"Bearer {api.token('amy', ['approver'])}"}
    lines = (
        b"line_id,customer_id,product_id,invoice_date,quantity,net_amount,currency\n"
        b"N1,C1,P1,2026-03-02,1,1000.00,CNY\nJ1,C1,P1,2026-03-03,1,12345,JPY\n"
    )
    imported = api.client.post("/api/imports/sales", files={"file": ("m.csv", lines)}, headers=fay)
    assert imported.status_code == 201, imported.text
    terms = {
        "id": "Y1",
        "currency": "JPY",
        "term": {"start": "2026-01-01", "end": "2027-01-01"},
        "parties": {"counterparty": "C1"},
        "rebate": {"tiers": [{"from": "0", "rate": "3.3333"}]},
        "contract": {"reference": "HT-Y", "document_sha256": "d" * 64},
    }
    draft = api.client.post("/api/agreements", json=terms, headers=sam)
    assert draft.status_code == 201, draft.text
    api.client.post("/api/agreements/Y1/submission", json={}, headers=sam)
    approved = api.client.post(
        "/api/agreements/Y1/approvals", json={"terms_hash": draft.json()["terms_hash"]}, headers=amy
    )
    assert approved.json()["status"] == "active"
    run = api.client.post("/api/accrual-runs", json={"as_of": "2026-03-31"}, headers=fay).json()
    # A1 pays 2% of C1's new 1,000.00 in yuan; Y1 3.3333% of 12,345 yen = 411.496..., to
    # whole yen 411.
    assert (run["net_change"], run["adjusted"]) == (None, None)
    assert run["by_currency"] == [
        {"currency": "CNY", "net_change": "20.00", "adjusted": "0.00"},
        {"currency": "JPY", "net_change": "411", "adjusted": "0"},
    ]
    journal = api.client.get("/api/periods/2026-03/journal", headers=fay).json()
    assert sorted(
        (line["agreement_code"], line["amount"], line["currency"]) for line in journal["items"]
    ) == [
        ("A1", "10.00", "CNY"),  # C2, by the fixture's run
        ("A1", "20.00", "CNY"),  # C1's new line
        ("A1", "200.00", "CNY"),  # C1, by the fixture's run
        ("Y1", "411", "JPY"),
    ]


def test_an_upload_may_bring_its_column_mapping(api: Api) -> None:
    """An ERP's own headers, matched by a mapping sent beside the file (the command line's
    --mapping YAML); a bad mapping is refused by its own name."""
    fay = {"Authorization": f"Bearer {api.token('fay', ['finance'])}"}
    lines = b"ID,CUST,PROD,DAY,QTY,AMT\nM1,C1,P1,2026-03-02,1,100.00\n"
    mapping = (
        b"line_id: ID\ncustomer_id: CUST\nproduct_id: PROD\ninvoice_date: DAY\n"
        b"quantity: QTY\nnet_amount: AMT\n"
    )
    unmapped = api.client.post("/api/imports/sales", files={"file": ("m.csv", lines)}, headers=fay)
    assert unmapped.status_code == 422
    mapped = api.client.post(
        "/api/imports/sales",
        files={"file": ("m.csv", lines), "mapping": ("erp.yaml", mapping)},
        headers=fay,
    )
    assert (mapped.status_code, mapped.json()["rows"]) == (201, 1), mapped.text
    wrong = api.client.post(
        "/api/imports/sales",
        files={"file": ("n.csv", lines), "mapping": ("erp.yaml", b"price: X\n")},
        headers=fay,
    )
    assert wrong.status_code == 422
    # the mapping by the name it was sent under, not the server's copy
    assert wrong.json()["detail"].startswith("file erp.yaml: price: not a Fanli field (known: ")


def test_no_such_agreement_is_a_404_and_a_rewind_is_asked_for_as_true(api: Api) -> None:
    fay = {"Authorization": f"Bearer {api.token('fay', ['finance'])}"}
    sam = {"Authorization": f"Bearer {api.token('sam', ['sales'])}"}
    missing = api.client.post("/api/agreements/NOPE/submission", json={}, headers=sam)
    assert (missing.status_code, missing.json()["detail"]) == (404, "there is no agreement NOPE")
    loose = api.client.post(
        "/api/accrual-runs", json={"as_of": "2026-03-15", "rewind": "on"}, headers=fay
    )
    assert (loose.status_code, loose.json()["detail"][0]["field"]) == (422, "body.rewind")
    with unit_of_work(api.sessions) as session:
        assert session.scalar(text("SELECT count(*) FROM accrual_run")) == 1  # the fixture's


def test_a_draft_is_discarded_through_the_api(api: Api) -> None:
    sam = {"Authorization": f"Bearer {api.token('sam', ['sales'])}"}
    terms = {
        "id": "B2",
        "term": {"start": "2026-01-01", "end": "2027-01-01"},
        "parties": {"counterparty": "C1"},
        "rebate": {"tiers": [{"from": "0", "rate": "1"}]},
    }
    assert api.client.post("/api/agreements", json=terms, headers=sam).status_code == 201
    bare = api.client.post("/api/agreements/B2/discard", json={"reason": ""}, headers=sam)
    assert bare.status_code == 422  # a reason is required
    gone = api.client.post(
        "/api/agreements/B2/discard", json={"reason": "entered twice"}, headers=sam
    )
    assert (gone.status_code, gone.json()["status"]) == (200, "discarded")
    shown = api.client.get("/api/agreements/B2", headers=sam).json()
    assert (shown["status"], [v["status"] for v in shown["versions"]]) == (
        "discarded",
        ["discarded"],
    )
    none_left = api.client.post("/api/agreements/B2/discard", json={"reason": "x"}, headers=sam)
    assert (none_left.status_code, none_left.json()["detail"]) == (
        409,
        "agreement B2 has no draft or submitted version",
    )
    listed = api.client.get("/api/agreements?status=discarded", headers=sam).json()
    assert [a["code"] for a in listed["items"]] == ["B2"]


def test_fields_a_caller_may_not_set_are_refused(api: Api) -> None:
    fay = {"Authorization": f"Bearer {api.token('fay', ['finance'])}"}
    body = {
        "agreement": "A1",
        "beneficiary": "C1",
        "period_start": "2026-01-01",
        "amount": "999999.00",
        "status": "approved",
    }
    refused = api.client.post(
        "/api/settlements", json=body, headers={**fay, "Idempotency-Key": "f"}
    )
    assert refused.status_code == 422
    assert {p["field"] for p in refused.json()["detail"]} == {"body.amount", "body.status"}
    listed = api.client.get("/api/settlements", headers=fay).json()
    assert listed["total"] == 0  # nothing stored


def test_a_key_still_in_flight_is_a_409(api: Api) -> None:
    token = api.token("fay", ["finance"])
    fay = {"Authorization": f"Bearer {token}"}
    body = {"agreement": "A1", "beneficiary": "C1", "period_start": "2026-01-01"}
    raw = json.dumps(body, separators=(",", ":")).encode()
    with unit_of_work(api.sessions) as session:
        # What the middleware writes when a first request with this key starts.
        session.add(
            HttpIdempotency(
                key="slow",
                caller=hashlib.sha256(token.encode()).hexdigest(),
                method_path="POST /api/settlements",
                body_sha256=hashlib.sha256(raw).hexdigest(),
                created_at=NOW,
            )
        )
    second = api.client.post(
        "/api/settlements",
        content=raw,
        headers={**fay, "Idempotency-Key": "slow", "Content-Type": "application/json"},
    )
    assert (second.status_code, second.json()["error"]) == (409, "in_flight")
    assert api.client.get("/api/settlements", headers=fay).json()["total"] == 0


def test_approval_status_and_refresh_over_http(api: Api) -> None:
    fay = {"Authorization": f"Bearer {api.token('fay', ['finance'])}"}
    made = api.client.post(
        "/api/settlements",
        json={"agreement": "A1", "beneficiary": "C1", "period_start": "2026-01-01"},
        headers={**fay, "Idempotency-Key": "s"},
    ).json()
    status = api.client.get(f"/api/settlements/{made['id']}/approvals", headers=fay).json()
    assert (status["approvals"], status["missing"]) == ([], ["approver x1"])
    unchanged = api.client.post(f"/api/settlements/{made['id']}/refresh", headers=fay)
    assert (unchanged.status_code, unchanged.json()["error"]) == (409, "settlement_refused")


def test_growing_lists_are_pages_with_filters(api: Api) -> None:
    fay = {"Authorization": f"Bearer {api.token('fay', ['finance'])}"}
    admin = {"Authorization": f"Bearer {api.token('admin', ['administrator'])}"}
    batches = api.client.get("/api/batches?limit=2", headers=fay).json()
    assert [(b["kind"], b["rows"]) for b in batches["items"]] == [("sales", 2), ("products", 2)]
    assert (batches["total"], batches["offset"], batches["limit"]) == (3, 0, 2)
    sales = api.client.get("/api/batches?kind=sales&status=active", headers=fay).json()
    assert [(b["kind"], b["first_date"]) for b in sales["items"]] == [("sales", "2026-02-10")]
    voided = api.client.get("/api/batches?status=voided", headers=fay).json()
    assert (voided["items"], voided["total"]) == ([], 0)
    runs = api.client.get("/api/accrual-runs?as_of=2026-03-31", headers=fay).json()
    assert [(r["as_of"], r["lines_posted"] > 0) for r in runs["items"]] == [("2026-03-31", True)]
    assert api.client.get("/api/accrual-runs?as_of=2026-04-30", headers=fay).json()["total"] == 0
    people = api.client.get("/api/users?offset=1&limit=2", headers=admin).json()
    assert [u["code"] for u in people["items"]] == ["admin", "amy"]  # after abe
    assert people["total"] == 10
    with unit_of_work(api.sessions) as session:
        disable_user(session, "eve", reason="left", actor=api.who["admin"], now=NOW)
    gone = api.client.get("/api/users?active=false", headers=admin).json()
    assert [u["code"] for u in gone["items"]] == ["eve"]
    bad = api.client.get("/api/batches?kind=invoices", headers=fay)
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid_input")
    # an approval limit in fractions of a fen is refused, one in fen taken
    user = {"code": "ann2", "name": "Ann", "roles": ["approver"], "approval_limit": "100.005"}
    refused = api.client.post("/api/users", json=user, headers=admin)
    assert (refused.status_code, refused.json()["error"]) == (422, "invalid_input")
    made = api.client.post("/api/users", json={**user, "approval_limit": "100.05"}, headers=admin)
    assert (made.status_code, made.json()["approval_limit"]) == (201, "100.05")


def test_the_periodic_audit_over_http(api: Api) -> None:
    fay = {"Authorization": f"Bearer {api.token('fay', ['finance'])}"}
    amy = {"Authorization": f"Bearer {api.token('amy', ['approver'])}"}
    ivan = {"Authorization": f"Bearer {api.token('ivan', ['internal_auditor'])}"}
    body = {"agreement": "A1", "beneficiary": "C1", "period_start": "2026-01-01"}
    sid = api.client.post(
        "/api/settlements", json=body, headers={**fay, "Idempotency-Key": "k1"}
    ).json()["id"]
    api.client.post(f"/api/settlements/{sid}/approvals", headers={**amy, "Idempotency-Key": "a1"})
    paid = api.client.post(
        f"/api/settlements/{sid}/payout",
        json={"document_number": "CN-1"},
        headers={**fay, "Idempotency-Key": "p1"},
    )
    assert paid.status_code == 201, paid.text
    engine = api.client.app.state.engine  # type: ignore[attr-defined]
    with engine.begin() as connection:  # the approval disappears from the database
        connection.execute(text("DELETE FROM settlement_approval"))
    period = NOW.strftime("%Y-%m")
    assert (
        api.client.post("/api/audit/runs", json={"period": period}, headers=fay).status_code == 403
    )
    run = api.client.post("/api/audit/runs", json={"period": period}, headers=ivan)
    assert run.status_code == 201, run.text
    assert (run.json()["found"], run.json()["opened"]) == (1, 1)
    listed = api.client.get("/api/audit/findings?status=open", headers=fay).json()
    assert [(f["detector"], f["amount"]) for f in listed["items"]] == [("approval_chain", "200.00")]
    fid = listed["items"][0]["id"]
    evidence = api.client.get(f"/api/audit/findings/{fid}", headers=ivan).json()["evidence"]
    assert (evidence["settlement"], evidence["approvals"], evidence["document"]) == (
        sid,
        [],
        "CN-1",
    )
    assigned = api.client.post(
        f"/api/audit/findings/{fid}/assignment", json={"owner": "fay"}, headers=ivan
    )
    assert (assigned.json()["status"], assigned.json()["owner"]) == ("assigned", "fay")
    resolved = api.client.post(
        f"/api/audit/findings/{fid}/resolution", json={"reason": "approved again"}, headers=fay
    )
    assert (resolved.status_code, resolved.json()["status"]) == (200, "resolved")
    again = api.client.post(
        f"/api/audit/findings/{fid}/dismissal", json={"reason": "x"}, headers=ivan
    )
    assert (again.status_code, again.json()["error"]) == (409, "transition_refused")
    trail = api.client.get("/api/audit/trail", headers=ivan).json()
    assert (trail["holds"], trail["first_bad_event"]) == (True, None)


def test_a_dispute_is_raised_and_answered_over_http(api: Api) -> None:
    """The customer disputes its Q1 statement; finance lists the open disputes and answers one,
    once; a sales user without the customer sees neither."""
    c1 = {"Authorization": f"Bearer {api.token('c1', ['customer'])}"}
    fay = {"Authorization": f"Bearer {api.token('fay', ['finance'])}"}
    sam = {"Authorization": f"Bearer {api.token('sam', ['sales'])}"}
    path = "/api/customers/C1/statements/2026-01-01/answer"
    empty = api.client.post(path, json={"decision": "disputed", "comment": " "}, headers=c1)
    assert (empty.status_code, empty.json()["detail"]) == (
        422,
        "field 'comment': a dispute needs a comment: what is wrong",
    )
    raised = api.client.post(path, json={"decision": "disputed", "comment": "INV-9"}, headers=c1)
    assert raised.status_code == 200, raised.text
    dispute = raised.json()
    assert (dispute["decision"], dispute["comment"], dispute["responded_by"]) == (
        "disputed",
        "INV-9",
        "c1",
    )
    assert api.client.get("/api/disputes", headers=sam).json() == []  # C1 is not sam's
    # A settlement of the disputed period says so to whoever reads it: disputed, since when, why.
    made = api.client.post(
        "/api/settlements",
        json={"agreement": "A1", "beneficiary": "C1", "period_start": "2026-01-01"},
        headers={**fay, "Idempotency-Key": "s1"},
    ).json()
    read = api.client.get(f"/api/settlements/{made['id']}", headers=fay).json()
    assert (read["amount"], read["statement"]["standing"], read["statement"]["comment"]) == (
        "200.00",
        "disputed",
        "INV-9",
    )
    since = dt.datetime.fromisoformat(read["statement"]["since"])
    assert since == dt.datetime.fromisoformat(dispute["responded_at"])  # the same moment
    listed = api.client.get("/api/disputes", headers=fay).json()
    assert [(d["id"], d["customer_code"], d["period_start"]) for d in listed] == [
        (dispute["id"], "C1", "2026-01-01")
    ]
    answer = f"/api/disputes/{dispute['id']}/answer"
    hidden = api.client.post(answer, json={"outcome": "upheld", "comment": "x"}, headers=sam)
    assert (hidden.status_code, hidden.json()["detail"]) == (
        404,
        f"there is no dispute {dispute['id']}",
    )
    answered = api.client.post(
        answer, json={"outcome": "correcting", "comment": "INV-9 joins the next run"}, headers=fay
    )
    assert answered.status_code == 200, answered.text
    assert (answered.json()["outcome"], answered.json()["answered_by"]) == ("correcting", "fay")
    assert api.client.get("/api/disputes", headers=fay).json() == []
    read = api.client.get(f"/api/settlements/{made['id']}", headers=fay).json()
    assert (read["statement"]["standing"], read["statement"]["comment"]) == (
        "correcting",
        "INV-9 joins the next run",
    )
    rejected = api.client.post(
        f"/api/settlements/{made['id']}/rejection", json={"reason": "wait for the correction"},
        headers={**fay, "Idempotency-Key": "r1"},
    )  # fmt: skip
    assert rejected.status_code == 200, rejected.text
    # Only an open settlement carries the mark: a rejected one pays nothing.
    assert api.client.get(f"/api/settlements/{made['id']}", headers=fay).json()["statement"] is None
    twice = api.client.post(answer, json={"outcome": "upheld", "comment": "x"}, headers=fay)
    assert (twice.status_code, twice.json()["detail"]) == (
        422,
        f"field 'response_id': dispute {dispute['id']} has been answered already",
    )


def test_a_product_imported_without_a_name_is_listed_with_none(api: Api) -> None:
    fay = {"Authorization": f"Bearer {api.token('fay', ['finance'])}"}
    made = api.client.post(
        "/api/imports/products",
        files={"file": ("new.csv", "物料编码,品类\nP9,饮料\n".encode())},
        headers=fay,
    )
    assert (made.status_code, made.json()["inserted"]) == (201, 1)
    one = api.client.get("/api/products/P9", headers=fay)
    assert (one.status_code, one.json()) == (
        200,
        {"code": "P9", "name": None, "category": "饮料", "brand": None},
    )
    listed = api.client.get("/api/products?limit=100", headers=fay).json()["items"]
    assert {"code": "P9", "name": None, "category": "饮料", "brand": None} in listed


def test_a_report_of_more_problems_than_are_listed_says_how_many_more(api: Api) -> None:
    fay = {"Authorization": f"Bearer {api.token('fay', ['finance'])}"}
    header = "line_id,customer_id,product_id,invoice_date,quantity,net_amount\n"
    # line ids the store does not hold (its L1 and L2 would be two problems more)
    bad = header + "".join(f"N{n},C1,P1,2026-03-01,1,x\n" for n in range(1500))
    # A long name, with spaces and brackets: kept as sent, its extension too.
    name = "2026年3月 销售 (终版)" + "长" * 80 + ".csv"
    report = api.client.post(
        "/api/imports/sales?report=csv",
        files={"file": (name, bad.encode(), "text/csv")},
        headers=fay,
    )
    assert report.status_code == 422
    lines = report.content.decode("utf-8-sig").splitlines()
    kept = "2026年3月 销售 (终版)" + "长" * 56 + ".csv"  # within 200 bytes, the extension kept
    assert len(lines) == 1 + 1000 + 1
    assert lines[1] == f"{kept},2,net_amount,net_amount 'x' is not a number"
    assert lines[-1] == (
        f"{kept},,,500 more problems are not listed: correct these and import the file again to "
        "see them"
    )


def test_a_void_of_no_batch_or_without_a_reason_and_a_reused_import_key_say_so(api: Api) -> None:
    fay = {"Authorization": f"Bearer {api.token('fay', ['finance'])}"}
    missing = api.client.post("/api/batches/99999/void", json={"reason": "wrong"}, headers=fay)
    assert (missing.status_code, missing.json()["detail"]) == (
        404,
        "there is no sales batch 99999",
    )
    batch = api.client.get("/api/batches?kind=sales", headers=fay).json()["items"][0]["id"]
    blank = api.client.post(f"/api/batches/{batch}/void", json={"reason": "   "}, headers=fay)
    assert (blank.status_code, blank.json()["detail"]) == (
        422,
        "field 'reason': voiding a batch needs a reason",
    )
    header = b"line_id,customer_id,product_id,invoice_date,quantity,net_amount\n"
    keyed = {**fay, "Idempotency-Key": "upload-1"}
    first = api.client.post(
        "/api/imports/sales",
        files={"file": ("a.csv", header + b"K1,C1,P1,2026-03-01,1,10.00\n")},
        headers=keyed,
    )
    other = api.client.post(
        "/api/imports/sales",
        files={"file": ("b.csv", header + b"K2,C1,P1,2026-03-01,1,10.00\n")},
        headers=keyed,
    )
    assert (first.status_code, other.status_code, other.json()["error"]) == (
        201,
        422,
        "idempotency_conflict",
    )
    # A void names the returns it leaves without their sale.
    returned = api.client.post(
        "/api/imports/sales",
        files={
            "file": (
                "r.csv",
                header.replace(b"\n", b",original_line_id\n")
                + b"RK1,C1,P1,2026-03-02,-1,-10.00,K1\n",
            )
        },
        headers=fay,
    )
    assert returned.status_code == 201, returned.json()
    voided = api.client.post(
        f"/api/batches/{first.json()['batch_id']}/void", json={"reason": "wrong"}, headers=fay
    )
    assert voided.status_code == 200
    assert (voided.json()["status"], voided.json()["returns_left"]) == (
        "voided",
        [{"batch_id": returned.json()["batch_id"], "line_id": "RK1"}],
    )
    # the batch list says who voided it, and why
    listed = api.client.get("/api/batches?status=voided", headers=fay).json()["items"]
    assert [(b["id"], b["voided_by"], b["void_reason"]) for b in listed] == [
        (first.json()["batch_id"], "fay", "wrong")
    ]
    assert listed[0]["voided_at"] is not None


def test_a_problem_report_never_holds_a_formula(api: Api) -> None:
    fay = {"Authorization": f"Bearer {api.token('fay', ['finance'])}"}
    bad = b"line_id,customer_id,product_id,invoice_date,quantity,net_amount\nZ1,C1,P1,x,1,1\n"
    for kind in ("csv", "xlsx"):
        report = api.client.post(
            f"/api/imports/sales?report={kind}",
            files={"file": ("=HYPERLINK(1).csv", bad, "text/csv")},
            headers=fay,
        )
        assert report.status_code == 422
        if kind == "csv":
            first = report.content.decode("utf-8-sig").splitlines()[1]
            assert first.startswith("'=HYPERLINK(1).csv,2,invoice_date,")
        else:
            sheet = load_workbook(io.BytesIO(report.content)).active
            cell = sheet.cell(row=2, column=1)
            assert (cell.value, cell.data_type) == ("=HYPERLINK(1).csv", "s")
