"""The ledger seen whole (``fanli.ledger.overview``): totals per period, leaders and near misses
kept apart per currency, and a standing's distance to its next band. On both databases, and
through the dashboard, which shows one section per currency and never adds them together."""

from __future__ import annotations

import datetime as dt
import re
import time
from decimal import Decimal
from pathlib import Path

from fastapi.testclient import TestClient
from openpyxl import load_workbook

from fanli.agreements.service import add_version
from fanli.config import Settings
from fanli.interfaces.api.app import create_app
from fanli.ledger import overview
from fanli.ledger.export import export_gl
from fanli.ledger.overview import Leaders, NearMiss, PeriodTotals, TierProgress, tier_progress
from fanli.ledger.queries import account_movements
from fanli.ledger.service import accrue
from fanli.users.auth import enrol_second_factor, set_password
from second_factor import fresh_code
from store.builders import activate, last_event, percent_agreement, staff
from store.conftest import NOW, Store
from store.test_settlements import World

D = Decimal
BANDS = {
    "rebate": {
        "form": "percent",
        "tiers": [
            {"from": "0", "rate": "1"},
            {"from": "1000", "rate": "2"},
            {"from": "3000", "rate": "3"},
        ],
    }
}


def test_tier_progress_measures_the_way_to_the_next_band() -> None:
    assert tier_progress(BANDS, 1, D("250")) == TierProgress(
        "percent", False, False, False, D("1000"), D("750"), 25
    )
    assert tier_progress(BANDS, 2, D("2500")) == TierProgress(
        "percent", False, False, False, D("3000"), D("500"), 75
    )
    # Below the first band (a band starting above zero): from nothing to the first threshold.
    above = {"rebate": {"tiers": [{"from": "500", "rate": "1"}]}}
    assert tier_progress(above, 0, D("100")) == TierProgress(
        "percent", False, False, False, D("500"), D("400"), 20
    )
    # The top band: nothing more to reach.
    assert tier_progress(BANDS, 3, D("9000")) == TierProgress(
        "percent", False, False, False, None, None, 100
    )
    # Growth bands are percentages of a baseline: no amount to reach is claimed.
    growth = {**BANDS, "growth": {"baseline": "prior_year"}}
    assert tier_progress(growth, 1, D("105")) == TierProgress(
        "percent", False, False, True, None, None, 100
    )
    # A band reached that earns nothing says why: below the minimum (and how far), or the gate.
    minimum = {**BANDS, "minimum": "2000"}
    assert tier_progress(minimum, 2, D("1500"), D("0")) == TierProgress(
        "percent", False, False, False, D("2000"), D("500"), 75, "minimum"
    )
    assert tier_progress(minimum, 2, D("2500"), D("50")).held_back is None  # earns: no reason
    gated = {**BANDS, "gate": {"target": "5000"}}
    assert tier_progress(gated, 3, D("9000"), D("0")) == TierProgress(
        "percent", False, False, False, None, None, 0, "gate"
    )
    assert tier_progress(gated, 3, D("9000"), D("270")).held_back is None
    units = {"rebate": {"form": "per_unit", "basis": "quantity", "tiers": BANDS["rebate"]["tiers"]}}
    assert tier_progress(units, 2, D("1000")) == TierProgress(
        "per_unit", True, True, False, D("3000"), D("2000"), 0
    )


def _two_currencies(store: Store, tmp_path: Path) -> World:
    """A1 pays 2% in CNY; A2 pays 1% in USD, 3% from 11,000 (C1's 10,000 is 1,000 short).
    Lines that state no currency are in CNY: they count for A1, not for A2."""
    world = World(store, tmp_path)
    world.agreement(percent_agreement())
    usd = percent_agreement(
        "A2",
        currency="USD",
        tiers=[{"from": "0", "to": "11000", "rate": "1"}, {"from": "11000", "rate": "3"}],
    )
    with store.work() as session:
        activate(session, add_version(session, usd, actor=staff("sam"), now=NOW).id, now=NOW)
    world.sales(
        ("L1", "C1", "P1", "2026-02-10", "10", "10000.00"),
        ("L2", "C2", "P1", "2026-02-11", "1", "500.00"),
        ("L3", "C1", "P1", "2026-02-10", "10", "10000.00", "USD"),
        ("L4", "C2", "P1", "2026-02-11", "1", "500.00", "USD"),
    )
    world.accrue("2026-03-31")
    return world


