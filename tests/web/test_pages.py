"""Web pages through the ASGI app (no browser): paying a settlement by bank transfer into the
beneficiary's verified account, chosen on the page; the page offers only verified accounts of
that customer, and refuses a form without the session's CSRF token."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from fanli.agreements.models import AgreementVersion
from fanli.agreements.service import add_version
from fanli.agreements.terms import Rebate
from fanli.audit.models import AuditEvent
from fanli.compliance import review
from fanli.config import Settings
from fanli.customers.service import assign
from fanli.interfaces.api.app import create_app
from fanli.ledger import preview as previews
from fanli.sales.service import import_sales
from fanli.settlements.models import DisputeOutcome, Payout, StatementDecision
from fanli.settlements.statements import answer_dispute, respond
from fanli.users.actor import Actor, Role
from fanli.users.auth import enrol_second_factor, set_password
from fanli.users.models import User
from fanli.users.service import create_user
from second_factor import fresh_code
from store.builders import percent_agreement, staff, write_csv
from store.conftest import NOW, Store, sqlite_template, store
from store.test_settlements import World, _form, _world

__all__ = ["sqlite_template", "store"]  # the store's fixtures, on both databases
PASSWORD = "correct horse battery"


def test_a_transfer_goes_to_the_verified_account_chosen_on_the_page(
    store: Store, tmp_path: Path
) -> None:
    world = _world(store, tmp_path, _form("bank_transfer"))
    account = world.verified_account("C1")
    settlement_id = world.propose()
    world.approve(settlement_id, "amy")
    with store.work() as session:
        set_password(session, "fay", PASSWORD, actor=world["admin"], now=NOW, must_change=False)
        secret = enrol_second_factor(session, "fay", actor=world["admin"], now=NOW)
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        signed = client.post(
            "/signin",
            data={"user": "fay", "password": PASSWORD, "totp": fresh_code(secret)},
        )
        assert signed.url.path == "/dashboard"
        page = client.get("/settlements").text
        assert f'<option value="{account}">工商银行 · 1</option>' in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        key = re.search(rf'name="key" value="([^"]+)-{settlement_id}"', page)
        assert key is not None
        form = {"bank_account": str(account), "key": f"{key[1]}-{settlement_id}"}
        refused = client.post(f"/settlements/{settlement_id}/pay", data=form)
        assert refused.status_code == 403  # no CSRF token
        paid = client.post(f"/settlements/{settlement_id}/pay", data={**form, "csrf": csrf[1]})
        assert f"结算 {settlement_id} 已支付。" in paid.text  # Chinese: the default language
        # The customer's statement lists the payout: when (in the company's zone), how, where.
        statement = client.get("/customers/C1").text
        payouts = re.search(r'data-testid="payouts">.*?<tbody>(.*?)</tbody>', statement, re.S)
        assert payouts is not None
        cells = [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", payouts[1], re.S)
        ]
        today = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
        assert cells == [
            f"{today.year}年{today.month}月{today.day}日",
            str(settlement_id),
            "A1 · 2026年1月1日",
            "银行转账",
            "工商银行，尾号 1 的账户",
            "¥200.00",
        ]
    assert world.settlement(settlement_id).status == "paid"
    with store.work() as session:
        payout = session.scalar(select(Payout).where(Payout.settlement_id == settlement_id))
        assert payout is not None
        assert (payout.form, payout.bank_account_id, payout.amount) == (
            "bank_transfer",
            account,
            Decimal("200.00"),
        )


def _signed_in(client: TestClient, user: str, secret: str) -> str:
    """Sign ``user`` in; the CSRF token of the session, from a page's forms."""
    client.cookies.clear()
    client.post("/signin", data={"user": user, "password": PASSWORD, "totp": fresh_code(secret)})
    page = client.get("/inbox").text
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found[1]


@contextmanager
def _signed_in_as(
    store: Store, tmp_path: Path, world: World, user: str = "fay"
) -> Iterator[tuple[TestClient, str]]:
    """The app over the store, with ``user`` (finance user fay unless said) signed in with a
    password and a second factor: the client and its CSRF token."""
    with store.work() as session:
        set_password(session, user, PASSWORD, actor=world["admin"], now=NOW, must_change=False)
        secret = enrol_second_factor(session, user, actor=world["admin"], now=NOW)
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        yield client, _signed_in(client, user, secret)


def test_a_balance_use_is_requested_on_the_customer_page_and_decided_in_the_inbox(
    store: Store, tmp_path: Path
) -> None:
    world = _world(store, tmp_path, _form("rebate_balance"))
    settlement_id = world.propose()
    world.approve(settlement_id, "amy")
    world.pay(settlement_id)
    secrets = {}
    with store.work() as session:
        for code in ("fay", "fred"):
            set_password(session, code, PASSWORD, actor=world["admin"], now=NOW, must_change=False)
            secrets[code] = enrol_second_factor(session, code, actor=world["admin"], now=NOW)
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        csrf = _signed_in(client, "fay", secrets["fay"])
        page = client.get("/customers/C1").text
        key = re.search(r'name="key" value="([^"]+)"', page)
        assert key is not None
        asked = client.post(
            "/customers/C1/balance-uses",
            data={"amount": "150.00", "order_reference": "SO-77", "key": key[1], "csrf": csrf},
        )
        flash = re.search(r'data-testid="(done|error)">([^<]*)<', asked.text)
        assert flash is not None
        assert flash.group(2) == "已申请使用 1：¥150.00。"  # shown once, then gone
        assert "已申请使用" not in client.get("/customers/C1").text
        assert "SO-77" not in client.get("/inbox").text  # not for the one who asked
        csrf = _signed_in(client, "fred", secrets["fred"])
        inbox = client.get("/inbox").text
        assert "SO-77" in inbox
        use_key = re.search(r'name="key" value="([^"]+-1)"', inbox)
        assert use_key is not None
        decided = client.post(
            "/inbox/uses/1", data={"decision": "approve", "key": use_key[1], "csrf": csrf}
        )
        assert "使用申请 1 已处理。" in decided.text
        statement = client.get("/customers/C1").text
        assert "可用 ¥50.00，锁定 ¥0.00" in statement


def test_pages_show_and_allow_what_the_api_would(store: Store, tmp_path: Path) -> None:
    """A sales user sees and acts only for assigned customers; another site cannot sign anyone
    out; a bad form value is a readable page, not JSON; absurd terms are a message."""
    world = _world(store, tmp_path, _form("rebate_balance"))
    settlement_id = world.propose()
    world.approve(settlement_id, "amy")
    world.pay(settlement_id)
    with store.work() as session:
        set_password(session, "sam", PASSWORD, actor=world["admin"], now=NOW, must_change=False)
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        client.post("/signin", data={"user": "sam", "password": PASSWORD})
        page = client.get("/settlements").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        assert f'data-settlement="{settlement_id}"' not in page  # C1 is not sam's
        assert client.get("/customers/C1").status_code == 404
        refused = client.post(
            "/customers/C1/balance-uses",
            data={"amount": "10.00", "order_reference": "SO-1", "key": "k", "csrf": csrf[1]},
        )
        assert refused.status_code == 404
        bad = client.post(
            "/customers/C1/balance-uses",
            data={"amount": "1,000.00", "order_reference": "SO-1", "key": "k", "csrf": csrf[1]},
        )
        # A form that does not pass validation goes back to its page, which says why in the
        # reader's language; nothing is stored.
        bad = client.post(
            "/customers/C1/balance-uses",
            data={"amount": "1,000.00", "order_reference": "SO-1", "key": "k", "csrf": csrf[1]},
            headers={"referer": "https://testserver/customers/C1"},
        )
        assert bad.url.path == "/customers/C1"
        invalid = re.search(r'data-testid="invalid">([^<]*)<', bad.text)
        assert invalid is not None
        assert html.unescape(invalid[1]) == "表单未被接受：金额：不是数字"  # the field's label
        # A bad address: the page without its bad part, or the 404 page.
        listed = client.get("/customers?offset=abc")
        assert listed.url.path == "/customers"
        assert "offset：不是整数" in listed.text
        nowhere = client.get("/no-such-page")
        assert nowhere.status_code == 404
        assert "没有这个页面，或您无权查看。" in nowhere.text
        deep = client.post("/agreements/check", data={"terms": "[" * 5000})
        assert "条款嵌套层级过深" in deep.text
        # A cross-site form cannot sign sam out: without the token nothing happens.
        client.post("/signout", data={})
        assert client.get("/dashboard").status_code == 200
        client.post("/signout", data={"csrf": csrf[1]})
        assert client.get("/dashboard").url.path == "/signin"


