"""The chart of accounts file: the documented example loads; a wrong one names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from fanli.kit.errors import InputError
from fanli.ledger.export import load_chart

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "chart.yaml"


def test_the_documented_chart() -> None:
    chart = load_chart(EXAMPLE)
    assert chart.code("rebate_contra_revenue", "accrual") == "6001.05"
    assert chart.code("rebate_contra_revenue", "adjustment") == "6001.06"
    assert chart.code("rebate_liability", "adjustment") == "2241.01"
    assert chart.cost_centre == "SALES-EAST"


def test_a_wrong_chart_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "chart.yaml"
    path.write_text("accounts:\n  rebate_income: '6001'\n", encoding="utf-8")
    with pytest.raises(InputError) as raised:
        load_chart(path)
    assert raised.value.field == "accounts.rebate_income.[key]"
    path.write_text("acounts: {}\n", encoding="utf-8")
    with pytest.raises(InputError) as raised:
        load_chart(path)
    assert str(raised.value) == f"file {path}, field 'acounts': Extra inputs are not permitted"


def test_a_misspelt_entry_kind_or_a_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chart.yaml"
    path.write_text("entry_kinds:\n  adjustmnet: {rebate_liability: '2241.09'}\n", "utf-8")
    with pytest.raises(InputError) as raised:
        load_chart(path)
    assert raised.value.field == "entry_kinds.adjustmnet.[key]"
    path.write_bytes(b"\xff\xfeaccounts: {}")
    with pytest.raises(InputError) as raised:
        load_chart(path)
    assert str(raised.value) == f"file {path}: is not UTF-8 text"
    path.write_bytes(b"\xef\xbb\xbfcost_centre: SALES-WEST\n")  # a byte-order mark is skipped
    assert load_chart(path).cost_centre == "SALES-WEST"