def test_amounts_are_kept_apart_per_currency(store: Store, tmp_path: Path) -> None:
    _two_currencies(store, tmp_path)
    with store.work() as session:
        # The run's audit event keeps each currency's change, and no sum of the two.
        event = last_event(session, "ledger.accrual.run")
        assert (event.outcome["net_change"], event.outcome["adjusted"]) == (None, None)
        assert event.outcome["by_currency"] == {
            "CNY": {"net_change": "210.0000", "adjusted": "0.0000"},
            "USD": {"net_change": "105.0000", "adjusted": "0.0000"},
        }
        totals = overview.period_totals(session)
        assert totals == {
            "CNY": [PeriodTotals("2026-03", D("210.00"), D("0.00"), D("210.00"))],
            "USD": [PeriodTotals("2026-03", D("105.00"), D("0.00"), D("105.00"))],
        }
        assert overview.leaders(session) == {
            "CNY": Leaders([("C1", D("200.00")), ("C2", D("10.00"))], [("A1", D("210.00"))]),
            "USD": Leaders([("C1", D("100.00")), ("C2", D("5.00"))], [("A2", D("105.00"))]),
        }
        # A sales user's view: only the customers assigned (here C2).
        assert overview.leaders(session, {"C2"})["USD"] == Leaders(
            [("C2", D("5.00"))], [("A2", D("5.00"))]
        )
        near = overview.near_misses(session, store.facts, dt.date(2026, 3, 15))
        assert near == [NearMiss("C1", "A2", 1, D("1000.0000"), False, "USD")]
        assert overview.near_misses(session, store.facts, dt.date(2026, 3, 15), {"C2"}) == []
        # Within 5% is nearer than 1,000 of 11,000.
        assert (
            overview.near_misses(session, store.facts, dt.date(2026, 3, 15), share=D("0.05")) == []
        )


PASSWORD = "correct horse battery"


def test_the_gl_export_keeps_each_currency_apart(store: Store, tmp_path: Path) -> None:
    """A CNY and a USD programme in one period: each GL row names its currency, and there is
    one total per currency, each tying out to the ledger in that currency; JPY has no places."""
    world = _two_currencies(store, tmp_path)
    yen = percent_agreement("A3", currency="JPY", tiers=[{"from": "0", "rate": "1.2345"}])
    world.sales(
        ("Y1", "C1", "P1", "2026-02-10", "10", "10000", "JPY"),
        ("Y2", "C2", "P1", "2026-02-11", "1", "500", "JPY"),
    )
    with store.work() as session:
        activate(session, add_version(session, yen, actor=staff("sam"), now=NOW).id, now=NOW)
    with store.work() as session:
        run = accrue(session, store.facts, as_of=dt.date(2026, 3, 31), actor=staff("f"), now=NOW)
        event = last_event(session, "ledger.accrual.run")
    # the run that adds A3 posts only yen, said per currency
    assert run.by_currency == {"JPY": (D("129.0000"), D("0.0000"))}
    assert event.outcome["by_currency"] == {"JPY": {"net_change": "129.0000", "adjusted": "0.0000"}}
    with store.work() as session:
        exported = export_gl(
            session, store.facts, "2026-03", tmp_path / "gl.csv", actor=staff("fin"), now=NOW
        )
        movements = account_movements(session, "2026-03")
        export_gl(
            session, store.facts, "2026-03", tmp_path / "gl.xlsx", actor=staff("fin"), now=NOW
        )
    # Per customer (C1 10,000.00, C2 500.00): A1 2% in CNY, 200.00 + 10.00; A2 1% in USD,
    # 100.00 + 5.00; A3 1.2345% in JPY, to whole yen: 123 (123.45) + 6 (6.1725).
    assert exported.totals == {
        "CNY": (D("210.0000"), D("210.0000")),
        "JPY": (D("129.0000"), D("129.0000")),
        "USD": (D("105.0000"), D("105.0000")),
    }
    assert {currency: held["rebate_contra_revenue"][0] for currency, held in movements.items()} == {
        "CNY": D("210.0000"),
        "JPY": D("129.0000"),
        "USD": D("105.0000"),
    }
    assert exported.by_account[("6001.05", "USD")] == movements["USD"]["rebate_contra_revenue"]
    rows = [line.split(",") for line in (tmp_path / "gl.csv").read_text("utf-8-sig").splitlines()]
    assert rows[0][6:9] == ["debit", "credit", "currency"]
    assert {(row[8], row[12]) for row in rows[1:-3]} == {
        ("CNY", "A1"),
        ("USD", "A2"),
        ("JPY", "A3"),
    }
    assert [row[:9] for row in rows[-3:]] == [
        ["total", "", "2026-03", "", "", "", "210.00", "210.00", "CNY"],
        ["total", "", "2026-03", "", "", "", "129", "129", "JPY"],
        ["total", "", "2026-03", "", "", "", "105.00", "105.00", "USD"],
    ]
    sheet = load_workbook(tmp_path / "gl.xlsx").active
    assert sheet is not None
    ends = [[cell.value for cell in row[:9]] for row in sheet.iter_rows(min_row=sheet.max_row - 2)]
    assert [end[6:9] for end in ends] == [[210, 210, "CNY"], [129, 129, "JPY"], [105, 105, "USD"]]
    formats = [sheet.cell(row=sheet.max_row - 2 + i, column=7).number_format for i in range(3)]
    assert formats == ["#,##0.00##", "#,##0", "#,##0.00##"]