def test_a_red_invoice_names_the_original_lines_on_the_page(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path, _form("red_invoice"))
    settlement_id = world.propose()
    world.approve(settlement_id, "amy")
    with _signed_in_as(store, tmp_path, world) as (client, csrf):
        page = client.get("/settlements").text
        assert 'name="original_lines"' in page
        key = re.search(rf'name="key" value="([^"]+)-{settlement_id}"', page)
        assert key is not None
        form = {"document_number": "HZ-1", "key": f"{key[1]}-{settlement_id}", "csrf": csrf}
        wrong = client.post(
            f"/settlements/{settlement_id}/pay", data={**form, "original_lines": "L1, L2"}
        )
        error = re.search(r'data-testid="error">([^<]*)<', wrong.text)
        assert error is not None
        assert error[1] == (
            f"支付结算 {settlement_id} 未能完成：(1) 原发票行 L2 不是 C1 在有效批次中的销售行"
        )
        paid = client.post(
            f"/settlements/{settlement_id}/pay", data={**form, "original_lines": "L1"}
        )
        assert f"结算 {settlement_id} 已支付。" in paid.text
    with store.work() as session:
        payout = session.scalar(select(Payout).where(Payout.settlement_id == settlement_id))
        assert payout is not None
        assert (payout.form, payout.original_invoices) == ("red_invoice", ["L1"])


def test_a_clawback_is_paid_on_the_page_by_offset(store: Store, tmp_path: Path) -> None:
    """A transfer agreement that allows claw-backs: after a return, the approved negative
    settlement is offered for payment by offset against receivables, with no bank account."""
    world = _world(store, tmp_path, _form("bank_transfer", clawback=True))
    account = world.verified_account("C1")
    first = world.propose()
    world.approve(first, "amy")
    world.pay(first, bank_account_id=account)
    world.sales(("R1", "C1", "P1", "2026-03-25", "-5", "-5000.00"))
    world.accrue()
    claw = world.propose(key="claw")
    world.approve(claw, "amy")
    with _signed_in_as(store, tmp_path, world) as (client, csrf):
        page = client.get("/settlements").text
        row = re.search(rf'<tr data-settlement="{claw}"[^>]*>(.*?)</tr>', page, re.S)
        assert row is not None
        assert '<td class="text-end">-¥100.00</td>' in row[1]
        note = re.search(r'data-testid="clawback">([^<]*)<', row[1])
        assert note is not None
        assert note[1] == "追回：由客户偿还，方式为冲抵应收。"
        assert 'name="bank_account"' not in row[1]  # no account: money is never pulled
        key = re.search(rf'name="key" value="([^"]+-{claw})"', row[1])
        assert key is not None
        paid = client.post(f"/settlements/{claw}/pay", data={"key": key[1], "csrf": csrf})
        assert f"结算 {claw} 已支付。" in paid.text
    with store.work() as session:
        payout = session.scalar(select(Payout).where(Payout.settlement_id == claw))
        assert payout is not None
        assert (payout.form, payout.amount, payout.bank_account_id) == (
            "receivable_offset",
            Decimal("-100.00"),
            None,
        )


def test_a_quantity_basis_is_shown_in_units(store: Store, tmp_path: Path) -> None:
    """A per-unit programme (¥0.50 per unit sold): the basis is a count of units, not money,
    on the customer's page and on the accrual run's page."""
    per_unit = percent_agreement().model_copy(
        update={
            "rebate": Rebate.model_validate(
                {"form": "per_unit", "basis": "quantity", "tiers": [{"from": "0", "rate": "0.5"}]}
            )
        }
    )
    world = _world(store, tmp_path, per_unit)  # C1 buys 10 units, C2 one
    with _signed_in_as(store, tmp_path, world) as (client, _csrf):
        page = client.get("/customers/C1").text
        row = re.search(r'data-testid="statement".*?<tbody>\s*<tr>(.*?)</tr>', page, re.S)
        assert row is not None
        cells = [
            re.sub(r"<[^>]+>", "", c).strip()
            for c in re.findall(r"<td[^>]*>(.*?)</td>", row[1], re.S)
        ]
        assert cells[2:6] == ["10 件", "1", "每件 ¥0.50", "¥5.00"]
        why = re.search(r'data-testid="explanation"[^>]*>(.*?)</pre>', page, re.S)
        assert why is not None
        assert "达到阶梯：第 1 档 [0, ∞)，费率 0.50 元/件（阶梯值 10）" in why[1].splitlines()
        run = client.get("/accruals/1").text
        assert '<td class="text-end">10 件</td>' in run


def test_customer_search_takes_what_is_typed_literally(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path, _form("credit_note"))
    with _signed_in_as(store, tmp_path, world) as (client, _csrf):

        def found(q: str) -> list[str]:
            page = client.get("/customers", params={"q": q}).text
            return re.findall(r'<tr><td><a href="/customers/(\w+)">', page)

        assert found("c") == ["C1", "C2", "C3"]
        assert found("2") == ["C2"]
        assert found("%") == []  # a percent sign, not "anything"
        assert found("_") == []
        assert found("华东") == ["C1"]


