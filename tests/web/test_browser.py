"""The web application in a real browser: Playwright driving Debian's Chromium against a real
server (uvicorn, on a free port of 127.0.0.1) over a real SQLite store.

- An approver signs in with the second factor and approves from the inbox.
- A customer sees its own statement with the right amounts, and none of another customer's
  pages.
- Chinese and English both render.
- No page logs a browser console error.

Screenshots of the main pages go to ``test-artifacts/screenshots/``.

Chromium comes from Debian (``apt-get install chromium``; ``make test`` installs it as root).
Without it these tests are skipped with that reason, and under CI they fail instead.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import uvicorn
from pypdf import PdfReader

from fanli.agreements.service import add_version
from fanli.config import Settings
from fanli.customers.service import assign
from fanli.db.migrate import upgrade
from fanli.db.session import make_engine, session_factory, unit_of_work
from fanli.interfaces.api.app import create_app
from fanli.ledger.service import accrue
from fanli.sales.service import import_customers, import_products, import_sales
from fanli.sales.store import FactStore
from fanli.settlements import service as settlements
from fanli.users.auth import enrol_second_factor, set_password
from fanli.users.service import create_user
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
SHOTS = Path(__file__).parents[2] / "test-artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium")


@dataclass
class Site:
    base: str
    secrets: dict[str, str]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A store with two customers, Q1 sales, an accrual, and a settlement for C1 waiting for an
    approver; served by uvicorn in a thread."""
    folder = tmp_path_factory.mktemp("web")
    settings = Settings(data_dir=folder / "data")
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    facts = FactStore(settings.facts_dir)
    secrets: dict[str, str] = {}
    with unit_of_work(sessions) as session:
        who = people(session, NOW)
    # an import comes first in its transaction (the import lock before the audit chain's)
    with unit_of_work(sessions) as session:
        import_customers(session, facts, customers_file(folder), actor=who["fay"], now=NOW)
        create_user(
            session, "c1", name="C1", roles=["customer"], customer_code="C1",
            actor=who["admin"], now=NOW,
        )  # fmt: skip
        create_user(
            session, "c2", name="C2", roles=["customer"], customer_code="C2",
            actor=who["admin"], now=NOW,
        )  # fmt: skip
        for code in ("amy", "c1", "c2", "sam", "fay", "admin"):
            set_password(session, code, PASSWORD, actor=who["admin"], now=NOW, must_change=False)
        for code in ("amy", "fay", "admin"):
            secrets[code] = enrol_second_factor(session, code, actor=who["admin"], now=NOW)
        import_products(session, facts, products_file(folder), actor=who["fay"], now=NOW)
        assign(session, "C1", "sam", actor=who["admin"], now=NOW)  # sam looks after C1 only
        activate(
            session, add_version(session, percent_agreement(), actor=who["sam"], now=NOW).id,
            now=NOW,
        )  # fmt: skip
    lines = [
        ("L1", "C1", "P1", "2026-02-10", "10", "10000.00"),
        ("L2", "C2", "P1", "2026-02-11", "1", "500.00"),
    ]
    with unit_of_work(sessions) as session:
        import_sales(session, facts, sales_file(folder, "s.csv", lines), actor=who["fay"], now=NOW)
    with unit_of_work(sessions) as session:
        accrue(session, facts, as_of=dt.date(2026, 3, 31), actor=who["fay"], now=NOW)
    with unit_of_work(sessions) as session:
        settlements.propose(
            session, facts, agreement_code="A1", beneficiary="C1",
            period_start=dt.date(2026, 1, 1), idempotency_key="web-1",
            actor=who["fay"], now=NOW,
        )  # fmt: skip
    engine.dispose()
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield Site(f"http://127.0.0.1:{port}", secrets)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        reason = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the browser: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only with a browser

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