def test_the_dashboard_shows_one_section_per_currency(store: Store, tmp_path: Path) -> None:
    world = _two_currencies(store, tmp_path)
    with store.work() as session:
        set_password(session, "fay", PASSWORD, actor=world["admin"], now=NOW, must_change=False)
        secret = enrol_second_factor(session, "fay", actor=world["admin"], now=NOW)
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        totp = fresh_code(secret)
        client.post("/signin", data={"user": "fay", "password": PASSWORD, "totp": totp})
        page = client.get("/lang/en?back=/dashboard").text
    accrued = re.search(r'data-testid="accrued">((?:<div>[^<]*</div>)*)', page)
    assert accrued is not None
    assert re.findall(r"<div>([^<]*)</div>", accrued[1]) == ["CN¥210.00", "$105.00"]
    sections = dict(re.findall(r'data-testid="currency-(\w+)">(.*?)</section>', page, re.S))
    assert list(sections) == ["CNY", "USD"]
    assert "In CNY" in sections["CNY"]
    rows = re.findall(  # the period's month as English writes it
        r'<tr><td class="text-nowrap">(Mar 2026)</td>((?:<td[^>]*>[^<]*</td>){3})</tr>',
        sections["USD"],
    )
    assert [re.findall(r">([^<]+)<", cells) for _period, cells in rows] == [
        ["$105.00", "$0.00", "$105.00"]
    ]
    # The near misses are for the periods running today, and Q1 2026 has ended.
    assert (
        'data-testid="near"><tbody><tr><td class="text-body-secondary">None within reach.' in page
    )


def test_a_run_in_two_currencies_says_each_change_apart(store: Store, tmp_path: Path) -> None:
    """The accruals page after a run of a CNY and a USD programme: each currency's change,
    never their sum (210.00 + 105.00 would read as 315.00 of something)."""
    world = World(store, tmp_path)
    world.agreement(percent_agreement())
    usd = percent_agreement("A2", currency="USD", tiers=[{"from": "0", "rate": "1"}])
    with store.work() as session:
        activate(session, add_version(session, usd, actor=staff("sam"), now=NOW).id, now=NOW)
        set_password(session, "fay", PASSWORD, actor=world["admin"], now=NOW, must_change=False)
        secret = enrol_second_factor(session, "fay", actor=world["admin"], now=NOW)
    world.sales(
        ("L1", "C1", "P1", "2026-02-10", "10", "10000.00"),
        ("L2", "C2", "P1", "2026-02-11", "1", "500.00"),
        ("L3", "C1", "P1", "2026-02-10", "10", "10000.00", "USD"),
        ("L4", "C2", "P1", "2026-02-11", "1", "500.00", "USD"),
    )
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        signed = client.post(
            "/signin", data={"user": "fay", "password": PASSWORD, "totp": fresh_code(secret)}
        )
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/accruals").text)
        assert csrf is not None, signed.text[-500:]
        started = client.post("/accruals", data={"as_of": "2026-03-31", "csrf": csrf[1]})
        page = started.text
        deadline = time.monotonic() + 60
        while 'data-testid="job"' in page:  # the run is a job: ask again until it ends
            assert time.monotonic() < deadline, "the run did not end"
            time.sleep(0.05)
            page = client.get(started.url.path).text
    accrued = re.search(r'data-testid="accrued">([^<]*)<', page)
    assert accrued is not None, page[-2000:]
    run = re.search(r"第 (\d+) 次计提", accrued[1])
    assert run is not None
    assert accrued[1] == f"第 {run[1]} 次计提：过账 4 行分录，负债变动 ¥210.00, US$105.00。"


def test_a_reversed_accrual_lowers_the_accrued_and_a_payout_is_settled(
    store: Store, tmp_path: Path
) -> None:
    world = World(store, tmp_path)
    world.agreement(percent_agreement())  # 2% in CNY
    world.sales(
        ("L1", "C1", "P1", "2026-02-10", "10", "10000.00"),
        ("L2", "C2", "P1", "2026-02-11", "1", "500.00"),
    )
    world.accrue("2026-03-31")  # 200.00 + 10.00
    paid = world.propose("C1")
    world.approve(paid, "amy")
    world.pay(paid, document_number="CN-1")  # 200.00 settled
    world.sales(("R2", "C2", "P1", "2026-03-20", "-1", "-500.00"))  # C2 returns everything
    world.accrue("2026-03-31")  # reverses C2's 10.00: less accrued, nothing settled
    with store.work() as session:
        totals = overview.period_totals(session)
        assert list(totals) == ["CNY"]
        # Run 2 posted -10.00 in March: the accrued is net, 200.00; the payout (posted on
        # NOW's day, in November) is the only settlement.
        assert totals == {
            "CNY": [
                PeriodTotals("2026-03", D("200.00"), D("0.00"), D("200.00")),
                PeriodTotals("2026-11", D("0.00"), D("200.00"), D("0.00")),
            ]
        }
        # C2 alone (a sales user's view): 10.00 accrued and reversed, nothing settled.
        assert overview.period_totals(session, {"C2"}) == {
            "CNY": [
                PeriodTotals("2026-03", D("0.00"), D("0.00"), D("0.00")),
                PeriodTotals("2026-11", D("0.00"), D("0.00"), D("0.00")),
            ]
        }
