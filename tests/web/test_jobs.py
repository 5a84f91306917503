"""Long operations from the web pages run as jobs: the services report their stages in order, a
job's page shows how far it has got and only to its owner, and once it ends the page it was
started from shows the outcome. Through the app on both databases: an import, a refused
import (nothing stored), an accrual run and an audit, each started from its page."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import logging
import re
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from openpyxl import load_workbook
from sqlalchemy import func, select

from fanli.config import Settings
from fanli.interfaces.api.app import create_app
from fanli.interfaces.web.jobs import Job, JobBoard
from fanli.interfaces.web.views_work import _accruals_page
from fanli.kit.errors import InputError
from fanli.kit.progress import ProgressHook, Stage, Stages, Tracker
from fanli.ledger.service import accrue
from fanli.oversight.models import AuditRun
from fanli.sales.models import ImportBatch
from fanli.sales.service import import_sales
from fanli.users.auth import enrol_second_factor, set_password
from second_factor import fresh_code
from store.builders import sales_file, staff
from store.conftest import NOW, Store, sqlite_template, store
from store.test_settlements import _form, _world

__all__ = ["sqlite_template", "store"]  # the store's fixtures, on both databases
PASSWORD = "correct horse battery"


class Recorder:
    """A progress hook that keeps the stages reported, in order."""

    def __init__(self) -> None:
        self.stages: list[tuple[str, int, int]] = []

    def __call__(self, label: str, done: int, total: int) -> None:
        if label in {stage.value for stage in Stage}:
            self.stages.append((label, done, total))


def test_a_tracker_turns_stages_and_parts_of_a_stage_into_one_fraction() -> None:
    tracker = Tracker()
    stages = Stages(tracker, Stage.READING, Stage.CHECKING, Stage.WRITING, Stage.POSTING)
    assert (tracker.stage, tracker.fraction) == ("", 0.0)
    stages.begin(Stage.CHECKING)
    assert (tracker.stage, tracker.fraction) == ("checking", 0.25)
    tracker("/tmp/sales.csv", 50, 100)  # half of the stage: a file half read
    assert tracker.fraction == 0.375
    stages.begin(Stage.POSTING)
    assert tracker.fraction == 0.75  # a new stage starts from its own beginning
    tracker("lines", 10, 10)
    assert tracker.fraction == 0.99  # never 100% before the job has ended
    tracker("nothing to count", 1, 0)
    assert tracker.fraction == 0.99


def test_the_services_report_their_stages_in_order(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path, _form("credit_note"))
    imported, accrued = Recorder(), Recorder()
    with store.work() as session:
        import_sales(
            session,
            store.facts,
            sales_file(tmp_path, "more.csv", [("L9", "C1", "P1", "2026-03-05", "1", "100.00")]),
            actor=staff("ann"),
            now=NOW,
            progress=imported,
        )
    with store.work() as session:
        accrue(
            session,
            store.facts,
            as_of=dt.date(2026, 3, 31),
            actor=world["fay"],
            now=NOW,
            progress=accrued,
        )
    assert imported.stages == [("reading", 0, 3), ("checking", 1, 3), ("writing", 2, 3)]
    assert accrued.stages == [
        ("expiring", 0, 4),
        ("planning", 1, 4),
        ("rating", 2, 4),
        ("posting", 3, 4),
    ]


def test_a_job_board_keeps_the_outcome_and_shows_a_job_only_to_its_owner(
    caplog: pytest.LogCaptureFixture,
) -> None:
    board = JobBoard(workers=1)
    cleaned: list[str] = []

    def refusing(progress: ProgressHook) -> dict[str, object]:
        raise InputError("no such column", field="x")  # bad input: the service says why

    def broken(progress: ProgressHook) -> dict[str, object]:
        raise ZeroDivisionError  # a bug in the work, not bad input

    refused = board.start(
        owner="fay",
        title="Importing {name}",
        back="/imports",
        show=None,
        work=refusing,
        cleanup=lambda: cleaned.append("refused"),
    )

    with caplog.at_level(logging.ERROR, logger="fanli.interfaces.web.jobs"):
        failed = board.start(owner="fay", title="t", back="/", show=None, work=broken)
        _wait(refused, failed)
    assert [str(error) for error in refused.outcome.values()] == ["field 'x': no such column"]
    assert failed.outcome == {"error_unexpected": True}
    assert "ZeroDivisionError" in caplog.text
    assert cleaned == ["refused"]
    assert (refused.finished, refused.percent) == (True, 100)
    assert board.find(refused.id, "fay") is refused
    assert board.find(refused.id, "fred") is None  # another user's job does not exist for fay
    assert board.under_way("fay") == []


def _wait(*jobs: Job) -> None:
    deadline = time.monotonic() + 30
    while not all(job.finished for job in jobs):
        assert time.monotonic() < deadline, "the jobs did not end"
        time.sleep(0.01)


def test_a_stopping_server_lets_the_running_job_end_and_starts_no_queued_one() -> None:
    board = JobBoard(workers=1)
    release = threading.Event()
    cleaned: list[str] = []

    def running(progress: ProgressHook) -> dict[str, object]:
        assert release.wait(30)
        return {"done": "ended"}

    first = board.start(owner="fay", title="t", back="/", show=None, work=running)
    queued = board.start(
        owner="fay",
        title="t",
        back="/",
        show=None,
        work=running,
        cleanup=lambda: cleaned.append("queued"),
    )
    assert board.under_way("fay") == [first, queued]
    stopping = threading.Thread(target=board.close)
    stopping.start()
    while not board.closing:
        time.sleep(0.01)
    release.set()
    stopping.join(30)
    assert first.outcome == {"done": "ended"}
    assert queued.outcome == {"error_stopped": True}
    assert cleaned == ["queued"]  # its uploaded file is removed all the same
    assert board.under_way("fay") == []


# ---- through the app -------------------------------------------------------------------------


def _client(store: Store, tmp_path: Path, world: object) -> tuple[TestClient, dict[str, str]]:
    secrets = {}
    with store.work() as session:
        for code in ("fay", "fred", "ivan"):
            set_password(session, code, PASSWORD, actor=world["admin"], now=NOW, must_change=False)  # type: ignore[index]
            secrets[code] = enrol_second_factor(session, code, actor=world["admin"], now=NOW)  # type: ignore[index]
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))
    return TestClient(create_app(settings), base_url="https://testserver"), secrets


def _sign_in(client: TestClient, user: str, secret: str) -> str:
    """Sign ``user`` in; the CSRF token of the session."""
    client.cookies.clear()
    client.post("/signin", data={"user": user, "password": PASSWORD, "totp": fresh_code(secret)})
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/imports").text)
    assert found is not None
    return found[1]


def _ended(client: TestClient, started: Response) -> str:
    """The page a job shows once it has ended: ask again, as the job page itself does."""
    assert started.url.path.startswith("/jobs/")
    page = started.text
    deadline = time.monotonic() + 60
    while 'data-testid="job"' in page:
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.05)
        page = client.get(started.url.path).text
    return page


def _alert(page: str, testid: str) -> str:
    found = re.search(rf'data-testid="{testid}">([^<]*)<', page)
    assert found is not None, page[-3000:]
    return found[1].strip()


def _batches(store: Store) -> int:
    with store.work() as session:
        return session.scalar(select(func.count()).select_from(ImportBatch)) or 0


def test_import_accrual_and_audit_run_as_jobs_from_their_pages(
    store: Store, tmp_path: Path
) -> None:
    world = _world(store, tmp_path, _form("credit_note"))  # Q1: 2% of 10,500.00 accrued
    before = _batches(store)
    client, secrets = _client(store, tmp_path, world)
    with client:
        csrf = _sign_in(client, "fay", secrets["fay"])
        upload = sales_file(
            tmp_path,
            "march.csv",
            [
                ("L3", "C1", "P1", "2026-03-05", "5", "5000.00"),
                ("L3A", "C1", "P1", "2099-06-30", "1", "100.00"),  # an invoice dated ahead
            ],
        )
        started = client.post(
            "/imports",
            data={"kind": "sales", "csrf": csrf},
            files={"file": ("march.csv", upload.read_bytes(), "text/csv")},
        )
        page = _ended(client, started)
        assert _alert(page, "imported") == f"批次 {before + 1}：2 行（新增 2，更新 0）。"
        assert _alert(page, "dated-ahead") == (
            "1 行的日期晚于今天，最晚为 2099年6月30日：计提运行到了各行的日期才会计入。"
        )

        bad = sales_file(tmp_path, "bad.csv", [("L4", "C9", "P1", "2026-03-06", "1", "10.00")])
        started = client.post(
            "/imports",
            data={"kind": "sales", "csrf": csrf},
            files={"file": ("bad.csv", bad.read_bytes(), "text/csv")},
        )
        page = _ended(client, started)
        assert _alert(page, "refused") == "bad.csv 未导入：共 1 个问题，未存储任何数据。"
        problem = re.search(r"<td>2</td><td>customer_id</td><td>([^<]*)</td>", page)
        assert problem is not None
        assert html.unescape(problem[1]) == "customer_id 'C9' 不在 客户主数据 中"
        assert _batches(store) == before + 1  # the refused file stored nothing
        # The report to download, as CSV and Excel, says the same in the reader's language.
        found = {
            kind: base64.b64decode(data)
            for data, kind in re.findall(r'base64,([^"]+)" data-testid="report-(csv|xlsx)"', page)
        }
        assert found["csv"].decode("utf-8-sig").splitlines() == [
            "文件,行,字段,问题",
            "bad.csv,2,customer_id,customer_id 'C9' 不在 客户主数据 中",
        ]
        sheet = load_workbook(io.BytesIO(found["xlsx"])).active
        assert [[cell.value for cell in row] for row in sheet.iter_rows()] == [
            ["文件", "行", "字段", "问题"],
            ["bad.csv", 2, "customer_id", "customer_id 'C9' 不在 客户主数据 中"],
        ]

        # More problems than a report keeps: the page and the report say how many more.
        many = tmp_path / "many.csv"
        many.write_text(
            "line_id,customer_id,product_id,invoice_date,quantity,net_amount\n"
            + "".join(f"M{n},C1,P1,2026-03-06,1,x\n" for n in range(1500)),
            encoding="utf-8",
        )
        started = client.post(
            "/imports",
            data={"kind": "sales", "csrf": csrf},
            files={"file": ("many.csv", many.read_bytes(), "text/csv")},
        )
        page = _ended(client, started)
        assert _alert(page, "listed") == (
            "下表显示前 200 个，报告列出前 1,000 个；更正后再次导入即可看到其余问题。"
        )
        report = re.search(r'base64,([^"]+)" data-testid="report-csv"', page)
        assert report is not None
        lines = base64.b64decode(report[1]).decode("utf-8-sig").splitlines()
        assert (len(lines), lines[-1]) == (
            1 + 1000 + 1,
            "many.csv,,,另有 500 个问题未列出：更正以上问题后再次导入即可看到。",
        )

        # The same file again is recognised, and the page says so.
        started = client.post(
            "/imports",
            data={"kind": "sales", "csrf": csrf},
            files={"file": ("march (copy).csv", upload.read_bytes(), "text/csv")},
        )
        assert _alert(_ended(client, started), "imported") == (
            f"此文件此前已导入为批次 {before + 1}（2 行）：未新增任何数据。"
        )

        headless = tmp_path / "no-code.csv"
        headless.write_text("name,segment\n某公司,批发\n", encoding="utf-8")
        started = client.post(
            "/imports",
            data={"kind": "customers", "csrf": csrf},
            files={"file": ("no-code.csv", headless.read_bytes(), "text/csv")},
        )
        error = _alert(_ended(client, started), "error")
        # The user's file by name (never the server's temporary path), and the page's mapping.
        # In the reader's language (Chinese here), with the columns looked for as written.
        assert error == (
            "no-code.csv, 第 1 行, 字段 customer_id：缺少必需的列 customer_id（已查找："
            "customer_id, customer, customer id, 客户编码, 客户代码, 客户编号 等；"
            "也可在列映射中指定对应的表头）"
        )

        started = client.post("/accruals", data={"as_of": "2026-03-31", "csrf": csrf})
        page = _ended(client, started)
        run = re.search(r"第 (\d+) 次计提", _alert(page, "accrued"))
        assert run is not None
        # The new line alone: 2% of 5,000.00.
        assert _alert(page, "accrued") == f"第 {run[1]} 次计提：过账 1 行分录，负债变动 ¥100.00。"

        # The page refuses a day to come and a day before the last run, before any job starts.
        for day, refusal in (
            ("2099-01-01", "2099年1月1日 尚未到来；计提截至日期须为今天或更早。"),
            (
                "2026-02-28",
                "上次计提截至 2026年3月31日；截至 2026年2月28日 的计提会冲回此后已计提的金额。",
            ),
        ):
            refused = client.post("/accruals", data={"as_of": day, "csrf": csrf})
            assert refused.url.path == "/accruals"  # no job: the page says why at once
            assert _alert(refused.text, "error") == refusal
            assert f'name="as_of" value="{day}"' in refused.text  # the day typed stays

        csrf = _sign_in(client, "ivan", secrets["ivan"])
        audit_page = client.get("/audit").text
        csrf = re.findall(r'name="csrf" value="([^"]+)"', audit_page)[0]
        started = client.post("/audit/runs", data={"period": "2026-03", "csrf": csrf})
        # The job's title names the month as the reader writes it, not by its code.
        assert "<title>2026年3月 审计" in started.text
        page = _ended(client, started)
        # The job ran the service: its run is stored (this clean world has nothing to find).
        assert _alert(page, "done") == "2026年3月 审计：0 项发现，其中新增 0 项。"
    with store.work() as session:
        assert [tuple(row) for row in session.execute(select(AuditRun.period, AuditRun.actor))] == [
            ("2026-03", "ivan")
        ]


def test_a_job_page_shows_the_progress_to_its_owner_only(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path, _form("credit_note"))
    client, secrets = _client(store, tmp_path, world)
    release = threading.Event()

    def slow(progress: ProgressHook) -> dict[str, object]:
        Stages(progress, Stage.EXPIRING, Stage.PLANNING, Stage.RATING, Stage.POSTING).begin(
            Stage.RATING
        )
        progress("engine", 1, 2)
        assert release.wait(30)
        return {"error": "stopped by the test"}

    with client:
        _sign_in(client, "fay", secrets["fay"])
        job = client.app.state.jobs.start(  # type: ignore[attr-defined]
            owner="fay",
            title="Accrual run as of {date}",
            title_values={"date": dt.date(2026, 3, 31)},
            back="/accruals",
            show=_accruals_page,
            work=slow,
        )
        deadline = time.monotonic() + 10
        page = client.get(f"/jobs/{job.id}").text
        while "62%" not in page and time.monotonic() < deadline:
            time.sleep(0.02)
            page = client.get(f"/jobs/{job.id}").text
        assert "计提（截至 2026年3月31日）" in page
        assert _alert(page, "percent") == "62%"  # the third of four stages, half done
        assert "正在计算返利" in page
        # Every other page names the job under way, with a way back.
        assert f'href="/jobs/{job.id}">计提（截至 2026年3月31日）</a> · 进行中 · 62%' in (
            client.get("/settlements").text
        )
        _sign_in(client, "fred", secrets["fred"])
        assert client.get(f"/jobs/{job.id}").status_code == 404  # not fred's
        _sign_in(client, "fay", secrets["fay"])
        release.set()
        page = client.get(f"/jobs/{job.id}").text
        while 'data-testid="job"' in page:
            time.sleep(0.02)
            page = client.get(f"/jobs/{job.id}").text
        assert _alert(page, "error") == "stopped by the test"
        assert "进行中" not in client.get("/settlements").text