EXPECTED_404 = "expected_404"  # page attribute: URLs a test visits to see them refused


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(locale="zh-CN")
    opened = context.new_page()
    expected: set[str] = set()
    setattr(opened, EXPECTED_404, expected)
    errors: list[str] = []

    def on_console(message: Any) -> None:
        # A page a test opens to see it refused logs its 404; anything else is an error.
        if message.type == "error" and message.location.get("url") not in expected:
            errors.append(f"{message.location.get('url')}: {message.text}")

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == []  # no page logged a console error


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _sign_in(page: Any, site: Site, user: str, *, totp: bool = False) -> None:
    page.goto(f"{site.base}/signin")
    page.fill("#user", user)
    page.fill("#password", PASSWORD)
    if totp:
        page.fill("#totp", fresh_code(site.secrets[user]))
    page.click("button.btn-primary")


def test_an_approver_signs_in_with_a_second_factor_and_approves(page: Any, site: Site) -> None:
    page.goto(f"{site.base}/signin")
    page.fill("#user", "amy")
    page.fill("#password", PASSWORD)
    page.click("button.btn-primary")  # no second factor: refused, in Chinese
    assert page.locator(".alert-danger").inner_text() == "用户、密码或动态验证码错误。"
    _shot(page, "signin-zh")
    _sign_in(page, site, "amy", totp=True)
    page.wait_for_url(f"{site.base}/dashboard")
    assert page.locator("h1").inner_text() == "概览"
    _shot(page, "dashboard-zh")
    page.click("text=English")
    page.wait_for_url(f"{site.base}/dashboard")
    assert page.locator("h1").inner_text() == "Dashboard"
    assert page.locator("[data-testid=accrued]").inner_text() == "CN¥210.00"
    leaders = page.locator("[data-testid=top-customers] tr").all_inner_texts()
    assert leaders[0].split() == ["C1", "CN¥200.00"]
    _shot(page, "dashboard-en")
    page.goto(f"{site.base}/inbox")
    row = page.locator("tbody tr").first
    assert "C1" in row.inner_text()
    assert "CN¥200.00" in row.inner_text()
    _shot(page, "inbox-en")
    row.locator("button[hx-post$='/approve']").click()
    assert row.locator(".badge").inner_text() == "Approved"


def test_a_customer_sees_its_statement_and_nothing_else(page: Any, site: Site) -> None:
    _sign_in(page, site, "c1")
    page.wait_for_url(f"{site.base}/portal")
    assert page.locator("h1").inner_text() == "上海华东食品贸易有限公司"
    rebates = page.locator("[data-testid=statement] [data-testid=rebate]").all_inner_texts()
    assert rebates == ["¥200.00"]
    page.click("[data-testid=statement] summary")
    seen_by_customer = page.locator("[data-testid=explanation]").inner_text()
    assert "2% x 10,000.00 = 200.00" in seen_by_customer
    _shot(page, "portal-zh")
    for path in ("/customers/C2", "/customers/C1", "/dashboard", "/inbox"):
        getattr(page, EXPECTED_404).add(f"{site.base}{path}")
        response = page.goto(f"{site.base}{path}")
        assert response.status == 404, path
        assert page.locator("h1").inner_text() == "未找到"
    page.goto(f"{site.base}/lang/en?back=/portal")
    assert page.locator("[data-testid=statement] [data-testid=rebate]").all_inner_texts() == [
        "CN¥200.00"
    ]
    _shot(page, "portal-en")


def test_staff_pages_render_in_both_languages(page: Any, site: Site) -> None:
    _sign_in(page, site, "sam")
    page.wait_for_url(f"{site.base}/dashboard")
    page.goto(f"{site.base}/customers")
    assert page.locator("h1").inner_text() == "客户"
    page.goto(f"{site.base}/customers/C1")
    assert page.locator("[data-testid=rebate]").all_inner_texts() == ["¥200.00"]
    page.click("[data-testid=statement] summary")
    # The staff see the customer's explanation, word for word (one function makes both).
    assert page.locator("[data-testid=explanation]").inner_text().splitlines()[-4:] == [
        "全额累进：2% x 10,000.00 = 200.00",
        "舍入：四舍五入，精确到 0.01：精确值 200.00 -> R = 200.00",
        "本期返利：200.00 元；累计返利：200.00 元",
        "计提（实际）：200.00 元，即累计返利",
    ]
    _shot(page, "customer-zh")
    page.goto(f"{site.base}/lang/en?back=/customers/C1")
    assert page.locator("[data-testid=rebate]").all_inner_texts() == ["CN¥200.00"]
    _shot(page, "customer-en")
    getattr(page, EXPECTED_404).add(f"{site.base}/customers/C2")
    assert page.goto(f"{site.base}/customers/C2").status == 404  # not assigned to sam