def test_a_running_period_is_disputed_in_the_portal_not_signed_off(
    store: Store, tmp_path: Path
) -> None:
    """A quarter that contains today: the portal lists its statement as running, offers only a
    dispute, and asks for a comment in the reader's language."""
    today = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
    quarter = dt.date(today.year, (today.month - 1) // 3 * 3 + 1, 1)
    world = World(store, tmp_path)
    world.agreement(percent_agreement(start=f"{today.year}-01-01", end=f"{today.year + 1}-01-01"))
    world.sales(("L1", "C1", "P1", today.isoformat(), "10", "10000.00"))
    world.accrue(today.isoformat())
    with store.work() as session:
        create_user(session, "c1", name="C1", roles=["customer"], customer_code="C1",
                    actor=world["admin"], now=NOW)  # fmt: skip
        set_password(session, "c1", PASSWORD, actor=world["admin"], now=NOW, must_change=False)
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        client.post("/signin", data={"user": "c1", "password": PASSWORD})
        portal = client.get("/portal").text
        assert "进行中，至" in portal  # listed as running, with its last day
        page = client.get(f"/portal/statements/{quarter}").text
        assert 'value="signed_off"' not in page
        assert re.search(
            r'data-testid="running">本期至 \d{4}年\d{1,2}月\d{1,2}日 结束；结束后即可确认。<', page
        )
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        empty = client.post(
            f"/portal/statements/{quarter}",
            data={"decision": "disputed", "comment": " ", "csrf": csrf[1]},
        )
        refusal = re.search(r'data-testid="error">([^<]*)<', empty.text)
        assert refusal is not None
        assert refusal[1] == "提出异议需填写说明：请写明哪里有误。"
        disputed = client.post(
            f"/portal/statements/{quarter}",
            data={"decision": "disputed", "comment": "数量不对", "csrf": csrf[1]},
        )
        assert "数量不对" in disputed.text
        # The portal's list says which statements were answered, and how.
        answer = re.search(r'data-testid="answer">([^<]*)<', client.get("/portal").text)
        assert answer is not None
        day = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
        assert answer[1] == f"· {day.year}年{day.month}月{day.day}日有异议"
        # A day that starts no statement of this customer (or one to come) is no page at all.
        for day in ("2026-02-01", "2030-01-01"):
            forged = client.post(
                f"/portal/statements/{day}",
                data={"decision": "disputed", "comment": "x", "csrf": csrf[1]},
            )
            assert forged.status_code == 404
    # Finance finds the dispute in its inbox: who, which period, what they said.
    with _signed_in_as(store, tmp_path, world) as (client, fay_csrf):
        inbox = client.get("/inbox").text
        disputes = re.search(r'data-testid="disputes">(.*?)</table>', inbox, re.S)
        assert disputes is not None
        assert "数量不对" in disputes[1]
        assert f"{quarter.year}年{quarter.month}月1日" in disputes[1]
        assert '<a href="/customers/C1">C1</a>' in disputes[1]
        # The period opens the statement as the customer sees it, with the dispute waiting.
        statement_page = f"/customers/C1/statements/{quarter}"
        assert f'<a href="{statement_page}">' in disputes[1]
        page = client.get(statement_page).text
        assert 'data-testid="waiting-answer"' in page
        unknown = client.get(f"/customers/ZZZ/statements/{quarter}")
        assert (unknown.status_code, unknown.headers["content-type"]) == (
            404,
            "text/html; charset=utf-8",
        )
        assert 'href="/inbox"' in page
        # ... and answers it there: the numbers stand, and why. The dispute leaves the inbox.
        dispute_id = re.search(r'data-testid="answer-(\d+)"', disputes[1])
        assert dispute_id is not None
        empty = client.post(
            f"/inbox/disputes/{dispute_id[1]}",
            data={"outcome": "upheld", "comment": " ", "csrf": fay_csrf},
        )
        assert "答复异议需填写说明" in empty.text
        answered = client.post(
            f"/inbox/disputes/{dispute_id[1]}",
            data={"outcome": "upheld", "comment": "数量按出库单计", "csrf": fay_csrf},
        )
        inbox = answered.text
        assert "异议已答复。" in inbox
        assert 'data-testid="disputes"' not in inbox
        again = client.post(
            f"/inbox/disputes/{dispute_id[1]}",
            data={"outcome": "correcting", "comment": "x", "csrf": fay_csrf},
        )
        assert f"异议 {dispute_id[1]} 已经答复过" in again.text
        # The whole exchange, on the staff's page of the statement: who said what, in order.
        page = client.get(statement_page).text
        assert 'data-testid="waiting-answer"' not in page
        thread = re.search(r'data-testid="thread">(.*?)</ol>', page, re.S)
        assert thread is not None
        said = [" ".join(re.sub(r"<[^>]+>", "", item).split()) for item in thread[1].split("</li>")]
        now = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
        on = f"{now.year}年{now.month}月{now.day}日"
        assert said[:1] == [
            f"{on}有异议 · c1 — 数量不对 我方于 {on} 答复：维持原数 · fay — 数量按出库单计"
        ]
        # The customer's page lists its period statements, each opening the same page.
        assert f'href="{statement_page}"' in client.get("/customers/C1").text
    # The customer reads the answer beside its dispute, and may dispute again.
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        client.post("/signin", data={"user": "c1", "password": PASSWORD})
        day = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
        listed = re.search(r'data-testid="answer">([^<]*)<', client.get("/portal").text)
        assert listed is not None
        day_text = f"{day.year}年{day.month}月{day.day}日"
        assert listed[1] == f"· {day_text}有异议 · {day_text}已答复"
        page = client.get(f"/portal/statements/{quarter}").text
        reply = re.search(r'data-testid="reply">([^<]*)<', page)
        assert reply is not None
        assert (
            reply[1]
            == f"我方于 {day.year}年{day.month}月{day.day}日 答复：维持原数 — 数量按出库单计"
        )
        assert 'value="disputed"' in page
        # It disputes again; while that waits for an answer the page offers no second one.
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        client.post(
            f"/portal/statements/{quarter}",
            data={"decision": "disputed", "comment": "出库单 DN-30", "csrf": csrf[1]},
        )
        page = client.get(f"/portal/statements/{quarter}").text
        assert 'value="disputed"' not in page
        assert 'data-testid="waiting"' in page
    # The salesperson of C1 finds the new dispute in its inbox, with the form to answer it.
    with store.work() as session:
        assign(session, "C1", "sam", actor=world["admin"], now=NOW)
        set_password(session, "sam", PASSWORD, actor=world["admin"], now=NOW, must_change=False)
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        client.post("/signin", data={"user": "sam", "password": PASSWORD})
        inbox = client.get("/inbox")
        assert inbox.status_code == 200
        assert "出库单 DN-30" in inbox.text
        assert re.search(r'data-testid="answer-\d+"', inbox.text)
    # New numbers: the portal says the answers were to earlier ones; the thread keeps them.
    world.sales(("L2", "C1", "P1", today.isoformat(), "1", "1000.00"))
    world.accrue(today.isoformat())
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        client.post("/signin", data={"user": "c1", "password": PASSWORD})
        assert 'data-testid="outdated"' in client.get("/portal").text
        page = client.get(f"/portal/statements/{quarter}").text
        thread = re.search(r'data-testid="thread">(.*?)</ol>', page, re.S)
        assert thread is not None
        assert thread[1].count('data-testid="earlier"') == 2  # both disputes, to old numbers
        assert "数量按出库单计" in thread[1]  # the company's answer is still there
        assert 'value="disputed"' in page  # the new numbers are answered afresh


def test_the_language_switch_returns_to_a_page_that_can_be_shown(
    store: Store, tmp_path: Path
) -> None:
    """From the answer to a form (a POST path) to the nearest page above it; a page's own query
    (a search, a filter) is kept."""
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))
    with TestClient(create_app(settings), base_url="https://testserver") as client:

        def back(to: str) -> str:
            switched = client.get("/lang/en", params={"back": to}, follow_redirects=False)
            assert switched.status_code == 303
            return str(switched.headers["location"])

        assert back("/agreements/11/submit") == "/agreements"
        assert back("/portal/password") == "/portal"
        assert back("/tokens") == "/"
        assert back("/accruals/1?q=ECOM-M") == "/accruals/1?q=ECOM-M"
        assert back("/audit?status=open") == "/audit?status=open"
        assert back("//evil.example/") == "/"


def test_a_settlement_whose_inputs_changed_is_refreshed_on_the_page(
    store: Store, tmp_path: Path
) -> None:
    world = _world(store, tmp_path, _form("credit_note"))
    settlement_id = world.propose()  # 2% of 10,000.00
    world.sales(("L9", "C1", "P1", "2026-03-01", "1", "1000.00"))
    world.accrue()  # now 2% of 11,000.00
    with _signed_in_as(store, tmp_path, world) as (client, csrf):
        page = client.get("/settlements").text
        assert f'data-testid="refresh-{settlement_id}"' in page
        # The row says the amount shown is no longer what is due.
        assert _alert(page, f"outdated-{settlement_id}") == "现为 ¥220.00：请刷新"
        refreshed = client.post(f"/settlements/{settlement_id}/refresh", data={"csrf": csrf})
        assert f'data-testid="outdated-{settlement_id}"' not in refreshed.text
        assert _alert(refreshed.text, "done") == f"结算 {settlement_id} 已刷新：现为 ¥220.00。"
        again = client.post(f"/settlements/{settlement_id}/refresh", data={"csrf": csrf})
        assert _alert(again.text, "error") == f"结算 {settlement_id}：其依据没有变化"
    assert world.settlement(settlement_id).amount == Decimal("220.00")


