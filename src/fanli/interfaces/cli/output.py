"""Rendering for the CLI: result files (CSV, Excel, Parquet) and Rich tables.

Result files keep every amount exact: CSV holds decimal text (money at the currency's minor
unit), Parquet keeps the decimal columns of ``RESULT_SCHEMA``, and Excel gets numbers with a
number format; a value Excel cannot hold exactly (more than 15 significant digits) is written as
text rather than silently rounded by the spreadsheet.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from rich.table import Table

from fanli.engine.explain import AgreementSummary
from fanli.engine.results import RESULT_SCHEMA
from fanli.kit.errors import InputError
from fanli.kit.money import MINOR_UNITS

MONEY_COLUMNS = ("window_rebate", "rebate", "cumulative_rebate", "accrual")
MEASURE_COLUMNS = ("basis", "window_basis", "tier_basis", "baseline", "gate_basis")
RATE_COLUMNS = ("rate",)
EXCEL_SIGNIFICANT_DIGITS = 15  # an Excel number is a binary double: 15 digits survive

RESULT_SUFFIXES = (".csv", ".xlsx", ".parquet")


def _places(currency: str | None) -> int:
    return MINOR_UNITS.get(currency or "", 2)


def _decimal_text(value: Decimal, minimum_places: int) -> str:
    """Exact text with at least ``minimum_places`` decimals and no needless trailing zeros."""
    exponent = value.normalize().as_tuple().exponent
    needed = max(0, -exponent) if isinstance(exponent, int) else 0
    return format(value.quantize(Decimal(1).scaleb(-max(minimum_places, needed))), "f")


def _cell_text(name: str, value: Any, currency: str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        if name in MONEY_COLUMNS:
            return _decimal_text(value, _places(currency))
        if name in MEASURE_COLUMNS:
            return _decimal_text(value, 2)
        return _decimal_text(value, 0)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def write_results(results: pa.Table, path: Path) -> None:
    """Write results as CSV, Excel or Parquet, chosen by the file's suffix."""
    suffix = path.suffix.lower()
    results = results.select(RESULT_SCHEMA.names)
    if suffix == ".parquet":
        pq.write_table(results.cast(RESULT_SCHEMA), path)
    elif suffix == ".csv":
        _write_csv(results, path)
    elif suffix == ".xlsx":
        _write_excel(results, path)
    else:
        raise InputError(
            f"unsupported result file type {suffix or '(none)'!r}; use .csv, .xlsx or .parquet",
            file=str(path),
            field="--out",
        )


def _records(results: pa.Table) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = results.to_pylist()
    return records


def _write_csv(results: pa.Table, path: Path) -> None:
    names = RESULT_SCHEMA.names
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(names)
        for record in _records(results):
            currency = record.get("currency")
            writer.writerow([_cell_text(name, record[name], currency) for name in names])


def _excel_format(name: str, currency: str | None) -> str | None:
    if name in MONEY_COLUMNS:
        places = _places(currency)
        return "#,##0" + ("." + "0" * places if places else "")
    if name in MEASURE_COLUMNS:
        return "#,##0.00##"
    if name in RATE_COLUMNS:
        return "0.######"
    if name in ("period_start", "period_end"):
        return "yyyy-mm-dd"
    return None


def _excel_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        digits = value.normalize().as_tuple().digits
        if len(digits) > EXCEL_SIGNIFICANT_DIGITS:
            return format(value, "f")  # text keeps it exact where a double would not
    return value


def _write_excel(results: pa.Table, path: Path) -> None:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("results")
    names = RESULT_SCHEMA.names
    sheet.append(names)
    for record in _records(results):
        currency = record.get("currency")
        cells = []
        for name in names:
            cell = WriteOnlyCell(sheet, value=_excel_value(record[name]))
            number_format = _excel_format(name, currency)
            if number_format is not None:
                cell.number_format = number_format
            cells.append(cell)
        sheet.append(cells)
    workbook.save(path)


def money_text(value: Decimal, currency: str) -> str:
    """``12,345.60`` for display."""
    return format(value.quantize(Decimal(1).scaleb(-_places(currency))), ",f")


def summary_table(summaries: Sequence[AgreementSummary], *, title: str) -> Table:
    """One line per agreement: beneficiaries, basis, rebate and accrual."""
    table = Table(title=title, title_justify="left")
    table.add_column("agreement", no_wrap=True)
    for header in ("beneficiaries", "periods", "basis", "rebate", "accrual"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("currency", no_wrap=True)
    table.add_column("name", overflow="ellipsis", no_wrap=True)
    for summary in summaries:
        table.add_row(
            summary.agreement_id,
            str(summary.beneficiaries),
            str(summary.periods),
            format(summary.basis.quantize(Decimal("0.01")), ",f"),
            money_text(summary.rebate, summary.currency),
            money_text(summary.accrual, summary.currency),
            summary.currency,
            summary.name,
        )
    return table