def test_import_accrue_propose_approve_pay_and_the_customer_sees_it(
    page: Any, site: Site, tmp_path: Path
) -> None:
    """The whole path in the browser: finance imports C2's March sales and runs the accrual, then
    proposes C2's settlement; the approver approves it with a second factor; finance pays it by
    credit note; C2's buyer sees it paid in the portal, with the same amounts."""
    sales = tmp_path / "march.csv"
    sales.write_text(
        "line_id,customer_id,product_id,invoice_date,quantity,net_amount\n"
        "L3,C2,P1,2026-03-05,4,20000.00\n",
        encoding="utf-8",
    )
    _sign_in(page, site, "fay", totp=True)
    page.wait_for_url(f"{site.base}/dashboard")
    page.goto(f"{site.base}/lang/en?back=/imports")
    # On a 1280-pixel laptop, finance's eleven English links and sign-out fit on one line.
    page.set_viewport_size({"width": 1280, "height": 800})
    links = page.locator("nav .nav-link")
    assert links.count() == 11
    tops = {round(box["y"]) for box in (links.nth(i).bounding_box() for i in range(11)) if box}
    signout = page.locator("nav form[action='/signout'] button").bounding_box()
    assert signout is not None
    assert len(tops) == 1, tops
    assert abs(signout["y"] - min(tops)) < 20, (tops, signout)
    page.select_option("#kind", "sales")
    page.set_input_files("#file", str(sales))
    page.click("form[action='/imports'] button")
    imported = page.locator("[data-testid=imported]").inner_text()
    assert re.fullmatch(r"Batch \d+: 1 row \(1 new, 0 updated\)\.", imported), imported
    _shot(page, "imports-en")
    page.goto(f"{site.base}/accruals")
    page.fill("#as_of", "2026-03-31")
    page.click("form[action='/accruals'] button")
    accrued = page.locator("[data-testid=accrued]").inner_text()
    ran = re.fullmatch(r"Run (\d+): 1 journal lines posted, liability change CN¥400\.00\.", accrued)
    assert ran is not None, accrued
    page.click(f"a[href='/accruals/{ran[1]}']")  # the run: its results, each explained
    # The run was incremental: it re-rated only C2, the customer of the new sales.
    assert page.locator("[data-testid=results] tr[data-key]").all_inner_texts()[0].split("\t")[
        :2
    ] == [
        "A1 v1",
        "C2",
    ]
    assert page.locator("[data-testid=results] tr[data-key]").count() == 1
    page.locator("[data-testid=results] details summary").first.click()
    why = page.locator("[data-testid=explanation]").first.inner_text().splitlines()
    assert "Whole volume: 2% x 20,500.00 = 410.00" in why
    _shot(page, "accrual-run-en")
    page.goto(f"{site.base}/settlements")
    page.select_option("#agreement", "A1")
    page.fill("#customer", "C2")
    page.fill("#period_start", "2026-01-01")
    page.click("form[action='/settlements'] button")
    proposed = page.locator("[data-testid=done]").inner_text()
    settlement_id = proposed.split()[1]
    row = page.locator(f"tr[data-settlement='{settlement_id}']")
    assert "CN¥410.00" in row.inner_text()
    page.click("form[action='/signout'] button")

    _sign_in(page, site, "amy", totp=True)
    page.wait_for_url(f"{site.base}/dashboard")
    page.goto(f"{site.base}/inbox")
    waiting = page.locator("tbody tr", has_text="C2")
    waiting.locator("button[hx-post$='/approve']").click()
    assert waiting.locator(".badge").inner_text() == "Approved"  # the context chose English
    page.click("form[action='/signout'] button")

    _sign_in(page, site, "fay", totp=True)
    page.wait_for_url(f"{site.base}/dashboard")
    page.goto(f"{site.base}/settlements")
    row = page.locator(f"tr[data-settlement='{settlement_id}']")
    asked: list[str] = []

    # Without its document number the form is not sent: the browser says so, before the
    # question that a payout cannot be undone (no dialog opens).
    def noted(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", noted)
    row.locator("form[action$='/pay'] button").click()
    assert row.locator("input[name=document_number]:invalid").count() == 1
    assert asked == []
    page.remove_listener("dialog", noted)
    row.locator("input[name=document_number]").fill("CN-2026-0042")

    def accept(dialog: Any) -> None:  # a payout cannot be undone: the page asks first
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    row.locator("form[action$='/pay'] button").click()
    assert page.locator("[data-testid=done]").inner_text() == f"Settlement {settlement_id} paid."
    assert asked == [f"Pay settlement {settlement_id}, CN¥410.00 to C2? A payout cannot be undone."]
    _shot(page, "settlements-en")
    page.click("form[action='/signout'] button")

    _sign_in(page, site, "c2")
    page.wait_for_url(f"{site.base}/portal")
    assert page.locator("[data-testid=rebate]").all_inner_texts() == ["CN¥410.00"]
    paid = page.locator("[data-testid=settlements] tbody tr").first.inner_text()
    assert "CN¥410.00" in paid
    assert "Paid" in paid
    _shot(page, "portal-paid-en")


def test_the_agreement_editor_explains_bad_bands(page: Any, site: Site) -> None:
    _sign_in(page, site, "sam")
    page.wait_for_url(f"{site.base}/dashboard")
    page.goto(f"{site.base}/lang/en?back=/agreements")
    page.fill(
        "#terms",
        "id: BAD\nterm: {start: 2026-01-01, end: 2027-01-01}\n"
        "rebate:\n  tiers:\n    - {from: 0, rate: 1}\n    - {from: 100, rate: 2}\n",
    )
    problems = page.locator("[data-testid=problems]")
    problems.wait_for()
    assert problems.inner_text() == (
        "rebate.tiers[0]: only the top band may be open-ended (no 'to'); bands must be sorted"
    )
    _shot(page, "agreement-editor-en")
    # Valid terms for next year, previewed on this year's sales (C1's 10,000 at 5%).
    page.fill(
        "#terms",
        "id: NEXT\nterm: {start: 2027-01-01, end: 2028-01-01}\n"
        "parties: {counterparty: C1}\nrebate: {tiers: [{from: 0, rate: 5}]}\n",
    )
    page.click("text=Preview on last year's sales")
    assert page.locator("[data-testid=preview] h3").inner_text() == (
        "On the sales of Jan 1, 2026 to Dec 31, 2026, NEXT would have paid CN¥500.00 to 1 customer."
    )
    assert page.locator("[data-testid=preview] tbody tr").all_inner_texts() == [
        "C1\tCN¥10,000.00\tCN¥500.00"
    ]


def test_a_statement_is_signed_off_and_printed_with_its_chinese_name(page: Any, site: Site) -> None:
    _sign_in(page, site, "c1")
    page.wait_for_url(f"{site.base}/portal")
    page.click("[data-testid=statements] a")
    page.wait_for_url(f"{site.base}/portal/statements/2026-01-01")
    assert page.locator("[data-testid=period-rebate]").all_inner_texts() == ["¥200.00"]
    page.click("button[value=disputed]")  # a dispute without a comment is refused, in Chinese
    assert (
        page.locator("[data-testid=error]").inner_text() == "提出异议需填写说明：请写明哪里有误。"
    )
    page.once("dialog", lambda dialog: dialog.dismiss())  # asked, and declined: nothing stored
    page.click("button[value=signed_off]")
    page.reload()  # what the server holds, not what the page happened to show
    assert page.locator("[data-testid=answered]").count() == 0
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button[value=signed_off]")
    day = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()  # the page acts on the real clock
    answered = page.locator("[data-testid=answered]").inner_text()
    assert answered == f"{day.year}年{day.month}月{day.day}日已确认"
    assert page.locator("button[value=signed_off]").count() == 0  # a sign-off is final
    _shot(page, "statement-zh")
    for code, expected in (("zh_CN", "¥200.00"), ("en", "CN¥200.00")):
        page.context.add_cookies([{"name": "fanli_lang", "value": code, "url": site.base}])
        pdf = page.request.get(f"{site.base}/portal/statements/2026-01-01/pdf")
        assert pdf.headers["content-type"] == "application/pdf"
        text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.body())).pages)
        assert "上海华东食品贸易有限公司" in text
        assert expected in text
        (SHOTS / f"statement-{code}.pdf").write_bytes(pdf.body())