def test_a_service_refusal_is_said_in_the_readers_language(store: Store, tmp_path: Path) -> None:
    """Paying a credit note without its number: the service refuses with its problems; the page
    says them in Chinese (or English), the API and the log keep the English sentence."""
    world = _world(store, tmp_path, _form("credit_note"))
    settlement_id = world.propose()
    world.approve(settlement_id, "amy")
    with _signed_in_as(store, tmp_path, world) as (client, csrf):
        page = client.get("/settlements").text
        key = re.search(rf'name="key" value="([^"]+-{settlement_id})"', page)
        assert key is not None
        form = {"key": key[1], "csrf": csrf}
        refused = client.post(f"/settlements/{settlement_id}/pay", data=form)
        error = re.search(r'data-testid="error">([^<]*)<', refused.text)
        assert error is not None
        assert error[1] == f"支付结算 {settlement_id} 未能完成：(1) 折让（贷项通知）支付需要单据号"
        client.get("/lang/en?back=/settlements")
        refused = client.post(f"/settlements/{settlement_id}/pay", data=form)
        error = re.search(r'data-testid="error">([^<]*)<', refused.text)
        assert error is not None
        assert error[1] == (
            f"Paying settlement {settlement_id} is blocked: (1) a Credit note payout needs its "
            "document number"
        )


def test_more_refusals_are_said_in_the_readers_language(store: Store, tmp_path: Path) -> None:
    """Paying a settlement not yet approved, a token with a role its maker does not hold, voiding
    a batch that is not there, assigning a finding without an auditor's role: each refusal in
    Chinese, its status and roles named as the pages name them; English pages say it in
    English."""
    world = _world(store, tmp_path, _form("credit_note"))
    settlement_id = world.propose()
    with _signed_in_as(store, tmp_path, world) as (client, csrf):
        refused = client.post(
            f"/settlements/{settlement_id}/pay", data={"key": "early", "csrf": csrf}
        )
        assert _alert(refused.text, "error") == f"结算 {settlement_id} 的状态为“已提议”，不能支付"
        refused = client.post("/tokens", data={"name": "ERP", "role": "approver", "csrf": csrf})
        assert _alert(refused.text, "error") == "fay 不能给令牌授予自己没有的角色：审批人"
        refused = client.post("/imports/9999/void", data={"reason": "wrong file", "csrf": csrf})
        assert _alert(refused.text, "error") == "没有销售批次 9999"
        assign = {"action": "assign", "owner": "ivan", "csrf": csrf}
        refused = client.post("/audit/findings/1", data=assign)
        assert _alert(refused.text, "error") == "fay 无权指派审计发现：需要内部审计或管理员角色"
        client.get("/lang/en?back=/audit")
        refused = client.post("/audit/findings/1", data=assign)
        assert _alert(refused.text, "error") == (
            "fay may not assign findings: it needs the role Internal auditor or Administrator"
        )


def test_a_void_on_the_page_names_the_returns_it_leaves(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path, _form("credit_note"))
    sold = world.sales(("L9", "C1", "P1", "2026-03-01", "2", "200.00"))
    header = ("line_id", "customer_id", "product_id", "invoice_date", "quantity", "net_amount")
    with store.work() as session:
        returned = import_sales(
            session,
            store.facts,
            write_csv(
                tmp_path / "returns.csv",
                (*header, "原发票行"),
                [("R9", "C1", "P1", "2026-03-05", "-1", "-100.00", "L9")],
            ),
            actor=staff("ann"),
            now=NOW,
        ).batch_id
    with _signed_in_as(store, tmp_path, world) as (client, csrf):
        page = client.post(f"/imports/{sold}/void", data={"reason": "wrong file", "csrf": csrf})
        assert _alert(page.text, "voided").startswith(f"批次 {sold} 已作废")
        assert _alert(page.text, "returns-left") == (
            f"其他批次中有 1 笔退货引用了本批次的行（R9 ({returned})）：在重新导入这些销售或同样"
            "作废这些退货之前，它们会继续减少返利。"
        )
        # the batch list says when, by whom and why the batch was voided
        assert _alert(page.text, "void-reason").endswith(" · fay: wrong file")


def test_the_policy_page_shows_what_the_policy_says(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path, _form("credit_note"))
    with _signed_in_as(store, tmp_path, world) as (client, _csrf):
        page = client.get("/policy").text
    limits = re.search(r'<pre class="small">(.*?)</pre>', page, re.S)
    assert limits is not None
    assert "null" not in limits[1]  # no empty defaults, only what was published
    assert "- max_percent: &#39;10&#39;" in limits[1]
    assert "- segment: 零售\n  max_percent: &#39;5&#39;" in limits[1]


def test_a_blocked_submission_says_every_reason_in_the_readers_language(
    store: Store, tmp_path: Path
) -> None:
    """A draft without its contract and above the policy's limit (5%: a programme for every
    customer can pay the 零售 segment), submitted without a justification: the compliance
    check's reasons, numbered, in Chinese and in English."""
    world = _world(store, tmp_path)
    with store.work() as session:
        draft = add_version(
            session, percent_agreement("A2", rate="12", contract=None), actor=world["sam"], now=NOW
        )
    with _signed_in_as(store, tmp_path, world) as (client, csrf):
        refused = client.post(f"/agreements/{draft.id}/submit", data={"csrf": csrf})
        assert _alert(refused.text, "error") == (
            "协议 A2 第 1 版未通过合规检查：(1) 条款未附合同（须填写已签署文件的编号 reference 与 "
            "document_sha256）；(2) 第 1 档费率 12% 高于政策上限 5%：偏离政策须附书面理由"
        )
        client.get("/lang/en?back=/agreements")
        refused = client.post(f"/agreements/{draft.id}/submit", data={"csrf": csrf})
        assert _alert(refused.text, "error") == (
            "Agreement A2 version 1 is blocked: (1) the terms carry no contract (reference and "
            "document_sha256 of the signed document); (2) band 1 rate 12% is above the policy "
            "limit 5%: a deviation needs a written justification"
        )
        # The refused draft is corrected in place: opened in the editor, saved, submitted.
        assert 'data-testid="edit-draft"' in client.get("/agreements").text
        opened = client.get(f"/agreements?edit={draft.id}").text
        assert "id: A2" in html.unescape(opened)
        corrected = (
            "id: A2\nterm: {start: 2026-01-01, end: 2027-01-01}\n"
            "rebate: {tiers: [{from: 0, rate: 2.5}]}\n"
            f"contract: {{reference: HT-2026-002, document_sha256: {'cd' * 32}}}\n"
        )
        saved = client.post("/agreements", data={"terms": corrected, "csrf": csrf})
        assert "Draft A2 v1 updated." in saved.text
        with store.work() as session:
            version = session.get(AgreementVersion, draft.id)
            assert version is not None
            assert (version.status, version.terms["rebate"]["tiers"][0]["rate"]) == ("draft", "2.5")
        submitted = client.post(f"/agreements/{draft.id}/submit", data={"csrf": csrf})
        assert submitted.url.path == "/agreements"
        assert _alert(submitted.text, "done") == "Version submitted: it waits for its approvals."
        assert client.get("/agreements?edit=999999").status_code == 404
        with store.work() as session:
            version = session.get(AgreementVersion, draft.id)
            assert version is not None
            assert version.status == "submitted"
            set_password(session, "amy", PASSWORD, actor=world["admin"], now=NOW, must_change=False)
            secret = enrol_second_factor(session, "amy", actor=world["admin"], now=NOW)
        # The approver finds it in the inbox, and sends it back with a reason.
        amy_csrf = _signed_in(client, "amy", secret)
        client.get("/lang/zh_CN?back=/inbox")
        inbox = client.get("/inbox").text
        assert '<a href="/agreements/A2/review">协议 A2 第 1 版待审</a>' in inbox
        review_page = client.get("/agreements/A2/review").text
        assert 'data-testid="reject"' in review_page
        who = re.search(r'data-testid="review-who">(.*?)</p>', review_page, re.S)
        assert who is not None
        said = " ".join(who[1].split())  # whom it pays, under which contract, who submitted it
        assert re.fullmatch(
            r"返利方案：每个符合条件的客户各自为受益方 · 合同：\S+ · fay 于 \S+ 提交", said
        )
        path = f"/agreements/A2/review/{draft.id}/reject"
        refused = client.post(path, data={"reason": " ", "csrf": amy_csrf})
        assert _alert(refused.text, "error") == "退回草稿须填写原因"
        sent = client.post(path, data={"reason": "合同编号不对", "csrf": amy_csrf})
        assert _alert(sent.text, "done") == "版本已退回草稿。"
        # The agreements page says why the draft came back, beside it.
        day = dt.datetime.now(ZoneInfo("Asia/Shanghai"))  # the page acts on the real clock
        back = re.search(
            rf'data-testid="sent-back-{draft.id}">([^<]*)<', client.get("/agreements").text
        )
        assert back is not None
        assert back[1] == f"amy 于 {day.year}年{day.month}月{day.day}日 驳回：合同编号不对"
    with store.work() as session:
        version = session.get(AgreementVersion, draft.id)
        assert version is not None
        assert version.status == "draft"


