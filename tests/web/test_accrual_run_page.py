"""An accrual run's page: what it read, every result row it stored (searchable, paged), and the
engine's explanation of any row, the same text the customer's statement shows. Only the roles
that may read runs over the API see it; a sales user gets 404. On both databases."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from fanli.config import Settings
from fanli.interfaces.api import routes_store
from fanli.interfaces.api.app import create_app
from fanli.interfaces.web import views_work
from fanli.ledger.models import AccrualRun
from fanli.ledger.periods import close_period
from fanli.users.auth import enrol_second_factor, set_password
from second_factor import fresh_code
from store.conftest import NOW, Store, sqlite_template, store
from store.test_settlements import _form, _world

__all__ = ["sqlite_template", "store"]  # the store's fixtures, on both databases
PASSWORD = "correct horse battery"


def _sign_in(client: TestClient, user: str, secret: str) -> None:
    client.cookies.clear()
    totp = fresh_code(secret)
    client.post("/signin", data={"user": user, "password": PASSWORD, "totp": totp})


def _cells(page: str) -> list[list[str]]:
    """The result rows of the page, cell texts."""
    rows = re.findall(r'<tr data-key="[^"]+">(.*?)</tr>', page, re.S)
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in rows
    ]


def test_a_run_shows_its_results_and_explains_each(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path, _form("credit_note"))  # 2% of C1's 10,000 and C2's 500
    with store.work() as session:
        run_id = session.scalar(select(AccrualRun.id))
        secrets = {}
        for code in ("fay", "sam"):
            set_password(session, code, PASSWORD, actor=world["admin"], now=NOW, must_change=False)
            secrets[code] = enrol_second_factor(session, code, actor=world["admin"], now=NOW)
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        _sign_in(client, "fay", secrets["fay"])
        page = client.get(f"/accruals/{run_id}").text
        assert _cells(page) == [
            [
                "A1 v1",
                "C1",
                "2026年1月1日 – 2026年3月31日",
                "¥10,000.00",
                "1",
                "¥200.00",
                "¥200.00",
            ],
            ["A1 v1", "C2", "2026年1月1日 – 2026年3月31日", "¥500.00", "1", "¥10.00", "¥10.00"],
        ]
        assert "共 2 条，显示 2 条" in page
        assert _cells(client.get(f"/accruals/{run_id}?q=c2").text) == [
            ["A1 v1", "C2", "2026年1月1日 – 2026年3月31日", "¥500.00", "1", "¥10.00", "¥10.00"]
        ]
        assert _cells(client.get(f"/accruals/{run_id}?q=nobody").text) == []
        assert _cells(client.get(f"/accruals/{run_id}", params={"q": "%"}).text) == []
        why = client.get(
            f"/accruals/{run_id}/explain",
            params={"agreement": "A1", "version": 1, "customer": "C1", "period": 1},
        )
        assert why.status_code == 200
        explanation = html.unescape(re.sub(r"<[^>]+>", "", why.text))
        # The customer's statement explains the same row with the same words.
        statement = client.get("/customers/C1").text
        shown = re.search(r'data-testid="explanation"[^>]*>(.*?)</pre>', statement, re.S)
        assert shown is not None
        assert explanation == html.unescape(shown[1])
        lines = explanation.splitlines()
        assert "全额累进：2% x 10,000.00 = 200.00" in lines
        assert "销售行按开票日期计入" in lines
        assert "本期返利：200.00 元；累计返利：200.00 元" in lines
        missing = client.get(
            f"/accruals/{run_id}/explain",
            params={"agreement": "A1", "version": 1, "customer": "C1", "period": 2},
        )
        assert missing.status_code == 404
        assert client.get("/accruals/999999").status_code == 404

        _sign_in(client, "sam", secrets["sam"])  # sales: runs are not theirs to read
        assert client.get(f"/accruals/{run_id}").status_code == 404
        assert (
            client.get(
                f"/accruals/{run_id}/explain",
                params={"agreement": "A1", "version": 1, "customer": "C1", "period": 1},
            ).status_code
            == 404
        )


def test_a_run_shows_its_entries_and_the_late_sales_it_adjusted_for(
    store: Store, tmp_path: Path
) -> None:
    world = _world(store, tmp_path, _form("credit_note"))  # 2% of C1's 10,000 and C2's 500
    with store.work() as session:
        for month in ("2026-01", "2026-02"):
            close_period(session, month, actor=world["fay"], now=NOW)
        set_password(session, "fay", PASSWORD, actor=world["admin"], now=NOW, must_change=False)
        secret = enrol_second_factor(session, "fay", actor=world["admin"], now=NOW)
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        _sign_in(client, "fay", secret)
        # March is closed from its page, which names the month as the reader writes it.
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/periods").text)
        assert csrf is not None
        closed = client.post("/periods/2026-03/close", data={"csrf": csrf[1]})
        assert (
            re.search(r'data-testid="done">([^<]*)<', closed.text)[1] == "期间 2026年3月 已结账。"
        )  # type: ignore[index]
        late = world.sales(("L3", "C2", "P1", "2026-03-30", "1", "1500.00"))  # after March closed
        world.sales(("L4", "C1", "P1", "2026-04-10", "1", "2500.00"))
        world.accrue("2026-04-30")
        with store.work() as session:
            run_id = session.scalar(select(func.max(AccrualRun.id)))
        page = client.get(f"/accruals/{run_id}").text
        table = re.search(r'data-testid="entries">(.*?)</table>', page, re.S)
        assert table is not None
        rows = [
            [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", table[1], re.S)
            if "<td>" in row
        ]
        # C1's April sale is the second quarter's accrual; C2's late March sale adjusts the
        # closed first quarter. Both are posted in April.
        assert rows == [
            ["计提", "2026年4月", "2026年4月30日", "1", "¥50.00"],
            ["已结账期间的调整", "2026年4月", "2026年4月30日", "1", "¥30.00"],
        ]
        assert f"涉及 1 个客户，日期在已结账期间内（批次：{late}）" in page
        client.get("/lang/en")
        page = client.get(f"/accruals/{run_id}").text
        assert f"for 1 customer, dated in closed periods (batches: {late})" in page


def test_a_page_that_fails_unforeseen_says_so_as_a_page(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's results file gone from the disk: the page answers 500 with a page in both
    languages (the log holds the cause), and the API with its JSON error."""
    world = _world(store, tmp_path, _form("credit_note"))
    with store.work() as session:
        run_id = session.scalar(select(AccrualRun.id))
        set_password(session, "fay", PASSWORD, actor=world["admin"], now=NOW, must_change=False)
        secret = enrol_second_factor(session, "fay", actor=world["admin"], now=NOW)

    def unreadable(*_args: object, **_kwargs: object) -> None:
        raise OSError("results file unreadable")

    monkeypatch.setattr(views_work, "run_results", unreadable)
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))
    app = create_app(settings)
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        _sign_in(client, "fay", secret)
        page = client.get(f"/accruals/{run_id}")
        assert page.status_code == 500
        assert page.headers["content-type"].startswith("text/html")
        assert 'data-testid="server-error"' in page.text
        assert "这一步没有完成，也没有保存任何改动。" in page.text
    # The API's own unforeseen failure keeps its JSON shape.
    monkeypatch.setattr(routes_store, "paged", unreadable)
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        token = client.post("/api/session", json={
            "user": "fay", "password": PASSWORD, "totp": fresh_code(secret)
        })  # fmt: skip
        assert token.status_code == 200
        api = client.get("/api/accrual-runs")
        assert (api.status_code, api.json()) == (
            500,
            {"error": "internal_error", "detail": "see the server log"},
        )