def test_a_new_version_is_reviewed_with_its_diff_and_approved(page: Any, site: Site) -> None:
    _sign_in(page, site, "sam")
    page.wait_for_url(f"{site.base}/dashboard")
    page.goto(f"{site.base}/lang/en?back=/agreements")
    page.fill(
        "#terms",
        "id: A1\nname: programme A1\nterm: {start: 2026-01-01, end: 2027-01-01}\n"
        "effective_from: 2026-07-01\n"
        "rebate: {form: percent, basis: net, tiers: [{from: 0, rate: 3}]}\n"
        "periods: {kind: quarter}\n"
        "contract: {reference: HT-2026-001, document_sha256: " + "ab" * 32 + "}\n",
    )
    page.click("form[action='/agreements'] button.btn-primary")
    assert page.locator("[data-testid=done]").inner_text() == "Draft A1 v2 saved."
    page.locator("form[action$='/submit'] button").click()
    page.click("form[action='/signout'] button")
    _sign_in(page, site, "amy", totp=True)
    page.wait_for_url(f"{site.base}/dashboard")
    page.goto(f"{site.base}/lang/en?back=/agreements/A1/review")
    newest = page.locator("[data-testid=diff]").first.inner_text().splitlines()
    assert "+     rate: '3'" in newest
    assert "-     rate: '2'" in newest
    # Each version also reads in words, the way the customer's portal says it.
    assert page.locator("[data-testid=plain]").first.locator("li").all_inner_texts()[1] == (
        "Bands: from CN¥0.00: 3%."
    )
    _shot(page, "agreement-review-en")
    page.click("text=Approve these terms")
    assert page.locator("[data-testid=done]").inner_text() == (
        "Version approved; it is now Active."
    )


