"""Rows written to workbooks and CSV files that people open in Excel: never as formulas.

Text from users (a file's name, a header, a customer's name) can begin with ``=``; openpyxl
writes such a string as a formula, and Excel runs a CSV cell that begins with ``=``, ``+``,
``-`` or ``@`` as one (CSV injection). A workbook's text cells are therefore typed as text,
and a CSV report's text cells that would start a formula are quoted with ``'``, as Excel does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def append_text_safe(sheet: Any, values: Sequence[Any]) -> None:
    """Append ``values`` to the worksheet as a row; text stays text."""
    sheet.append(list(values))
    for cell in sheet[sheet.max_row]:
        # a formula (=...) or an error value (#N/A, #REF!): openpyxl types such text so
        if isinstance(cell.value, str) and cell.data_type in {"f", "e"}:
            cell.data_type = "s"


def inert(value: Any) -> Any:
    """A CSV cell that Excel shows as written: text that would start a formula gets a ``'``."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value