def test_the_editors_live_check_speaks_the_readers_language(store: Store, tmp_path: Path) -> None:
    """The terms editor's check: Fanli's rules and pydantic's checks, each problem where it is
    and in the reader's language; a decimal written plainly (2.5) is the exact decimal."""
    world = _world(store, tmp_path)
    terms = (
        "id: X\nterm: {start: 2026-01-01, end: 2027-01-01}\n"
        "rebate: {tiers: [{from: 0, to: 100, rate: 2.5}, {from: 200, rate: 3}], method: %s}\n"
        "colour: blue\n"
    )
    with _signed_in_as(store, tmp_path, world) as (client, _csrf):

        def problems(text: str) -> list[str]:
            checked = client.post("/agreements/check", data={"terms": text}).text
            return [html.unescape(p) for p in re.findall(r"<li>([^<]*)</li>", checked)]

        assert problems(terms % "bogus") == [
            "rebate.method：须为以下之一：'whole_volume'、'marginal'、'rolling'、'all_reached'",
            "colour：未知字段",
        ]
        assert problems(terms.replace("colour: blue\n", "") % "marginal") == [
            "rebate.tiers[1]：100 与 200 之间有空档"
        ]
        valid = terms.replace("colour: blue\n", "").replace("200", "100") % "marginal"
        said = client.post("/agreements/check", data={"terms": valid}).text
        assert "条款有效" in said
        # Valid, but the policy would still refuse its submission: said now, not at submit.
        assert 'data-testid="to-submit">提交前还需：' in said
        assert problems(valid) == [
            "条款未附合同（须填写已签署文件的编号 reference 与 document_sha256）"
        ]
        signed = valid + f'contract: {{reference: "HT-1", document_sha256: "{"ab" * 32}"}}\n'
        ready = client.post("/agreements/check", data={"terms": signed}).text
        assert "条款有效" in ready
        assert "to-submit" not in ready
        client.get("/lang/en?back=/agreements")
        assert problems(terms % "bogus") == [
            "rebate.method: must be one of 'whole_volume', 'marginal', 'rolling' or 'all_reached'",
            "colour: unknown field",
        ]
        assert problems("id: X\nterm: [") == [
            # among problems that open with field names, as they do
            "not valid YAML or JSON at line 2, column 8 (the text ends where a value is expected)"
        ]
        assert problems("a: " + "[" * 5000 + "]" * 5000) == ["the terms are nested too deeply"]
        client.get("/lang/zh_CN?back=/agreements")
        assert problems('{"id": "X",}') == [
            "第 1 行第 12 列起不是有效的 YAML 或 JSON（此处应为双引号括起的字段名）"
        ]
        # a reason the pages have no words for is shown as the parser gave it
        assert problems("? [1]\n: 2") == [
            "第 1 行第 3 列起不是有效的 YAML 或 JSON（found unhashable key）"
        ]
        # an impossible day was Python's own error, and the page's 500
        assert problems("id: X\nterm: {start: 2026-02-30, end: 2027-01-01}") == [
            "第 2 行第 15 列起不是有效的 YAML 或 JSON（2026-02-30 不是有效的日期）"
        ]


def _alert(page: str, kind: str) -> str:
    found = re.search(rf'data-testid="{kind}">([^<]*)<', page)
    assert found is not None, kind
    return html.unescape(found[1])


def test_a_new_second_factor_replaces_the_old_one_only_when_confirmed(
    store: Store, tmp_path: Path
) -> None:
    world = _world(store, tmp_path)
    with store.work() as session:
        set_password(session, "fay", PASSWORD, actor=world["admin"], now=NOW, must_change=False)
        old = enrol_second_factor(session, "fay", actor=world["admin"], now=NOW)
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))

    def stored() -> str | None:
        with store.work() as session:
            return session.scalar(select(User.totp_secret).where(User.code == "fay"))

    with TestClient(create_app(settings), base_url="https://testserver") as client:
        csrf = _signed_in(client, "fay", old)
        page = client.post("/second-factor", data={"csrf": csrf}).text
        new = re.search(r'data-testid="secret">([A-Z2-7]{32})<', page)
        assert new is not None
        assert 'data-testid="confirm"' in page
        assert stored() == old  # shown, not yet in use
        wrong = client.post(
            "/second-factor/confirm", data={"secret": new[1], "code": "000000", "csrf": csrf}
        )
        assert _alert(wrong.text, "error") == "验证码与新密钥不符；仍使用当前的验证器"
        assert stored() == old
        confirmed = client.post(
            "/second-factor/confirm",
            data={"secret": new[1], "code": fresh_code(new[1]), "csrf": csrf},
        )
        assert confirmed.url.path == "/signin"
        assert _alert(confirmed.text, "done") == (
            "新的验证器已启用。请使用应用显示的下一个验证码登录：刚才输入的验证码已用过。"
        )
        assert stored() == new[1]
        assert _signed_in(client, "fay", new[1])  # the new authenticator signs in


def test_an_approval_says_who_still_has_to_approve(store: Store, tmp_path: Path) -> None:
    """A deviation needs the approver and compliance: after the approver, the page names the
    step still open."""
    world = _world(store, tmp_path)
    with store.work() as session:
        draft = add_version(session, percent_agreement("A3", rate="8"), actor=world["sam"], now=NOW)
        review.submit(session, draft.id, justification="新渠道", actor=world["sam"], now=NOW)
        set_password(session, "amy", PASSWORD, actor=world["admin"], now=NOW, must_change=False)
        secret = enrol_second_factor(session, "amy", actor=world["admin"], now=NOW)
        terms_hash = draft.terms_hash
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        csrf = _signed_in(client, "amy", secret)
        approved = client.post(
            f"/agreements/A3/review/{draft.id}", data={"terms_hash": terms_hash, "csrf": csrf}
        )
        assert _alert(approved.text, "done") == "版本已批准，仍待以下审批：合规 ×1。"