def test_oversight_and_administration_pages(page: Any, site: Site) -> None:
    _sign_in(page, site, "admin", totp=True)
    page.wait_for_url(f"{site.base}/dashboard")
    page.goto(f"{site.base}/audit")
    assert page.locator("[data-testid=trail] .badge").inner_text() == "审计链完整"
    page.fill("#period", "2026-03")
    page.click("form[action='/audit/runs'] button")
    done = page.locator("[data-testid=done]").inner_text()
    assert re.fullmatch(r"2026年3月 审计：\d+ 项发现，其中新增 \d+ 项。", done), done
    _shot(page, "audit-zh")
    # A period the server refuses (past the field's own check): the page stays, and says why.
    page.eval_on_selector("#period", "field => field.removeAttribute('pattern')")
    page.fill("#period", "abcd-ef")
    page.click("form[action='/audit/runs'] button")
    assert page.locator("[data-testid=invalid]").inner_text() == "表单未被接受：期间：格式不对"
    assert page.locator("h1").first.inner_text() == "审计"
    page.goto(f"{site.base}/policy")
    assert page.locator("h2").first.inner_text().startswith("v1 · 返利政策 2026")
    page.goto(f"{site.base}/users")
    page.fill("input[name=code]", "zoe")
    page.fill("input[name=name]", "Zoe")
    page.select_option("select[name=role]", "finance")
    page.click("form[action='/users'] button")
    assert page.locator("h1").inner_text() == "用户 zoe 已创建。"
    # Shown once, to hand over: a first password and the second factor's secret.
    assert len(page.locator("[data-testid=password]").inner_text()) == 16
    assert re.fullmatch(r"[A-Z2-7]{32}", page.locator("[data-testid=secret]").inner_text())
    _shot(page, "users-zh")
    page.click("form[action='/signout'] button")
    _sign_in(page, site, "fay", totp=True)  # finance exports the journal
    page.wait_for_url(f"{site.base}/dashboard")
    page.goto(f"{site.base}/periods")
    with page.expect_download() as download:
        page.locator("form[action$='/gl'] button").first.click()
    assert download.value.suggested_filename.startswith("gl-2026-")
    page.click("form[action='/signout'] button")
    _sign_in(page, site, "sam")  # sales reads no findings
    page.wait_for_url(f"{site.base}/dashboard")
    getattr(page, EXPECTED_404).add(f"{site.base}/audit")
    assert page.goto(f"{site.base}/audit").status == 404


