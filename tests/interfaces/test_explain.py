"""Explanations read like the arithmetic a person would do by hand."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa

from fanli.agreements.files import agreements_from_data, parse_terms_text
from fanli.engine.explain import explain
from fanli.engine.results import ResultRow

TERMS = """
id: T1
term: {start: 2026-01-01, end: 2027-01-01}
rebate:
  method: %s
  tiers: [{from: 0, to: 1000, rate: 10}, {from: 1000, to: 2500, rate: 25}, {from: 2500, rate: 30}]
"""


def row(rebate: str) -> ResultRow:
    d = Decimal
    return ResultRow(
        "T1",
        1,
        "C1",
        1,
        dt.date(2026, 1, 1),
        dt.date(2026, 4, 1),
        "CNY",
        2,
        d("2000"),
        d("2000"),
        d("2000"),
        None,
        None,
        2,
        d("25"),
        d(rebate),
        d(rebate),
        d(rebate),
        d(rebate),
    )


LINES = pa.table(
    {
        "line_id": ["L1", "L2", "L3"],
        "net_amount": pa.array(
            [Decimal("1500"), Decimal("600"), Decimal("-100")], pa.decimal128(18, 4)
        ),
        "role": ["earning", "earning", "earning"],
    }
)


def test_each_method_shows_its_formula() -> None:
    expected = {
        "whole_volume": ("500", "Whole volume: 25% x 2,000.00 = 500.00"),
        "marginal": ("350", "Marginal: 1,000.00 x 10% + 1,000.00 x 25% = 350.00"),
        "rolling": ("600", "Rolling: 1,000.00 x 10% + 2,000.00 x 25% = 600.00"),
        "all_reached": ("700", "All bands reached: (10% + 25%) x 2,000.00 = 700.00"),
    }
    for method, (amount, formula) in expected.items():
        agreement = agreements_from_data(parse_terms_text(TERMS % method))[0]
        text = explain(agreement, row(amount), LINES)
        assert formula in text.splitlines()
        assert "Rounding: half up to 0.01: exact 2,000.00" not in text
        # The terms' codes are said in plain words, not as written (half_up, all_reached).
        assert f"Rounding: half up to 0.01: exact {amount}.00 -> R = {amount}.00" in text
        assert "_" not in text
        assert "Note:" not in text  # the formula agrees with the row


def test_lines_returns_and_band() -> None:
    agreement = agreements_from_data(parse_terms_text(TERMS % "marginal"))[0]
    lines = explain(agreement, row("350"), LINES).splitlines()
    assert lines[3] == (
        "Earning lines: 3, total net amount 2,000.00, including 1 return/credit-note lines "
        "totalling -100.00; L1, L2, L3"
    )
    assert "Tier reached: band 2 [1,000.00, 2,500.00) at 25% (tier value 2,000.00)" in lines
    assert lines[-1] == "Accrual (actual): 350.00 CNY, the cumulative rebate"
    assert lines[1].startswith("Window: the period Jan 1, 2026 to Mar 31, 2026 ("), lines[1]
    chinese = explain(agreement, row("350"), LINES, language="zh")
    assert "达到阶梯：第 2 档 [1,000.00, 2,500.00)，费率 25%（阶梯值 2,000.00）" in chinese
    # The terms' codes are in Chinese too: method, event, period kind and rounding.
    chinese_lines = chinese.splitlines()
    assert chinese_lines[1].endswith("（按季度，按期计算）"), chinese_lines[1]
    assert chinese_lines[2] == "销售行按开票日期计入"
    assert [line for line in chinese_lines if line.startswith(("超额累进：", "舍入："))] == [
        "超额累进：1,000.00 x 10% + 1,000.00 x 25% = 350.00",
        "舍入：四舍五入，精确到 0.01：精确值 350.00 -> R = 350.00",
    ]