def test_a_draft_is_discarded_from_the_agreements_page(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)
    with store.work() as session:
        draft = add_version(session, percent_agreement("A3", rate="3"), actor=world["sam"], now=NOW)
    with _signed_in_as(store, tmp_path, world) as (client, csrf):
        page = client.get("/agreements").text
        assert f'data-testid="discard-{draft.id}"' in page
        no_reason = client.post(f"/agreements/{draft.id}/discard", data={"csrf": csrf})
        assert _alert(no_reason.text, "error") == "放弃草稿须说明原因"
        assert f'data-testid="discard-{draft.id}"' in no_reason.text  # still there
        done = client.post(
            f"/agreements/{draft.id}/discard", data={"reason": "试算用的草稿", "csrf": csrf}
        )
        assert (done.url.path, _alert(done.text, "done")) == ("/agreements", "草稿 A3 v1 已放弃。")
        assert 'href="/agreements/A3/review"' not in done.text  # gone from the list
        assert 'href="/agreements/A1/review"' in done.text  # the active one stays
        again = client.post(f"/agreements/{draft.id}/discard", data={"reason": "x", "csrf": csrf})
        assert _alert(again.text, "error") == "A3 第 1 版的状态为“已放弃”，不是草稿"
        # An Edit link opened before it was discarded says so, on the list.
        stale = client.get(f"/agreements?edit={draft.id}")
        assert stale.status_code == 200
        assert _alert(stale.text, "error") == "A3 第 1 版现为“已放弃”，已不是可编辑的草稿。"
        # A discarded agreement has nothing to settle: the settlements page does not offer it.
        offered = re.findall(r"<option[^>]*>(\w+)</option>", client.get("/settlements").text)
        assert "A1" in offered
        assert "A3" not in offered
    with store.work() as session:
        version = session.get(AgreementVersion, draft.id)
        assert version is not None
        assert version.status == "discarded"


def test_the_preview_of_a_new_version_shows_the_version_in_force_beside_it(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(store, tmp_path)
    world.agreement(percent_agreement(start="2027-01-01", end="2028-01-01"))
    world.sales(
        ("L1", "C1", "P1", "2026-02-10", "10", "10000.00"),
        ("L2", "C1", "P1", "2026-08-10", "5", "5000.00"),
        ("L3", "C2", "P1", "2026-09-01", "1", "500.00"),
    )
    terms = (
        "id: A1\nname: programme A1\nterm: {start: 2027-01-01, end: 2028-01-01}\n"
        "effective_from: 2027-07-01\nperiods: {kind: quarter}\n"
        "rebate: {form: percent, basis: net, tiers: [{from: 0, rate: 3}]}\n"
    )
    with _signed_in_as(store, tmp_path, world) as (client, _csrf):
        page = client.post("/agreements/preview", data={"terms": terms}).text
        heads = re.findall(r"<h3[^>]*>(.*?)</h3>", page, re.S)
        assert heads == ["按 2026年7月1日 至 2026年12月31日 的销售，A1 将向 2 个客户支付 ¥165.00。"]
        compared = re.search(r'data-testid="in-force">([^<]*)<', page)
        assert compared is not None
        assert compared[1] == ("同样的销售，现行的第 1 版将支付 ¥110.00：多付 ¥55.00。")
        rows = [
            [
                re.sub(r"<[^>]+>", "", cell).strip()
                for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)
            ]
            for row in re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>")[1], re.S)
        ]
        assert rows == [
            ["C1", "¥5,000.00", "¥150.00", "¥100.00", "+¥50.00"],
            ["C2", "¥500.00", "¥15.00", "¥10.00", "+¥5.00"],
        ]
        # Past the customers listed, the others are one line: no change goes unseen.
        monkeypatch.setattr(previews, "SHOWN", 1)
        page = client.post("/agreements/preview", data={"terms": terms}).text
        rest = re.search(r'<tr[^>]*data-testid="rest">(.*?)</tr>', page, re.S)
        assert rest is not None
        cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in rest[1].split("</td>")][:-1]
        assert cells == ["其余 1 个客户", "", "¥15.00", "¥10.00", "+¥5.00"]


def test_an_id_beyond_the_databases_integers_is_no_page_not_a_server_error(
    store: Store, tmp_path: Path
) -> None:
    """SQLite refuses integers past 64 bits with an exception: every id and number in a page's
    address or form is bounded, so such an address is a page that does not exist."""
    world = _world(store, tmp_path)
    big = "9" * 23
    with _signed_in_as(store, tmp_path, world) as (client, csrf):
        for path in (
            f"/settlements/{big}/workings/0",
            f"/accruals/{big}",
            f"/accruals/{big}/explain?agreement=A1&version=1&customer=C1&period=1",
        ):
            assert client.get(path).status_code == 404, path
        for path in (f"/agreements?edit={big}", f"/customers?offset={big}"):
            answer = client.get(path)
            assert (answer.status_code, answer.url.path) == (200, path.split("?")[0]), path
        for path in (
            f"/agreements/{big}/discard",
            f"/settlements/{big}/reject",
            f"/settlements/{big}/refresh",
            f"/imports/{big}/void",
        ):
            assert client.post(path, data={"reason": "x", "csrf": csrf}).status_code == 404, path


def test_a_user_changes_their_own_password_given_the_present_one(
    store: Store, tmp_path: Path
) -> None:
    world = _world(store, tmp_path)
    with _signed_in_as(store, tmp_path, world) as (client, csrf):
        secret = None
        with store.work() as session:
            secret = session.scalar(select(User.totp_secret).where(User.code == "fay"))
        wrong = client.post(
            "/password",
            data={"current": "not it at all", "new": "a" * 12, "repeat": "a" * 12, "csrf": csrf},
        )
        assert _alert(wrong.text, "error") == "当前密码不对"
        short = client.post(
            "/password",
            data={"current": PASSWORD, "new": "short", "repeat": "short", "csrf": csrf},
        )
        assert _alert(short.text, "error") == "密码至少 12 个字符"
        common = client.post(
            "/password",
            data={
                "current": PASSWORD,
                "new": "password1234",
                "repeat": "password1234",
                "csrf": csrf,
            },
        )
        assert _alert(common.text, "error") == (
            "这个密码容易被猜到（常见密码、词语或姓名、键盘上的排列，或您自己的名字），请另选一个"
        )
        same = client.post(
            "/password",
            data={"current": PASSWORD, "new": PASSWORD, "repeat": PASSWORD, "csrf": csrf},
        )
        assert _alert(same.text, "error") == "新密码与当前密码相同；请另选一个"
        changed = client.post(
            "/password",
            data={
                "current": PASSWORD,
                "new": "a new long passphrase",
                "repeat": "a new long passphrase",
                "csrf": csrf,
            },
        )
        assert changed.url.path == "/signin"
        assert _alert(changed.text, "done") == "密码已修改，请用新密码登录。"
        assert secret is not None
        client.post(
            "/signin",
            data={
                "user": "fay",
                "password": "a new long passphrase",
                "totp": fresh_code(secret),
            },
        )
        assert client.get("/inbox").url.path == "/inbox"  # signed in, not sent to /signin