def test_a_bad_file_shows_its_rows_and_a_batch_can_be_voided(
    page: Any, site: Site, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "line_id,customer_id,product_id,invoice_date,quantity,net_amount\n"
        "X1,C1,P1,2026-13-01,1,100.00\nX2,C9,P1,2026-03-02,1,abc\n",
        encoding="utf-8",
    )
    extra = tmp_path / "extra.csv"
    extra.write_text(
        "line_id,customer_id,product_id,invoice_date,quantity,Betrag\n"
        "X3,C1,P1,2026-03-03,1,50.00\n",
        encoding="utf-8",
    )
    _sign_in(page, site, "fay", totp=True)
    page.wait_for_url(f"{site.base}/dashboard")
    page.goto(f"{site.base}/lang/en?back=/imports")
    page.select_option("#kind", "sales")
    page.set_input_files("#file", str(bad))
    page.click("form[action='/imports'] button")
    refused = page.locator("[data-testid=refused]").inner_text()
    assert "bad.csv was not imported" in refused
    assert "Nothing was stored." in refused
    rows = page.locator("table").first.locator("tbody tr").all_inner_texts()
    assert rows[0].startswith("2\tinvoice_date")
    _shot(page, "import-refused-en")
    page.set_input_files("#file", str(extra))
    page.click("form[action='/imports'] summary")  # its headers need a mapping
    page.fill("#mapping", "net_amount: Betrag")
    page.click("form[action='/imports'] button")
    assert "1 row (1 new, 0 updated)" in page.locator("[data-testid=imported]").inner_text()
    batch = page.locator("tbody tr", has_text="extra.csv")
    batch.locator("input[name=reason]").fill("sent twice")
    batch.locator("button").click()
    assert "voided" in page.locator("[data-testid=voided]").inner_text()


def test_the_portal_says_the_agreement_in_plain_language(page: Any, site: Site) -> None:
    _sign_in(page, site, "c1")
    page.wait_for_url(f"{site.base}/portal")
    sentences = page.locator("[data-testid=plain]").first.locator("li").all_inner_texts()
    assert (
        sentences[0] == "自 2026年1月1日 至 2026年12月31日，按季度计算，以您的不含税销售额为基数。"
    )
    assert sentences[1] == "档位：¥0.00 以上：2%。"


def test_the_guided_form_writes_valid_terms(page: Any, site: Site) -> None:
    _sign_in(page, site, "sam")
    page.wait_for_url(f"{site.base}/dashboard")
    page.goto(f"{site.base}/lang/en?back=/agreements")
    page.fill("#g_id", "GUIDED")
    page.fill("#g_name", "Guided programme")
    page.fill("#g_start", "2026-01-01")
    page.fill("#g_end", "2027-01-01")
    page.select_option("#g_method", "marginal")
    bands = page.locator("#bands tr")
    for value, cell in zip(("0", "5000", "1"), bands.nth(0).locator("input").all(), strict=True):
        cell.fill(value)
    page.click("#add-band")
    for value, cell in zip(("5000", "", "2"), bands.nth(1).locator("input").all(), strict=True):
        cell.fill(value)
    page.fill("#g_contract", "HT-G-1")
    page.fill("#g_sha256", "cd" * 32)
    page.locator("#check", has_text="The terms are valid.").wait_for()  # validated live
    assert "    - {from: 5000, rate: 2}" in page.locator("#terms").input_value()
    _shot(page, "agreement-guided-en")
    page.click("form[action='/agreements'] button.btn-primary")
    assert page.locator("[data-testid=done]").inner_text() == "Draft GUIDED v1 saved."


