"""Text written to workbooks and CSV reports is never a formula."""

from __future__ import annotations

import io
from decimal import Decimal

from openpyxl import Workbook, load_workbook

from fanli.kit.sheets import append_text_safe, inert


def test_text_that_starts_like_a_formula_stays_text() -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    append_text_safe(sheet, ["=1+2", "+86 21", Decimal("-5.00"), "plain", "#N/A"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    cells = list(load_workbook(io.BytesIO(buffer.getvalue())).active[1])
    assert [(cell.value, cell.data_type) for cell in cells] == [
        ("=1+2", "s"),
        ("+86 21", "s"),
        (-5, "n"),
        ("plain", "s"),
        ("#N/A", "s"),
    ]
    assert [inert(v) for v in ("=cmd", "+1", "-1", "@x", "a=b", 5)] == [
        "'=cmd",
        "'+1",
        "'-1",
        "'@x",
        "a=b",
        5,
    ]