def test_a_password_an_administrator_set_is_changed_at_the_first_sign_in(
    store: Store, tmp_path: Path
) -> None:
    """Staff and customer users alike: until they choose their own password, every page sends
    them to the one that changes it, and the navigation offers nothing else."""
    world = _world(store, tmp_path)
    with store.work() as session:
        create_user(session, "c1", name="C1", roles=["customer"], customer_code="C1",
                    actor=world["admin"], now=NOW)  # fmt: skip
        set_password(session, "c1", PASSWORD, actor=world["admin"], now=NOW)
        set_password(session, "fay", PASSWORD, actor=world["admin"], now=NOW)
        secret = enrol_second_factor(session, "fay", actor=world["admin"], now=NOW)
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))
    new = "fay's own passphrase"
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        signed = client.post(
            "/signin",
            data={"user": "fay", "password": PASSWORD, "totp": fresh_code(secret)},
        )
        assert signed.url.path == "/password"
        assert 'data-testid="must-change"' in signed.text
        assert 'href="/settlements"' not in signed.text  # no way on but the form
        assert 'action="/password"' in signed.text
        for path in ("/settlements", "/dashboard", "/users", "/portal"):
            assert client.get(path).url.path == "/password", path
        htmx = client.get("/settlements", headers={"HX-Request": "true"}, follow_redirects=False)
        assert (htmx.status_code, htmx.headers["HX-Redirect"]) == (204, "/password")
        csrf = re.search(r'name="csrf" value="([^"]+)"', signed.text)
        assert csrf is not None
        # The form's own POST, not another one: a settlement cannot be paid meanwhile.
        paid = client.post("/settlements/1/pay", data={"csrf": csrf[1]}, follow_redirects=False)
        assert (paid.status_code, paid.headers["location"]) == (303, "/password")
        same = client.post(
            "/password",
            data={"current": PASSWORD, "new": PASSWORD, "repeat": PASSWORD, "csrf": csrf[1]},
        )
        assert same.url.path == "/password"
        assert _alert(same.text, "error") == "新密码与当前密码相同；请另选一个"
        changed = client.post(
            "/password", data={"current": PASSWORD, "new": new, "repeat": new, "csrf": csrf[1]}
        )
        assert (changed.url.path, _alert(changed.text, "done")) == (
            "/signin",
            "密码已修改，请用新密码登录。",
        )
        client.post("/signin", data={"user": "fay", "password": new, "totp": fresh_code(secret)})
        assert client.get("/settlements").url.path == "/settlements"

        client.cookies.clear()
        portal = client.post("/signin", data={"user": "c1", "password": PASSWORD})
        assert portal.url.path == "/password"
        assert 'action="/portal/password"' in portal.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', portal.text)
        assert csrf is not None
        short = client.post(
            "/portal/password",
            data={"current": PASSWORD, "new": "short", "repeat": "short", "csrf": csrf[1]},
        )
        assert (short.url.path, _alert(short.text, "error")) == ("/password", "密码至少 12 个字符")
        client.post(
            "/portal/password",
            data={"current": PASSWORD, "new": new, "repeat": new, "csrf": csrf[1]},
        )
        client.post("/signin", data={"user": "c1", "password": new})
        assert client.get("/portal").url.path == "/portal"
    with store.work() as session:
        changes = session.execute(
            select(AuditEvent.actor, AuditEvent.outcome)
            .where(AuditEvent.type == "user.password.set", AuditEvent.entity_id.in_(["c1", "fay"]))
            .order_by(AuditEvent.seq)
        ).all()
    assert [(actor, outcome["change_required"]) for actor, outcome in changes] == [
        ("admin", True),
        ("admin", True),
        ("fay", False),
        ("c1", False),
    ]


def test_a_customer_user_changes_its_password_in_the_portal(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)
    with store.work() as session:
        create_user(session, "c1", name="C1", roles=["customer"], customer_code="C1",
                    actor=world["admin"], now=NOW)  # fmt: skip
        set_password(session, "c1", PASSWORD, actor=world["admin"], now=NOW, must_change=False)
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        client.post("/signin", data={"user": "c1", "password": PASSWORD})
        portal = client.get("/portal").text
        assert 'data-testid="password-form"' in portal
        csrf = re.search(r'name="csrf" value="([^"]+)"', portal)
        assert csrf is not None

        def change(current: str, new: str, repeat: str | None = None) -> Any:
            return client.post(
                "/portal/password",
                data={"current": current, "new": new, "repeat": repeat or new, "csrf": csrf[1]},
            )

        wrong = change("not it at all", "b" * 12)
        assert (wrong.url.path, _alert(wrong.text, "error")) == ("/portal", "当前密码不对")
        differ = change(PASSWORD, "our own passphrase", "our own passphrasf")
        assert _alert(differ.text, "error") == "两次输入的新密码不一致。"
        assert _alert(change(PASSWORD, " " * 12).text, "error") == "密码不能只由空格组成"
        weak = change(PASSWORD, "abababababab")
        assert _alert(weak.text, "error") == "密码至少要包含 5 个不同的字符"
        changed = change(PASSWORD, "our own passphrase")
        assert changed.url.path == "/signin"
        assert _alert(changed.text, "done") == "密码已修改，请用新密码登录。"
        assert client.get("/portal").url.path == "/signin"  # the old session has ended
        old = client.post("/signin", data={"user": "c1", "password": PASSWORD})
        assert old.url.path == "/signin"
        client.post("/signin", data={"user": "c1", "password": "our own passphrase"})
        assert client.get("/portal").url.path == "/portal"
    # The present password cannot be guessed through the form: wrong ones count as refused
    # sign-ins, and after five (two above: a wrong present password, a sign-in with the old
    # one) the form refuses even the right one for a while.
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        client.post("/signin", data={"user": "c1", "password": "our own passphrase"})
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/portal").text)
        assert csrf is not None
        said = []
        for current in ["guess 1", "guess 2", "guess 3", "our own passphrase"]:
            answer = client.post(
                "/portal/password",
                data={"current": current, "new": "d" * 12, "repeat": "d" * 12, "csrf": csrf[1]},
            )
            said.append(_alert(answer.text, "error"))
        assert said == ["当前密码不对"] * 3 + ["密码错误次数过多，请等待 15 分钟"]
    # A staff user has no portal: the form is not theirs to post.
    with _signed_in_as(store, tmp_path, world) as (client, fay_csrf):
        staff = client.post(
            "/portal/password",
            data={"current": PASSWORD, "new": "c" * 12, "csrf": fay_csrf},
        )
        assert staff.status_code == 404


def test_an_open_settlement_of_a_disputed_period_is_marked(store: Store, tmp_path: Path) -> None:
    """Finance sees, beside the settlement it is about to pay, that the customer disputes the
    period's statement, since when and why; the mark goes when the dispute is answered."""
    world = _world(store, tmp_path, _form("credit_note"))
    settlement_id = world.propose()
    with store.work() as session:
        disputed = respond(
            session, store.facts, "C1", dt.date(2026, 1, 1), decision=StatementDecision.DISPUTED,
            comment="INV-9 <缺失>", actor=Actor(id=0, code="c1", roles=frozenset({Role.CUSTOMER}),
            customer_code="C1"), now=NOW,
        )  # fmt: skip
    with _signed_in_as(store, tmp_path, world) as (client, _csrf):
        listed = client.get("/settlements").text
        row = re.search(rf'<tr data-settlement="{settlement_id}"[^>]*>(.*?)</tr>', listed, re.S)
        assert row is not None
        assert (
            '<span class="badge text-bg-warning" data-testid="standing">对账单有争议</span>'
            in (row[1])
        )
        day = NOW.astimezone(ZoneInfo("Asia/Shanghai")).date()
        said = f"客户于 {day.year}年{day.month}月{day.day}日 对本期对账单提出异议，尚未答复："
        assert said + "“INV-9 &lt;缺失&gt;”" in row[1]  # the customer's words, escaped
        with store.work() as session:
            answer_dispute(session, disputed.id, outcome=DisputeOutcome.UPHELD,
                           comment="INV-9 counts in Q2", actor=world["fay"], now=NOW)  # fmt: skip
        assert 'data-testid="standing"' not in client.get("/settlements").text