def test_the_guided_form_writes_every_term_type(page: Any, site: Site) -> None:
    """A buying group's growth rebate on paid invoices of two categories, with a gate, a cap
    per term, a guarantee carried forward, expected-tier accrual and claw-backs."""
    _sign_in(page, site, "sam")
    page.wait_for_url(f"{site.base}/dashboard")
    page.goto(f"{site.base}/lang/en?back=/agreements")
    page.fill("#g_id", "GROUP")
    page.fill("#g_start", "2026-01-01")
    page.fill("#g_end", "2027-01-01")
    page.fill("#g_effective", "2026-04-01")
    bands = page.locator("#bands tr")
    for value, cell in zip(("100", "110", "1"), bands.nth(0).locator("input").all(), strict=True):
        cell.fill(value)
    page.click("#add-band")
    for value, cell in zip(("110", "", "3"), bands.nth(1).locator("input").all(), strict=True):
        cell.fill(value)
    page.click("[data-testid=more-terms] summary")
    page.fill("#g_members", "C2，C3")  # a Chinese comma separates as well
    page.select_option("#g_split", "pro_rata")
    page.locator("#check", has_text="parties.counterparty").wait_for()  # members need one
    assert page.locator("[data-testid=problems]").inner_text() == (
        "parties.counterparty: must not be empty"
    )
    page.fill("#g_counterparty", "C1")
    page.select_option("#g_event", "paid_invoice")
    page.fill("#g_categories", "饮料, 零食")
    page.fill("#g_excluded", "P9")
    page.select_option("#g_growth", "prior_year")
    page.select_option("#g_growth_mode", "growth_only")
    page.fill("#g_gate_target", "1000")
    page.fill("#g_gate_categories", "饮料")
    page.fill("#g_cap_term", "50000")
    page.fill("#g_guarantee", "100")
    page.check("#g_carry")
    page.select_option("#g_accrual", "expected")
    page.check("#g_clawback")
    page.fill("#g_contract", "HT-G-2")
    page.fill("#g_sha256", "ab" * 32)
    page.locator("#check", has_text="The terms are valid.").wait_for()
    assert page.locator("#terms").input_value().splitlines() == [
        'id: "GROUP"',
        "term: {start: 2026-01-01, end: 2027-01-01}",
        "effective_from: 2026-04-01",
        'parties: {counterparty: "C1", members: ["C2","C3"], split: pro_rata}',
        'eligibility: {"event":"paid_invoice","products":{"include":{"category":["饮料","零食"]},'
        '"exclude":{"id":["P9"]}}}',
        "periods: {kind: quarter}",
        "rebate:",
        "  form: percent",
        "  method: whole_volume",
        "  basis: net",
        "  tiers:",
        "    - {from: 100, to: 110, rate: 1}",
        "    - {from: 110, rate: 3}",
        "growth: {baseline: prior_year, mode: growth_only}",
        'gate: {measure: net, target: 1000, products: {"include":{"category":["饮料"]}}}',
        "cap: {per_term: 50000}",
        "guarantee: {amount: 100, carry_forward: true}",
        "accrual: {mode: expected}",
        "settlement: {form: credit_note, clawback: true}",
        f'contract: {{reference: "HT-G-2", document_sha256: "{"ab" * 32}"}}',
    ]
    _shot(page, "agreement-guided-more-en")
    page.click("form[action='/agreements'] button.btn-primary")
    assert page.locator("[data-testid=done]").inner_text() == "Draft GROUP v1 saved."


def test_the_guided_form_selects_a_programmes_customers_by_segment_and_region(
    page: Any, site: Site
) -> None:
    """A programme (no counterparty) for the supermarkets of two regions but one customer,
    written by the guided form as the master's attributes and validated live."""
    _sign_in(page, site, "sam")
    page.wait_for_url(f"{site.base}/dashboard")
    page.goto(f"{site.base}/lang/en?back=/agreements")
    page.fill("#g_id", "KA-PROG")
    page.fill("#g_start", "2026-01-01")
    page.fill("#g_end", "2027-01-01")
    for value, cell in zip(("0", "", "1.5"), page.locator("#bands tr input").all(), strict=True):
        cell.fill(value)
    page.click("[data-testid=more-terms] summary")
    page.fill("#g_segments", "商超")
    page.fill("#g_regions", "华东，华南")
    page.fill("#g_excluded_customers", "C9")
    page.locator("#check", has_text="The terms are valid.").wait_for()
    written = page.locator("#terms").input_value().splitlines()
    assert written[2] == (
        'eligibility: {"customers":{"include":{"attributes":{"segment":["商超"],'
        '"region":["华东","华南"]}},"exclude":{"id":["C9"]}}}'
    )
    page.click("form[action='/agreements'] button.btn-primary")
    assert page.locator("[data-testid=done]").inner_text() == "Draft KA-PROG v1 saved."


