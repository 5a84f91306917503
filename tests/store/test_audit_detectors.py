"""The periodic audit over a seeded synthetic store (store/audit_world.py): every planted anomaly
is found by its detector, nothing is found on the clean part, running again duplicates nothing,
and findings go through their workflow into a report."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections import defaultdict
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy.orm import Session

from fanli.config import Settings
from fanli.interfaces.api.app import create_app
from fanli.interfaces.web.i18n import Lang
from fanli.interfaces.web.views import _said
from fanli.kit.errors import InputError, said_from_json
from fanli.ledger.models import AccountingPeriod
from fanli.oversight.audits import (
    Filters,
    FindingError,
    assign_finding,
    dismiss_finding,
    report,
    resolve_finding,
    run_audit,
    write_report,
)
from fanli.oversight.detectors import DETECTORS, Scope
from fanli.oversight.models import Finding
from fanli.sales.store import FactStore
from fanli.users.actor import PermissionDeniedError
from fanli.users.auth import enrol_second_factor, set_password
from second_factor import fresh_code
from store.audit_world import APRIL, CLOSE, PERIOD, AuditWorld, expected, expected_april
from store.conftest import Store


@pytest.fixture
def world(store: Store, tmp_path: Path) -> AuditWorld:
    return AuditWorld(store, tmp_path).build()


def _found(world: AuditWorld) -> dict[str, set[str]]:
    with world.store.work() as session:
        found: dict[str, set[str]] = defaultdict(set)
        for finding in session.query(Finding):
            found[finding.detector].add(finding.fingerprint)
    return dict(found)


def test_every_planted_anomaly_and_nothing_else(world: AuditWorld) -> None:
    with world.store.work() as session:
        run = run_audit(session, world.store.facts, PERIOD, actor=world.who["ivan"], now=CLOSE)
        assert run.detectors == list(DETECTORS)
    assert _found(world) == expected(world)
    with world.store.work() as session:  # April: nothing posted, but a return came in
        run = run_audit(session, world.store.facts, "2026-04", actor=world.who["ivan"], now=APRIL)
        assert (run.found, run.opened) == (2, 1)  # R's rate is the March finding again
    found = _found(world)
    for detector, subjects in expected_april(world).items():
        assert subjects <= found[detector]
    assert found["tier_gaming"] == expected_april(world)["tier_gaming"]
    # A planted anomaly for every detector.
    assert set(expected(world)) | set(expected_april(world)) == set(DETECTORS)


def test_findings_name_their_evidence(world: AuditWorld) -> None:
    with world.store.work() as session:
        run_audit(session, world.store.facts, PERIOD, actor=world.who["ivan"], now=CLOSE)
    with world.store.work() as session:
        by = {f.detector: f for f in report(session)}
        outlier = by["rate_outliers"]
        assert outlier.summary == (
            "W16 earned 9.00% of its basis; its 17 peers in segment 批发 have a median of 2.00% "
            "(modified z-score 9.4, median absolute deviation 0.50 points)"
        )
        assert outlier.evidence["statistic"] == "modified z-score 0.6745 (x - median) / MAD"
        mismatch = by["amount_mismatch"]
        assert (
            mismatch.summary
            == (
                f"payout {world.payout['W07']} paid 1400.0000 to W07; the approved amount is 900.00"
            )
            or mismatch.amount == 500
        )
        assert [e["type"] for e in mismatch.evidence["events"]] == [
            "settlement.proposed",
            "settlement.approved",
            "settlement.paid",
        ]
        split = by["split_settlements"]
        assert split.evidence["threshold"] == "10000"


def test_running_again_duplicates_nothing(world: AuditWorld) -> None:
    for _ in range(2):
        with world.store.work() as session:
            run = run_audit(session, world.store.facts, PERIOD, actor=world.who["ivan"], now=CLOSE)
    assert (run.found, run.opened) == (13, 0)
    with world.store.work() as session:
        assert session.query(Finding).count() == 13


def test_a_month_to_come_is_not_audited(world: AuditWorld) -> None:
    """On 6 April, May has nothing to audit: an empty run would read as a clean bill."""
    with (
        world.store.work() as session,
        pytest.raises(InputError, match="2026-05 has not started yet; there is nothing"),
    ):
        run_audit(session, world.store.facts, "2026-05", actor=world.who["ivan"], now=APRIL)


def test_the_findings_workflow_and_report(world: AuditWorld, tmp_path: Path) -> None:
    who = world.who
    with world.store.work() as session:
        run_audit(session, world.store.facts, PERIOD, actor=who["ivan"], now=CLOSE)
    with world.store.work() as session:
        ids = {f.detector: f.id for f in report(session)}
    with world.store.work() as session, pytest.raises(PermissionDeniedError):
        assign_finding(session, ids["amount_mismatch"], "fay", actor=who["fay"], now=CLOSE)
    with world.store.work() as session, pytest.raises(FindingError, match="assign it first"):
        resolve_finding(session, ids["amount_mismatch"], reason="x", actor=who["ivan"], now=CLOSE)
    with world.store.work() as session, pytest.raises(InputError, match="amy cannot resolve"):
        assign_finding(session, ids["amount_mismatch"], "amy", actor=who["ivan"], now=CLOSE)
    with world.store.work() as session:
        assign_finding(session, ids["amount_mismatch"], "fay", actor=who["ivan"], now=CLOSE)
        assign_finding(session, ids["approval_chain"], "fred", actor=who["ivan"], now=CLOSE)
    with world.store.work() as session:
        resolve_finding(
            session,
            ids["amount_mismatch"],
            reason="500 recovered by credit note CN-W07-R",
            actor=who["fay"],  # the owner
            now=CLOSE,
        )
        dismiss_finding(
            session,
            ids["rate_outliers"],
            reason="W16's strategic agreement X, approved",
            actor=who["ivan"],
            now=CLOSE,
        )
    with world.store.work() as session, pytest.raises(FindingError, match="is resolved"):
        dismiss_finding(session, ids["amount_mismatch"], reason="x", actor=who["ivan"], now=CLOSE)
    with world.store.work() as session:  # a re-run keeps the workflow's state
        run_audit(session, world.store.facts, PERIOD, actor=who["ivan"], now=CLOSE)
    with world.store.work() as session:
        statuses = {f.detector: (f.status, f.owner) for f in report(session)}
        assert statuses["amount_mismatch"] == ("resolved", "fay")
        assert statuses["approval_chain"] == ("assigned", "fred")
        assert statuses["rate_outliers"] == ("dismissed", None)
        assert [f.detector for f in report(session, Filters(owner="fred"))] == ["approval_chain"]
        compliance = report(session, Filters(department="compliance", status="open"))
        assert sorted(f.detector for f in compliance) == [
            "above_policy",
            "above_policy",
            "lapsed_due_diligence",
            "manual_overrides",
        ]
        path = tmp_path / "findings.xlsx"
        write_report(report(session, Filters(period=PERIOD)), path)
    book = load_workbook(path)
    rows = list(book["findings"].values)
    assert len(rows) == 14  # the header and 13 findings
    summary = {(r[0], r[1]): r[2:] for r in list(book["summary"].values)[1:]}
    assert summary[("status", "open")] == (10, 10, 0, 0, 0)
    assert summary[("owner", "fred")] == (1, 0, 1, 0, 0)
    assert summary[("department", "finance")][0] == 7


def test_every_summary_is_kept_as_a_sentence_the_pages_can_say(
    world: AuditWorld, tmp_path: Path
) -> None:
    """A finding's summary is stored in English (the API, exports) and as its template and
    values: said again in English it is the same text, and the audit page says it in Chinese."""
    with world.store.work() as session:
        run_audit(session, world.store.facts, PERIOD, actor=world.who["ivan"], now=CLOSE)
        run_audit(session, world.store.facts, "2026-04", actor=world.who["ivan"], now=APRIL)
    with world.store.work() as session:
        findings = report(session)
    assert {f.detector for f in findings} == set(DETECTORS)
    for finding in findings:
        assert finding.summary_said is not None
        assert str(said_from_json(finding.summary_said)) == finding.summary, finding.detector
    outlier = next(f for f in findings if f.detector == "rate_outliers" and f.period == PERIOD)
    chinese = (
        "W16 的返利为其基数的 9.00%；客户类别 批发 中 17 个同类客户的中位数为 2.00%"
        "（修正 z 分数 9.4，中位数绝对偏差 0.50 个百分点）"
    )
    assert _said(Lang("zh_CN", "Asia/Shanghai"), said_from_json(outlier.summary_said)) == chinese
    # The page: the internal auditor reads the findings in Chinese, every one translated.
    with world.store.work() as session:
        set_password(
            session,
            "ivan",
            "correct horse battery",
            actor=world.who["admin"],
            now=CLOSE,
            must_change=False,
        )
        secret = enrol_second_factor(session, "ivan", actor=world.who["admin"], now=CLOSE)
    settings = Settings(
        data_dir=tmp_path, database_url=world.store.engine.url.render_as_string(False)
    )
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        client.post(
            "/signin",
            data={"user": "ivan", "password": "correct horse battery", "totp": fresh_code(secret)},
        )
        page = client.get("/audit")
    assert page.status_code == 200
    shown = [
        html.unescape(re.sub(r"<div.*", "", cell))
        for cell in re.findall(r'data-testid="summary">(.*?)</td>', page.text, re.S)
    ]
    assert len(shown) == len(findings)
    assert chinese in shown
    # No English sentence is left: each summary opens with Chinese or a code and holds Chinese.
    assert all(re.search(r"[\u4e00-\u9fff]", text) for text in shown), shown


def test_a_stored_time_counts_on_the_company_day() -> None:
    """23:30 UTC on 31 March is 07:30 on 1 April in Shanghai: a payout then is April's."""
    april = AccountingPeriod(code="2026-04", start=dt.date(2026, 4, 1), end=dt.date(2026, 5, 1))
    late = dt.datetime(2026, 3, 31, 23, 30, tzinfo=dt.UTC)
    shanghai = Scope(
        cast(Session, None), cast(FactStore, None), april, zone=ZoneInfo("Asia/Shanghai")
    )
    assert (shanghai.day(late), shanghai.in_period(late)) == (dt.date(2026, 4, 1), True)
    utc = Scope(cast(Session, None), cast(FactStore, None), april)
    assert (utc.day(late), utc.in_period(late)) == (dt.date(2026, 3, 31), False)