def test_the_approver_reads_how_the_amount_was_worked_out_in_the_inbox(
    store: Store, tmp_path: Path
) -> None:
    world = _world(store, tmp_path)
    settlement_id = world.propose()
    with store.work() as session:
        set_password(session, "amy", PASSWORD, actor=world["admin"], now=NOW, must_change=False)
        secret = enrol_second_factor(session, "amy", actor=world["admin"], now=NOW)
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        _signed_in(client, "amy", secret)
        inbox = client.get("/inbox").text
        found = re.findall(rf'hx-get="([^"]+)" [^>]*data-testid="workings-{settlement_id}"', inbox)
        assert found == [f"/settlements/{settlement_id}/workings/0"]  # one version's result
        address = found[0]
        why = client.get(address).text
        assert why.startswith('<pre class="small mb-0" data-testid="explanation"')
        # The amount being approved, as the engine reached it.
        assert "全额累进：2% x 10,000.00 = 200.00" in why.splitlines()
        assert client.get(f"/settlements/{settlement_id}/workings/1").status_code == 404
        assert client.get("/settlements/999/workings/0").status_code == 404
    # A salesperson sees the workings of their own customers' settlements only.
    with store.work() as session:
        set_password(session, "sam", PASSWORD, actor=world["admin"], now=NOW, must_change=False)
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        client.post("/signin", data={"user": "sam", "password": PASSWORD})
        assert client.get(address).status_code == 404
        with store.work() as session:
            assign(session, "C1", "sam", actor=world["admin"], now=NOW)
        assert client.get(address).status_code == 200
        settlements = client.get("/settlements").text  # the settlements page links it too
        assert f'hx-get="{address}"' in settlements


def test_finance_finds_approved_settlements_to_pay_in_its_inbox(
    store: Store, tmp_path: Path
) -> None:
    world = _world(store, tmp_path, _form("credit_note"))
    settlement_id = world.propose()
    with _signed_in_as(store, tmp_path, world) as (client, _csrf):
        assert 'data-testid="to-pay"' not in client.get("/inbox").text  # proposed, not approved
        world.approve(settlement_id, "amy")
        inbox = client.get("/inbox").text
        listed = re.search(r'data-testid="to-pay">(.*?)</table>', inbox, re.S)
        assert listed is not None
        assert f'<a href="/settlements#settlement-{settlement_id}">{settlement_id}</a>' in listed[1]
        assert "¥200.00" in listed[1]
        assert "折让（贷项通知）" in listed[1]  # how it will be paid
        assert "没有等待您审批的结算。" in inbox


def test_a_refused_form_comes_back_as_it_was_typed(store: Store, tmp_path: Path) -> None:
    """A proposal for a period with no results yet, and a user whose code is taken: each form comes
    back filled as it was sent, beside the reason."""
    world = _world(store, tmp_path, _form("credit_note"))
    with _signed_in_as(store, tmp_path, world) as (client, csrf):
        page = client.post(
            "/settlements",
            data={"agreement": "A1", "customer": "C1", "period_start": "2026-10-01",
                  "key": "k", "csrf": csrf},
        ).text  # fmt: skip
        assert "没有计提结果" in _alert(page, "error")  # refused: no results for Q4 yet
        assert 'name="customer" value="C1"' in page
        assert 'name="period_start" value="2026-10-01"' in page
        assert "<option selected>A1</option>" in page
        with store.work() as session:
            set_password(
                session, "admin", PASSWORD, actor=world["admin"], now=NOW, must_change=False
            )
            secret = enrol_second_factor(session, "admin", actor=world["admin"], now=NOW)
        admin_csrf = _signed_in(client, "admin", secret)
        taken = client.post(
            "/users",
            data={"code": "fay", "name": "Fay Two", "role": "finance", "customer": "",
                  "csrf": admin_csrf},
        ).text  # fmt: skip
        assert 'name="code" placeholder="用户" value="fay"' in taken
        assert 'value="Fay Two"' in taken
        assert '<option value="finance" selected>' in taken
        # A new user's credentials are shown once, after a redirect: a reload does not post
        # the form again, and the page is not there a second time.
        made = client.post(
            "/users",
            data={"code": "nora", "name": "Nora", "role": "sales", "customer": "",
                  "csrf": admin_csrf},
        )  # fmt: skip
        assert made.url.path.startswith("/users/created/")
        assert 'data-testid="password"' in made.text
        again = client.get(made.url.path)
        assert again.url.path == "/users"
        assert _alert(again.text, "error") == (
            "新用户的初始密码只显示一次，已经显示过了。如果没有记下，请为该用户重新设置密码。"
        )


def test_sign_in_takes_a_code_with_spaces_around_it_and_in_the_six_digits(
    store: Store, tmp_path: Path
) -> None:
    world = _world(store, tmp_path, _form("credit_note"))
    with store.work() as session:
        set_password(session, "fay", PASSWORD, actor=world["admin"], now=NOW, must_change=False)
        secret = enrol_second_factor(session, "fay", actor=world["admin"], now=NOW)
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        code = fresh_code(secret)
        signed = client.post(
            "/signin",
            data={"user": " fay ", "password": PASSWORD, "totp": f"{code[:3]} {code[3:]}"},
        )
        assert signed.url.path == "/dashboard"
        assert '<span class="text-body-secondary small" data-testid="who">fay</span>' in signed.text
        # The same code again, even within its 30 seconds, signs nobody in (RFC 6238, 5.2).
        client.cookies.clear()
        again = client.post("/signin", data={"user": "fay", "password": PASSWORD, "totp": code})
        assert again.url.path == "/signin"
        # Over the API as well, where a code may be written with spaces too.
        replayed = client.post(
            "/api/session", json={"user": "fay", "password": PASSWORD, "totp": code}
        )
        assert replayed.status_code == 401
        fresh = fresh_code(secret)
        spaced = client.post(
            "/api/session",
            json={"user": "fay", "password": PASSWORD, "totp": f"{fresh[:3]} {fresh[3:]}"},
        )
        assert spaced.status_code == 200
        # Full-width digits, as a Chinese input method may type them, are the same digits.
        wide = fresh_code(secret).translate(str.maketrans("0123456789", "０１２３４５６７８９"))
        client.cookies.clear()
        signed = client.post("/signin", data={"user": "fay", "password": PASSWORD, "totp": wide})
        assert signed.url.path == "/dashboard"


def test_an_approver_rejects_a_settlement_from_the_inbox(store: Store, tmp_path: Path) -> None:
    """With a reason, and back to the inbox, which no longer lists it."""
    world = _world(store, tmp_path, _form("credit_note"))
    settlement_id = world.propose()
    with _signed_in_as(store, tmp_path, world, "amy") as (client, csrf):
        assert f'data-testid="reject-{settlement_id}"' in client.get("/inbox").text
        rejected = client.post(
            f"/settlements/{settlement_id}/reject",
            data={"reason": "金额需与客户核对", "back": "/inbox", "csrf": csrf},
        )
        assert rejected.url.path == "/inbox"
        assert _alert(rejected.text, "done") == f"结算 {settlement_id} 已驳回。"
        assert f'data-testid="reject-{settlement_id}"' not in rejected.text
        elsewhere = client.post(
            f"/settlements/{settlement_id}/reject",
            data={"reason": "x", "back": "https://example.com/", "csrf": csrf},
        )
        assert elsewhere.url.host == "testserver"  # refused as a form, never sent elsewhere
        assert "表单未被接受" in elsewhere.text
    settlement = world.settlement(settlement_id)
    assert (settlement.status, settlement.rejection_reason) == ("rejected", "金额需与客户核对")