def test_the_api_documentation_runs_from_the_package_alone(page: Any, site: Site) -> None:
    """Swagger UI is vendored: the page lists the API's operations, and every file it loads
    comes from Fanli itself (nothing from a CDN)."""
    loaded: list[str] = []
    page.on("request", lambda request: loaded.append(request.url))
    page.goto(f"{site.base}/api/docs")
    page.locator(".opblock-summary-path", has_text="/api/settlements").first.wait_for()
    outside = [url for url in loaded if not url.startswith((site.base, "data:"))]
    assert outside == []
    assert f"{site.base}/static/vendor/swagger-ui-bundle.js" in loaded


def test_the_guided_form_asks_before_replacing_terms_it_did_not_write(
    page: Any, site: Site
) -> None:
    """Terms typed by hand (or a draft opened to correct) are not wiped by a keystroke in the
    guided form: it asks first; declined, it leaves them and stops writing."""
    _sign_in(page, site, "sam")
    page.wait_for_url(f"{site.base}/dashboard")
    page.goto(f"{site.base}/lang/en?back=/agreements")
    by_hand = 'id: "HAND"\nname: "typed by hand"\n'
    page.fill("#terms", by_hand)
    asked: list[str] = []

    def decline(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", decline)
    page.fill("#g_id", "GUIDED2")
    assert asked == [
        "Replace the terms below with what this form writes? Their present text is lost."
    ]
    assert page.locator("#terms").input_value() == by_hand
    assert page.locator("[data-testid=guided-detached]").is_visible()
    page.fill("#g_name", "still kept")  # no second question, nothing written
    assert page.locator("#terms").input_value() == by_hand
    # After a reload the form starts afresh, and a yes lets it write.
    page.reload()
    page.fill("#terms", by_hand)
    page.once("dialog", lambda dialog: dialog.accept())
    page.fill("#g_id", "GUIDED2")
    assert page.locator("#terms").input_value().splitlines()[0] == 'id: "GUIDED2"'


def test_the_guided_form_has_the_check_name_a_number_it_cannot_read(page: Any, site: Site) -> None:
    """ "1,000.005" in a band and an empty rate: the live check names each field, instead of
    YAML misreading the first and the form paying 0 for the second."""
    _sign_in(page, site, "sam")
    page.wait_for_url(f"{site.base}/dashboard")
    page.goto(f"{site.base}/lang/en?back=/agreements")
    page.fill("#g_id", "NUMBERS")
    page.fill("#g_start", "2026-01-01")
    page.fill("#g_end", "2027-01-01")
    cells = page.locator("#bands tr input").all()
    cells[0].fill("1,000.005")
    cells[1].fill("")
    cells[2].fill("")
    page.locator("[data-testid=problems]").wait_for()
    assert '    - {from: "1,000.005", rate: ""}' in page.locator("#terms").input_value()
    assert page.locator("[data-testid=problems] li").all_inner_texts() == [
        "rebate.tiers[0].from: not a number",
        "rebate.tiers[0].rate: not a number",
    ]


def test_staff_pages_keep_a_phones_width(page: Any, site: Site) -> None:
    """On a 390-pixel phone a wide table scrolls inside itself; the page does not widen."""
    _sign_in(page, site, "fay", totp=True)
    page.wait_for_url(f"{site.base}/dashboard")
    page.set_viewport_size({"width": 390, "height": 844})
    widths = {}
    for path in ("/settlements", "/imports", "/accruals", "/inbox", "/agreements", "/periods"):
        page.goto(f"{site.base}{path}")
        widths[path] = page.evaluate("document.documentElement.scrollWidth")
    assert widths == dict.fromkeys(widths, 390)
