"""Read sales, customers and products from CSV, Excel and Parquet into the canonical Arrow tables.

Every file is first read as text (CSV and Excel) or as its own typed columns (Parquet, where
binary floats in measure columns are refused), mapped to Fanli fields (``fanli.sales.mapping``)
and then validated and converted column by column with Arrow compute kernels, so a file of
millions of lines is never walked row by row in Python (Excel, which openpyxl hands over cell by
cell, is the exception). Amounts and quantities are parsed from their text straight into
decimals: a float never carries money.

Validation collects every problem of a file before failing. The error raised is one
``InputFileError`` whose message is one line naming the file, the row as the user sees it (the
header is row 1; in Parquet, which has no header, the first record is row 1) and the column, and
whose ``issues`` hold the rest. Nothing partial is ever returned.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import datetime as dt
import functools
import io
import json
import math
import re
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from openpyxl import load_workbook
from openpyxl.utils import column_index_from_string
from openpyxl.xml.functions import iterparse

from fanli.config import company_zone
from fanli.engine.facts import (
    CUSTOMER_BUILTINS,
    DATE_COLUMNS,
    FACT_DECIMAL,
    MEASURE_COLUMNS,
    PRODUCT_BUILTINS,
    SALES_SCHEMA,
)
from fanli.kit.errors import Code, InputError, Said, said
from fanli.kit.money import CURRENCY_NAMES, FACT_SCALE, MINOR_UNITS
from fanli.kit.periods import FIRST_DAY, LAST_DAY
from fanli.kit.progress import ProgressHook
from fanli.sales.mapping import (
    ALIASES,
    DOCUMENT_TYPE_VALUES,
    DOCUMENT_TYPES,
    ColumnMapping,
    FileKind,
    ResolvedColumns,
    normalize_header,
    resolve_columns,
)

# A file being read reports ``hook(file, done, total)``: bytes for CSV and Parquet, rows for
# Excel. The CLI turns it into a progress bar (fanli.kit.progress).

HEADERS_METADATA = "fanli.headers"  # schema metadata: Fanli field -> the file's header
MAX_ISSUES = 1000  # issues kept in detail; the count of the rest is still reported
_MAX_INTEGER_DIGITS = 18 - FACT_SCALE

CSV_SUFFIXES = (".csv", ".txt")
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class RowIssue:
    """One problem in one cell (or one row, or the header) of an input file: ``message`` in
    English (reports, the API, the log), ``said`` the same for a page to say in the reader's
    language (None: the English is all there is)."""

    row: int | None
    field: str | None
    message: str
    said: Said | None = dataclass_field(default=None, compare=False)

    @classmethod
    def of(cls, row: int | None, column: str | None, problem: Said | str) -> RowIssue:
        if isinstance(problem, Said):
            return cls(row, column, str(problem), problem)
        return cls(row, column, problem)


class InputFileError(InputError):
    """An input file with one or more problems; ``issues`` lists them in row order."""

    code = "invalid_input_file"

    def __init__(self, issues: list[RowIssue], *, file: str, total: int | None = None) -> None:
        self.issues = issues
        self.total = total if total is not None else len(issues)
        first = issues[0]
        more = self.total - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        super().__init__(first.message + suffix, file=file, row=first.row, field=first.field)


@dataclass(frozen=True)
class Facts:
    """The inputs of a calculation, in the canonical shapes of ``fanli.engine.facts``."""

    sales: pa.Table
    customers: pa.Table | None = None
    products: pa.Table | None = None


# ---- raw reading: any file -> a table of its own columns ------------------------------------


class Rows:
    """The row number, as the user sees the file, of each record read from it: ``first`` for
    the first record and one more for each next one, except after blank rows, which are
    skipped (a blank row in a workbook, an empty line in a CSV). ``skips`` holds, for each
    record that follows skipped rows, its index and its row number, in order.

    A CSV's empty lines are looked for only when a row number is first asked for (a problem
    to report): a good file is not read a second time for them."""

    def __init__(
        self,
        first: int,
        skips: tuple[tuple[int, int], ...] = (),
        *,
        csv_file: Path | None = None,
        records: int = 0,
    ) -> None:
        self.first = first
        self._skips: tuple[tuple[int, int], ...] | None = skips if csv_file is None else None
        self._csv_file = csv_file
        self._records = records

    @property
    def skips(self) -> tuple[tuple[int, int], ...]:
        if self._skips is None:
            assert self._csv_file is not None
            self._skips = _csv_skips(self._csv_file, self._records)
        return self._skips

    def __call__(self, index: int) -> int:
        skips = self.skips
        position = bisect.bisect_right(skips, (index, _LAST)) - 1
        if position < 0:
            return self.first + index
        start, row = skips[position]
        return row + index - start

    def as_json(self) -> str:
        if self._skips is None:
            return json.dumps(
                {"first": self.first, "csv": str(self._csv_file), "records": self._records}
            )
        return json.dumps({"first": self.first, "skips": self._skips})

    def __repr__(self) -> str:
        return f"Rows({self.as_json()})"


_LAST = 1 << 62  # compares after any row number
ROWS_METADATA = "fanli.rows"  # schema metadata: the records' rows (``Rows``) as JSON
SOURCE_METADATA = "fanli.source"  # schema metadata: the file as messages name it (its sheet)


def source_of(table: pa.Table, default: str) -> str:
    """The file a table was read from, as messages name it: with the sheet read, for a
    workbook of several sheets."""
    raw = (table.schema.metadata or {}).get(SOURCE_METADATA.encode())
    return raw.decode() if raw is not None else default


def rows_of(table: pa.Table) -> Rows:
    """Where the records of a table read by this module stand in their file."""
    metadata = table.schema.metadata or {}
    raw = metadata.get(ROWS_METADATA.encode())
    if raw is None:
        return Rows(1)
    found = json.loads(raw)
    if "csv" in found:
        return Rows(found["first"], csv_file=Path(found["csv"]), records=found["records"])
    return Rows(found["first"], tuple((index, row) for index, row in found["skips"]))


@dataclass(frozen=True)
class _Raw:
    table: pa.Table  # the file's columns under their own headers
    rows: Rows  # each record's row number as the user sees it
    source: str
    # A workbook's other visible sheets that hold lines: (title, header row). The reader checks
    # them once it knows the columns it matches (``_refuse_lines_left_on_other_sheets``).
    other_sheets: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # A workbook's number cells too large to be held exactly: (record, header, the text read).
    # The checks refuse those in the columns they read (``_Checker``).
    inexact: tuple[tuple[int, str, str], ...] = ()
    # A workbook's first rows below its header row, every cell of them (the header row may be
    # a title of one cell): (row, texts). Looked at only when a required column is missing.
    leading: tuple[tuple[int, tuple[str, ...]], ...] = ()


def _read_raw(path: Path, progress: ProgressHook | None) -> _Raw:
    raw = _read_any(path, progress)
    for header in raw.table.column_names:
        if "\x00" in header:  # it would name an attribute, which PostgreSQL cannot store
            raise InputError.said_at(
                "a column header holds a NUL character (\\x00)",
                file=raw.source,
                row=raw.rows.first - 1 or None,
                field=header,
            )
    return raw


def _read_any(path: Path, progress: ProgressHook | None) -> _Raw:
    source = str(path)
    suffix = path.suffix.lower()
    try:
        if suffix in CSV_SUFFIXES:
            return _without_blank_records(*_read_csv(path, progress), source)
        if suffix in EXCEL_SUFFIXES:
            table, rows, sheet, others, inexact, leading = _read_excel(path, progress)
            # In a workbook of several sheets, messages say which one was read.
            return _Raw(
                table,
                rows,
                source if sheet is None else f"{source} (sheet {sheet})",
                others,
                inexact,
                leading,
            )
        if suffix in PARQUET_SUFFIXES:
            return _Raw(_read_parquet(path, progress), Rows(1), source)
    except OSError as error:
        raise InputError.said_at(
            "cannot read: {problem}", file=source, problem=str(error.strerror or error)
        ) from None
    if suffix == ".xls":
        raise InputError.said_at("old .xls workbooks are not read; save it as .xlsx", file=source)
    if not suffix:
        raise InputError.said_at(
            "unsupported file type '(none)'; use .csv, .xlsx or .parquet", file=source
        )
    raise InputError.said_at(
        "unsupported file type {suffix}; use .csv, .xlsx or .parquet",
        file=source,
        suffix=repr(suffix),
    )


class _CountingReader(io.RawIOBase):
    """A binary file that reports how far it has been read."""

    def __init__(self, stream: BinaryIO, total: int, label: str, hook: ProgressHook) -> None:
        self._stream = stream
        self._total = total
        self._label = label
        self._hook = hook
        self._done = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        self._done += len(data)
        self._hook(self._label, self._done, self._total)
        return len(data)


_UTF8_BOM = codecs.BOM_UTF8


def _sniff_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM) when the start of the file decodes as such, else GB18030.

    GB18030 is a superset of GBK and GB2312, the encodings Chinese ERPs and Excel export in.
    """
    with path.open("rb") as stream:
        sample = stream.read(1 << 16)
    if sample.startswith(_UTF8_BOM):
        return "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8"


def _delimiter(path: Path, encoding: str) -> str:
    """The file's separator: a comma, unless its header line has none and is separated by
    tabs or semicolons (an export "as text", or from a locale that writes decimal commas)."""
    try:
        with path.open(encoding=encoding, newline="") as stream:
            first = stream.readline(1 << 17)
    except UnicodeDecodeError:
        return ","  # said by the header's read
    if "," in first:
        return ","
    for candidate in ("\t", ";"):
        if candidate in first:
            return candidate
    return ","


def _csv_headers(path: Path, encoding: str, delimiter: str = ",") -> list[str]:
    try:
        with path.open(encoding=encoding, newline="") as stream:
            headers = next(csv.reader(stream, delimiter=delimiter), None)
    except UnicodeDecodeError:
        raise InputError.said_at(
            "is neither UTF-8 nor GBK/GB18030 text; save it as CSV UTF-8", file=str(path), row=1
        ) from None
    except csv.Error as error:  # a header longer than the csv module reads (128 KiB)
        raise InputError.said_at(
            "the header row cannot be read ({problem})", file=str(path), row=1, problem=str(error)
        ) from None
    if not headers or not any(header.strip() for header in headers):
        raise InputError.said_at("the file is empty or has no header row", file=str(path), row=1)
    return [header.strip() for header in headers]


def _read_csv(path: Path, progress: ProgressHook | None) -> tuple[pa.Table, Rows]:
    encoding = _sniff_encoding(path)
    try:
        table = _read_csv_as(path, encoding, progress)
    except pa.ArrowInvalid as error:
        if encoding != "gb18030" and "UTF8" in str(error):
            # The sample was UTF-8 but a later line is not: a GBK file with an ASCII start.
            table = _read_csv_as(path, "gb18030", progress)
        else:
            raise _unparsable(error, str(path)) from None
    return table, Rows(2, csv_file=path, records=table.num_rows)


def _csv_skips(path: Path, records: int) -> tuple[tuple[int, int], ...]:
    """Where a CSV's records stand after empty lines: Arrow skips them, so a file with some
    has its records further down than their count says. Counting the file's line breaks
    tells whether it has any (Arrow reads no line break inside a value); only then are they
    looked for."""
    # A line ends at \n, \r\n or a lone \r (a Macintosh export), as Arrow reads it.
    feeds = returns = pairs = 0
    previous = b""
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 24):
            feeds += chunk.count(b"\n")
            returns += chunk.count(b"\r")
            pairs += chunk.count(b"\r\n") + (previous == b"\r" and chunk[:1] == b"\n")
            previous = chunk[-1:]
    # Not ending with a break, the last line still counts.
    lines = feeds + returns - pairs + (0 if previous in (b"\n", b"\r") else 1)
    if lines <= records + 1:  # the header and one line per record
        return ()
    skips: list[tuple[int, int]] = []
    record = 0
    pending = False
    # Latin-1 reads every byte as itself, and no byte of a GBK or UTF-8 character is \r or
    # \n: its universal newlines are the file's lines.
    with path.open(encoding="latin-1", newline=None) as stream:
        for line, text in enumerate(stream, start=1):
            if line == 1:
                continue  # the header
            if not text.strip("\n"):
                pending = True
                continue
            if pending:
                skips.append((record, line))
                pending = False
            record += 1
    return tuple(skips)


def _without_blank_records(table: pa.Table, rows: Rows, source: str) -> _Raw:
    """The records of a CSV without those whose every cell is blank (a blank row saved from a
    workbook is a line of commas), their neighbours keeping their row numbers."""
    if table.num_columns == 0 or table.num_rows == 0:
        return _Raw(table, rows, source)
    # Most files have none: one column is looked at first, the others only where it is blank.
    maybe = pc.indices_nonzero(_blank_cells(table.column(0))).to_pylist()
    blank = [
        index
        for index in maybe
        if all(
            not (value := table.column(position)[index].as_py()) or not value.strip()
            for position in range(1, table.num_columns)
        )
    ]
    if not blank:
        return _Raw(table, rows, source)
    kept = pc.invert(pc.is_in(pa.array(range(table.num_rows)), value_set=pa.array(blank)))
    removed = set(blank)
    # A record right after removed ones, and one where the rows already jumped, starts a run.
    starts = sorted(
        {start for start, _ in rows.skips}
        | {index + 1 for index in blank} - removed - {table.num_rows}
    )
    skips = [(start - bisect.bisect_left(blank, start), rows(start)) for start in starts]
    return _Raw(table.filter(kept), Rows(rows.first, _merged_skips(skips, rows.first)), source)


def _merged_skips(skips: list[tuple[int, int]], first: int) -> tuple[tuple[int, int], ...]:
    """The breakpoints that change the running row number (a record right after another
    needs none)."""
    kept: list[tuple[int, int]] = []
    offset = first
    for index, row in skips:
        if row - index != offset:
            kept.append((index, row))
            offset = row - index
    return tuple(kept)


def _blank_cells(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(column), ""), True)


def _unparsable(error: Exception, source: str) -> InputError:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return InputError.said_at("cannot parse the CSV: {problem}", file=source, problem=text)


def _read_csv_as(path: Path, encoding: str, progress: ProgressHook | None) -> pa.Table:
    delimiter = _delimiter(path, encoding)
    headers = _csv_headers(path, encoding, delimiter)
    _check_unique_headers(headers, str(path))
    read_options = pcsv.ReadOptions(
        column_names=headers,
        skip_rows=1,  # our own header parse already stripped any BOM
        encoding="utf8" if encoding.startswith("utf-8") else encoding,
        block_size=1 << 22,
    )
    convert_options = pcsv.ConvertOptions(
        column_types={header: pa.string() for header in headers},
        strings_can_be_null=False,
    )
    ragged: list[int] = []  # set when a row's number of cells differs from the header's

    def stop_at_ragged(_row: Any) -> str:
        # Arrow reads blocks on several threads and does not know the row's number: the read
        # stops at the first such row, and the file is scanned once more to name them all
        # (carrying on would call back into Python for every row of a file with one comma too
        # many on each line).
        ragged.append(1)
        return "error"

    parse_options = pcsv.ParseOptions(
        delimiter=delimiter, newlines_in_values=False, invalid_row_handler=stop_at_ragged
    )
    total = path.stat().st_size
    with path.open("rb") as raw_stream:
        stream: Any = raw_stream
        if progress is not None:
            stream = io.BufferedReader(_CountingReader(raw_stream, total, str(path), progress))
        try:
            table = pcsv.read_csv(
                stream,
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )
        except pa.ArrowInvalid as error:
            if ragged and len(headers) == 1 and headers[0]:
                # A title line above the headers (2026年3月销售明细), as ERP exports often have.
                raise InputError.said_at(
                    "the first line has one cell ({title}) and lines below it have more: if it "
                    "is a title, remove the lines above the headers",
                    file=str(path),
                    row=1,
                    title=repr(headers[0]),
                ) from None
            if ragged:
                raise _ragged_rows(path, encoding, len(headers), delimiter) from None
            if "UTF8" in str(error) and encoding.startswith("utf-8"):
                raise
            raise _unparsable(error, str(path)) from None
    return table


def _ragged_rows(path: Path, encoding: str, expected: int, delimiter: str) -> InputError:
    """Each row whose number of cells is not the header's, by its line."""
    issues: list[RowIssue] = []
    total = 0
    with path.open(encoding=encoding, newline="") as stream:
        rows = csv.reader(stream, delimiter=delimiter)
        next(rows, None)  # the header
        for cells in _readable(rows):
            if not cells or len(cells) == expected:
                continue  # empty lines are skipped by Arrow's read too
            total += 1
            if len(issues) < MAX_ISSUES:  # the rest are counted
                issues.append(
                    RowIssue.of(
                        rows.line_num,
                        None,
                        said(
                            "this row has {cells} cells; the header has {columns}",
                            cells=len(cells),
                            columns=expected,
                        ),
                    )
                )
    if not issues:  # the two readers disagree on a row: still a refusal, never an IndexError
        return InputError.said_at("a row has more or fewer cells than the header", file=str(path))
    return InputFileError(issues, file=str(path), total=total)


def _readable(rows: Iterator[list[str]]) -> Iterator[list[str]]:
    """The rows the csv module can read, up to one it cannot (a cell over 128 KiB)."""
    try:
        yield from rows
    except csv.Error:
        return


def _check_unique_headers(headers: list[str], source: str) -> None:
    seen: set[str] = set()
    for header in headers:
        if header in seen and header:
            raise InputError.said_at(
                "the column appears twice in the header", file=source, row=1, field=header
            )
        seen.add(header)


def _cell_text(value: Any) -> str | None:
    """An Excel cell's value as the text Fanli parses; floats by their shortest repr."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # repr is the shortest text that round-trips: 0.1 stays "0.1", while a sum that drifted
        # (12.300000000000001) keeps its drift and is refused for its decimal places.
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        try:
            return format(Decimal(repr(value)), "f")
        except InvalidOperation:
            return repr(value)  # inf, nan: fail as malformed numbers
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _sheet_read(workbook: Any, path: str) -> Any:
    """The sheet a workbook is read from: the one it opens on (its active sheet), unless that
    is hidden; then its first visible sheet."""
    # Worksheets only: the active sheet may be a chart sheet, which has no cells.
    visible = [sheet for sheet in workbook.worksheets if sheet.sheet_state == "visible"]
    active = workbook.active
    if active in visible:
        return active
    if visible or workbook.worksheets:
        return visible[0] if visible else workbook.worksheets[0]
    raise InputError.said_at("the workbook has no worksheet, only charts", file=path)


def _read_excel(
    path: Path, progress: ProgressHook | None
) -> tuple[
    pa.Table,
    Rows,
    str | None,
    tuple[tuple[str, tuple[str, ...]], ...],
    tuple[tuple[int, str, str], ...],
    tuple[tuple[int, tuple[str, ...]], ...],
]:
    """The sheet's table, its records' rows, the sheet's name when the workbook has several,
    the other visible sheets that hold lines, with their header rows, and the number cells too
    large to be held exactly (``_inexact``): each record's index, header and text; and the
    first rows below the header row, whole (``_Raw.leading``)."""
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        raise InputError.said_at(
            "not a readable .xlsx workbook ({problem})", file=str(path), problem=str(error)
        ) from None
    try:
        sheet = _sheet_read(workbook, str(path))
        name = repr(sheet.title) if len(workbook.worksheets) > 1 else None
        source = str(path) if name is None else f"{path} (sheet {name})"
        rows: Iterator[tuple[Any, ...]] = sheet.iter_rows(values_only=True)
        header_cells = next(rows, None)
        if header_cells is None or all(cell is None for cell in header_cells):
            raise InputError.said_at("the sheet is empty or has no header row", file=source, row=1)
        headers = [(_cell_text(cell) or "").strip() for cell in header_cells]
        while headers and not headers[-1]:
            headers.pop()
        _check_unique_headers(headers, source)
        others = _other_sheets_with_lines(workbook, sheet)
        width = len(headers)
        unsaved = _formulas_without_values(workbook, sheet, headers)
        if unsaved:
            raise InputFileError(unsaved, file=source)
        columns: list[list[str | None]] = [[] for _ in range(width)]
        inexact: list[tuple[int, str, str]] = []
        leading: list[tuple[int, tuple[str, ...]]] = []
        total = sheet.max_row or 0
        # Blank rows (a workbook's spacing) are skipped; the records after them keep their rows.
        skips: list[tuple[int, int]] = []
        skipped = False
        for number, cells in enumerate(rows, start=2):
            if len(leading) < _HEADER_SEARCH_ROWS:
                whole = tuple((_cell_text(cell) or "").strip() for cell in cells)
                if any(whole):
                    leading.append((number, whole))
            texts = [_cell_text(cell) for cell in cells[:width]]
            if all(text is None or not text.strip() for text in texts):
                skipped = True
                continue
            if skipped:
                skips.append((len(columns[0]) if columns else 0, number))
                skipped = False
            texts.extend([None] * (width - len(texts)))
            inexact.extend(
                (len(columns[0]), headers[position], texts[position] or "")
                for position, cell in enumerate(cells[:width])
                if (type(cell) is float or type(cell) is int) and _inexact(cell)
            )
            for column, text in zip(columns, texts, strict=True):
                column.append(text)
            if progress is not None and number % 5000 == 0:
                progress(str(path), number, total)
        if progress is not None:
            progress(str(path), total, total)
    finally:
        workbook.close()
    table = pa.table(
        {
            header: pa.array(column, pa.string())
            for header, column in zip(headers, columns, strict=True)
        }
    )
    return table, Rows(2, tuple(skips)), name, others, tuple(inexact), tuple(leading)


# Excel keeps 15 significant digits of a number: from 16 digits before the point, the last
# ones may be gone.
_EXACT_IN_EXCEL = 10**15


def _inexact(value: float | int) -> bool:
    """Whether a workbook's number cell may have lost digits: it has more digits before the
    point than Excel keeps. A 16-digit invoice number (a date and 8 digits) typed into a number
    cell is stored as 2026030100012340, a 20-digit one as 2.02603010001235E+19; read as they
    are, they would make other line ids than the same lines sent as text, and count twice. A
    program may have written all 16 digits, but nothing tells the two apart: such a number
    goes in as text."""
    return abs(value) >= _EXACT_IN_EXCEL and (type(value) is int or math.isfinite(value))


def _other_sheets_with_lines(workbook: Any, sheet: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The workbook's other visible worksheets that hold a line below their first row: each
    title and header row. A blank one (a template) leaves nothing out."""
    found = []
    for other in workbook.worksheets:
        if other is sheet or other.sheet_state != "visible":
            continue
        rows = other.iter_rows(values_only=True)
        first = next(rows, None) or ()
        headers = tuple((_cell_text(cell) or "").strip() for cell in first)
        if any(headers) and any(
            (_cell_text(cell) or "").strip() for cells in rows for cell in cells
        ):
            found.append((str(other.title), headers))
    return tuple(found)


def _refuse_lines_left_on_other_sheets(
    raw: _Raw, kind: FileKind, mapping: ColumnMapping | None
) -> None:
    """Refuse a workbook whose other visible sheets hold lines of the kind read: their headers
    match the kind's required columns as the read sheet's are matched (the mapping, then the
    built-in names). Lines split over sheets (a month per sheet, say) would otherwise be
    imported in part, the rest left out without a word. Sheets of other columns (notes, a
    summary by customer) are no concern: they are not read."""
    same = []
    for title, headers in raw.other_sheets:
        try:
            columns = resolve_columns([h for h in headers if h], kind, mapping, source=title)
        except InputError:  # the mapping names a column the sheet lacks: not the same lines
            continue
        if _holds_required(columns, kind):
            same.append(repr(title))
    if same:
        raise InputError.said_at(
            "other sheets hold lines under the same columns too ({sheets}): a workbook is "
            "imported one sheet at a time, so put the lines in one sheet, or save each sheet as "
            "a file of its own and import each",
            file=raw.source,
            sheets=", ".join(same),
        )


def _holds_required(columns: ResolvedColumns, kind: FileKind) -> bool:
    """Whether the columns have every field a file of ``kind`` needs (the line id may be
    composed; a sale needs an invoice or an order date; a master, its code and name)."""
    fields = columns.fields
    if kind is FileKind.SALES:
        return (
            all(name in fields for name in ("customer_id", "product_id", "quantity", "net_amount"))
            and ("line_id" in fields or columns.line_id_parts is not None)
            and ("invoice_date" in fields or "order_date" in fields)
        )
    key = "customer_id" if kind is FileKind.CUSTOMERS else "product_id"
    return key in fields and "name" in fields


# A cell's formula element, with or without a namespace prefix (``<f>``, ``<x:f t="shared">``).
_FORMULA_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?f[\s>/]")
_SHEET_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def _formulas_without_values(workbook: Any, sheet: Any, headers: list[str]) -> list[RowIssue]:
    """The cells of the sheet read that hold a formula and no saved value.

    openpyxl reads such a cell as empty (it does not calculate), so a workbook written by a
    program (not saved by Excel or WPS, which store each formula's value) would lose those
    cells silently: an optional column defaulted, a required one reported empty. Most
    workbooks hold no formula at all, so the sheet's XML is first searched for one, which
    costs a fraction of reading it; only then is it parsed cell by cell.
    """
    # openpyxl's read-only sheet keeps its archive and the sheet's path in it (no public API).
    archive, part = workbook._archive, sheet._worksheet_path
    with archive.open(part) as source:
        tail = b""
        while chunk := source.read(1 << 20):
            if _FORMULA_TAG.search(tail + chunk):
                break
            tail = chunk[-32:]
        else:
            return []
    issues = []
    with archive.open(part) as source:
        for _, element in iterparse(source):  # openpyxl's: defused when defusedxml is there
            if element.tag != f"{_SHEET_NS}c":
                continue
            # Only a text result can be saved empty (Excel writes t="str" and an empty value);
            # a program that does not calculate writes no value, or an empty one.
            saved = bool(element.findtext(f"{_SHEET_NS}v")) or element.get("t") == "str"
            if element.find(f"{_SHEET_NS}f") is not None and not saved:
                reference = element.get("r", "")
                letters = reference.rstrip("0123456789")
                row = int(reference[len(letters) :]) if reference[len(letters) :] else None
                index = column_index_from_string(letters) - 1 if letters else None
                name = headers[index] if index is not None and index < len(headers) else letters
                issues.append(
                    RowIssue.of(
                        row,
                        name or letters,
                        said(
                            "cell {cell} holds a formula with no saved value: open the "
                            "workbook in Excel or WPS and save it, or paste values instead",
                            cell=reference,
                        ),
                    )
                )
            element.clear()
    return issues


def _read_parquet(path: Path, progress: ProgressHook | None) -> pa.Table:
    try:
        parquet = pq.ParquetFile(path)
    except pa.ArrowInvalid as error:
        raise InputError.said_at(
            "not a readable Parquet file ({problem})", file=str(path), problem=str(error)
        ) from None
    for column in parquet.schema_arrow:
        # Lists, structs and maps have no one value per cell to check; bytes are no text.
        if (
            pa.types.is_nested(column.type)
            or pa.types.is_binary(column.type)
            or (pa.types.is_large_binary(column.type) or pa.types.is_fixed_size_binary(column.type))
        ):
            raise InputError.said_at(
                "column {header} holds {stored} values; a column holds text, numbers or dates",
                file=str(path),
                field=column.name,
                header=repr(column.name),
                stored=str(column.type),
            )
    groups = parquet.num_row_groups
    if progress is None:
        return parquet.read(use_threads=True)  # columns decoded in parallel
    tables = []
    for index in range(groups):
        tables.append(parquet.read_row_group(index))
        if progress is not None:
            progress(str(path), index + 1, groups)
    if not tables:
        return parquet.schema_arrow.empty_table()
    return pa.concat_tables(tables)


# ---- vectorised conversions ------------------------------------------------------------------

# "5.", ".5" and "1,234.50" are numbers (as they are to Arrow's cast on the fast path)
_NUMBER = r"^(?:[+-]?[¥￥]?|[¥￥][+-])(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)$"
_FITS = rf"^[+-]?(?:0*\d{{1,{_MAX_INTEGER_DIGITS}}})?(?:\.|$)"  # fits decimal128(18, 4)
_DATE = (
    r"^(?P<y>\d{4})[-/.年](?P<m>\d{1,2})[-/.月](?P<d>\d{1,2})日?"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$"
)


# Clean files take a fast path: Arrow's own strict cast (it refuses impossible days, other date
# formats, overflow and lost decimals), after blank cells become missing. Exponents ("1e5") are
# the one thing it accepts that Fanli does not. Anything else, and any cast that fails, goes
# through the general parsers below, which name every bad cell.


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _fast_cast(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray | None:
    """``column`` cast to ``target`` when it is typed already or every text cell is plain."""
    kind = column.type
    typed = (
        pa.types.is_decimal(kind) or pa.types.is_integer(kind)
        if pa.types.is_decimal(target)
        else pa.types.is_date(kind) or pa.types.is_timestamp(kind)
    )
    if not typed:
        if not _is_text(kind):
            return None
        column = pc.if_else(pc.equal(column, ""), pa.scalar(None, kind), column)
        if (
            pa.types.is_decimal(target)
            and pc.any(pc.match_substring(column, "e", ignore_case=True)).as_py()
        ):
            return None
    if pa.types.is_date(target) and pa.types.is_timestamp(kind) and kind.tz is not None:
        # A moment with a zone falls on the day it was in the company's zone (23:30 UTC is
        # the next morning in Shanghai); Arrow takes the day in the type's own zone.
        try:
            column = pc.cast(column, pa.timestamp(kind.unit, tz=company_zone().key))
        except pa.ArrowInvalid as error:  # no time zone database where Arrow looks
            raise InputError.said_at(
                "the times cannot be put in the company's time zone ({problem})",
                problem=str(error),
            ) from None
    try:
        return pc.cast(column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _text(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """Trimmed text, with empty cells as null."""
    if not _is_text(column.type):
        if pa.types.is_integer(column.type):
            return pc.cast(column, pa.string())  # digits: nothing to trim, never blank
        column = pc.cast(column, pa.string())
    trimmed = pc.utf8_trim_whitespace(column)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _mask_indices(mask: pa.ChunkedArray | pa.Array) -> list[int]:
    filled = pc.fill_null(mask, False)
    return [int(index) for index in pc.indices_nonzero(filled).to_pylist()]


class _Checker:
    """Collects issues for one file; messages quote the offending value."""

    def __init__(self, raw: _Raw, columns: ResolvedColumns) -> None:
        self.raw = raw
        self.columns = columns
        self.issues: list[RowIssue] = []
        self.total = 0
        # The records with an issue: checks that need whole lines (a return's original) look
        # at the others only.
        self.flagged: pa.Array | None = None
        # Number cells that lost digits, in the columns read: with the file's other problems.
        read = {*columns.fields.values(), *(columns.line_id_parts or ()), *columns.attributes}
        inexact = [found for found in raw.inexact if found[1] in read]
        if inexact:
            self._mark(
                pc.is_in(
                    pa.array(range(raw.table.num_rows), pa.int64()),
                    value_set=pa.array([index for index, _, _ in inexact], pa.int64()),
                )
            )
        for index, header, text in inexact:
            self.total += 1
            if len(self.issues) < MAX_ISSUES:
                self.issues.append(
                    RowIssue.of(
                        raw.rows(index),
                        header,
                        said(
                            "{value} is a number too long for a spreadsheet to hold exactly "
                            "(Excel keeps 15 significant digits), so digits may be lost: "
                            "format the column as text and enter the value again",
                            value=text,
                        ),
                    )
                )

    def flag(
        self,
        mask: pa.ChunkedArray | pa.Array,
        name: str,
        describe: Callable[[Any], Said | str],
        values: pa.ChunkedArray | pa.Array | None = None,
    ) -> None:
        """Record an issue for each row where ``mask`` is true."""
        filled = pc.fill_null(mask, False)
        count = pc.sum(pc.cast(filled, pa.int64())).as_py() or 0
        if not count:
            return
        self.total += count
        self._mark(filled)
        indices = pc.indices_nonzero(filled)[:MAX_ISSUES]
        shown = values.take(indices).to_pylist() if values is not None else [None] * len(indices)
        header = self.columns.header(name)
        for index, value in zip(indices.to_pylist(), shown, strict=True):
            self.issues.append(RowIssue.of(self.raw.rows(index), header, describe(value)))

    def _mark(self, mask: pa.ChunkedArray | pa.Array) -> None:
        if isinstance(mask, pa.ChunkedArray):
            mask = mask.combine_chunks()
        self.flagged = mask if self.flagged is None else pc.or_(self.flagged, mask)

    def raise_if_any(self) -> None:
        if self.issues:
            self.issues.sort(key=lambda issue: issue.row or 0)
            raise InputFileError(self.issues[:MAX_ISSUES], file=self.raw.source, total=self.total)


def _wrong_sign(value: Any, *, kind: Code, direction: Code) -> Said:
    return said(
        "the amount {amount} of a {kind} has the wrong sign: a {kind} has its quantity and "
        "amount {direction} (or zero)",
        amount=repr(value),
        kind=kind,
        direction=direction,
    )


def _parse_measure(text: pa.ChunkedArray, name: str, checker: _Checker) -> pa.ChunkedArray:
    """Decimal text (``1,234.50``, ``¥12``, ``-3``) -> decimal128(18, 4); bad cells flagged."""
    wellformed = pc.match_substring_regex(text, _NUMBER)
    cleaned = pc.replace_substring_regex(text, r"[¥￥,]", "")
    cleaned = pc.replace_substring_regex(cleaned, r"(\.\d*?)0+$", r"\1")
    cleaned = pc.replace_substring_regex(cleaned, r"\.$", "")
    malformed = pc.invert(wellformed)
    too_precise = pc.and_(wellformed, pc.match_substring_regex(cleaned, r"\.\d{5}"))
    too_large = pc.and_(
        wellformed,
        pc.invert(pc.match_substring_regex(cleaned, _FITS)),
    )
    # The messages name the column as the file does (不含税金额, not net_amount).
    header = checker.columns.header(name)
    checker.flag(
        malformed,
        name,
        lambda value: said("{name} {value} is not a number", name=header, value=repr(value)),
        text,
    )
    checker.flag(
        too_precise,
        name,
        lambda value: said(
            "{name} {value} has more than {places} decimal places",
            name=header,
            value=repr(value),
            places=FACT_SCALE,
        ),
        text,
    )
    checker.flag(
        too_large,
        name,
        lambda value: said("{name} {value} is too large", name=header, value=repr(value)),
        text,
    )
    good = pc.and_(wellformed, pc.invert(pc.or_(too_precise, too_large)))
    usable = pc.if_else(good, cleaned, pa.scalar(None, pa.string()))
    return pc.cast(usable, FACT_DECIMAL)


def _parse_date(text: pa.ChunkedArray, name: str, checker: _Checker) -> pa.ChunkedArray:
    """ISO, ``2026/3/31``, ``2026年3月31日``, ``20260331`` (and a midnight time) -> date32."""
    compact = pc.replace_substring_regex(text, r"^(\d{4})(\d{2})(\d{2})$", r"\1-\2-\3")
    parts = pc.extract_regex(compact, _DATE)
    year = pc.struct_field(parts, "y")
    month = pc.utf8_lpad(pc.struct_field(parts, "m"), 2, "0")
    day = pc.utf8_lpad(pc.struct_field(parts, "d"), 2, "0")
    iso = pc.binary_join_element_wise(year, month, day, "-")
    iso = pc.if_else(pc.is_valid(parts), iso, pa.scalar(None, pa.string()))
    parsed = pc.strptime(iso, format="%Y-%m-%d", unit="s", error_is_null=True)
    # strptime rolls 2026-02-30 over into March; a round trip catches impossible days.
    real = pc.equal(pc.strftime(parsed, format="%Y-%m-%d"), iso)
    bad = pc.and_(pc.is_valid(text), pc.invert(pc.fill_null(real, False)))
    header = checker.columns.header(name)  # as the file names the column
    checker.flag(
        bad,
        name,
        lambda value: said(
            "{name} {value} is not a date (use 2026-03-31, 2026/3/31 or 2026年3月31日)",
            name=header,
            value=repr(value),
        ),
        text,
    )
    good = pc.if_else(pc.fill_null(real, False), parsed, pa.scalar(None, pa.timestamp("s")))
    return pc.cast(good, pa.date32())


def _range_flag(checker: _Checker, dates: pa.ChunkedArray, name: str) -> None:
    """Days outside the ones Fanli keeps (a year 1 or 9999 is a typing slip or a placeholder;
    a Parquet day past Python's dates cannot even be read back)."""
    outside = pc.or_(
        pc.less(dates, pa.scalar(FIRST_DAY, pa.date32())),
        pc.greater(dates, pa.scalar(LAST_DAY, pa.date32())),
    )
    if not pc.any(pc.fill_null(outside, False)).as_py():
        return  # the usual case: no day's text is made
    header = checker.columns.header(name)  # as the file names the column
    checker.flag(
        outside,
        name,
        lambda value: said(
            "{name} {value} is outside the days Fanli keeps ({first} to {last})",
            name=header,
            value=repr(value),
            first=FIRST_DAY,
            last=LAST_DAY,
        ),
        pc.cast(dates, pa.string()),  # Arrow writes any day; Python's dates end in 9999
    )


def _required_missing(
    name: str, kind: FileKind, raw: _Raw, mapping: ColumnMapping | None
) -> InputError:
    """The file lacks a column the kind needs: the names looked for, the Chinese ones among
    them, and the row its headers seem to be on when a title sits above them."""
    names = ALIASES[kind][name]
    chinese = [alias for alias in names if _CJK.search(alias)]
    aliases = ", ".join([*[a for a in names if not _CJK.search(a)][:3], *chinese[:3]])
    below = _headers_below(raw, kind, mapping)
    if below is not None:
        return InputError.said_at(
            "missing required column {name} (looked for: {aliases}, ...): the headers seem "
            "to be on row {found}; remove the rows above them (a title, say)",
            file=raw.source,
            row=raw.rows.first - 1 or None,
            field=name,
            name=name,
            aliases=aliases,
            found=below,
        )
    return InputError.said_at(
        "missing required column {name} (looked for: {aliases}, ...; or name your header "
        "for it in a column mapping)",
        file=raw.source,
        row=raw.rows.first - 1 or None,
        field=name,
        name=name,
        aliases=aliases,
    )


_CJK = re.compile(r"[\u3400-\u9fff]")
# How far down a file's header row is looked for when its first row lacks a required column.
_HEADER_SEARCH_ROWS = 5


def _headers_below(raw: _Raw, kind: FileKind, mapping: ColumnMapping | None) -> int | None:
    """The row number of the first of the file's first rows below its header row that would
    serve as its header row (every required column found in it), if one does."""
    first = raw.leading or tuple(
        (raw.rows(index), tuple(str(value or "").strip() for value in record.values()))
        for index, record in enumerate(raw.table.slice(0, _HEADER_SEARCH_ROWS).to_pylist())
    )
    for row, texts in first:
        headers = [text for text in texts if text]
        if not headers or len(set(headers)) != len(headers):
            continue
        try:
            columns = resolve_columns(headers, kind, mapping, source=raw.source)
        except InputError:
            continue
        if _holds_required(columns, kind):
            return row
    return None


def _refuse_float_measures(raw: _Raw, columns: ResolvedColumns, names: tuple[str, ...]) -> None:
    for name in names:
        header = columns.fields.get(name)
        if header is None:
            continue
        column_type = raw.table.schema.field(header).type
        if pa.types.is_floating(column_type):
            raise InputError.said_at(
                "{name} is stored as {stored}, a binary float; amounts must be decimals or text",
                file=raw.source,
                field=header,
                name=name,
                stored=str(column_type),
            )


def _nul_flag(checker: _Checker, values: pa.ChunkedArray, name: str) -> None:
    """Text with a NUL character: PostgreSQL cannot store it in text, and no ERP means it.
    A column the file holds as numbers (Parquet, Excel) cannot have one: not searched."""
    columns = checker.columns
    headers = columns.line_id_parts if name == "line_id" and columns.line_id_parts else None
    read = [columns.fields[name]] if headers is None and name in columns.fields else headers
    raw = checker.raw.table
    if read is not None and all(
        _holds_no_text(raw.column(h).type) for h in read if h in raw.column_names
    ):
        return
    if not pc.any(pc.match_substring(values, "\x00")).as_py():
        return
    header = checker.columns.header(name)
    checker.flag(
        pc.match_substring(values, "\x00"),
        name,
        lambda _value: said("{name} holds a NUL character (\\x00)", name=header),
    )


def _holds_no_text(type_: pa.DataType) -> bool:
    """A column of numbers, days or truth values: no NUL character can be in it."""
    return bool(
        pa.types.is_integer(type_)
        or pa.types.is_floating(type_)
        or pa.types.is_decimal(type_)
        or pa.types.is_temporal(type_)
        or pa.types.is_boolean(type_)
    )


def _empty_flag(checker: _Checker, values: pa.ChunkedArray, name: str) -> None:
    header = checker.columns.header(name)  # as the file names the column
    checker.flag(pc.is_null(values), name, lambda _value: said("{name} is empty", name=header))


def _distinct_count(values: pa.ChunkedArray) -> int:
    connection = duckdb.connect()
    try:
        connection.register("ids", pa.table({"value": values}))
        row = connection.execute("SELECT count(DISTINCT value) FROM ids").fetchone()
    finally:
        connection.close()
    return int(row[0]) if row else 0


def _duplicates(values: pa.ChunkedArray) -> tuple[pa.Array, list[int]]:
    """Mask of rows whose value appeared on an earlier row, and for each the first row index."""
    length = len(values)
    if length < 2 or _distinct_count(values) == length:
        return pa.array([False] * length), []  # the usual case: one parallel hash pass
    # Arrow's sort is stable: equal values keep their row order, so the first is the original.
    order = pc.sort_indices(values)
    sorted_values = values.take(order)
    if length < 2:
        return pa.array([False] * length), []
    same = pc.equal(sorted_values[1:], sorted_values[:-1])
    same_indices = pc.indices_nonzero(pc.fill_null(same, False)).to_pylist()
    flagged = [False] * length
    first_of: dict[int, int] = {}
    order_list = order.to_pylist()
    for index in same_indices:  # only the duplicates themselves are walked in Python
        row = order_list[index + 1]
        previous = order_list[index]
        flagged[row] = True
        first_of[row] = first_of.get(previous, previous)
    return pa.array(flagged), [first_of[row] for row in sorted(first_of)]


def _flag_duplicates(checker: _Checker, values: pa.ChunkedArray, name: str) -> None:
    mask, firsts = _duplicates(values)
    if not firsts:
        return
    first_rows = iter(firsts)
    rows = checker.raw.rows

    def describe(value: Any) -> Said:
        return said(
            "duplicate {name} {value} (first on row {first})",
            name=checker.columns.header(name),
            value=repr(value),
            first=rows(next(first_rows)),
        )

    checker.flag(mask, name, describe, values)


# ---- sales -----------------------------------------------------------------------------------


# What an import of sales checks against the lines stored: called with the file's line ids
# (one per row, some empty), it returns for each row the batch that holds its line already
# (null for none), or None when no row's line is held.
StoredLines = Callable[[pa.ChunkedArray], pa.Array | None]
# The import's checks of whole lines (a return against the line it names): called with the
# lines read and which of them are clean (None: all), it returns the problems it finds. When a
# file has problems of its own, these run on its clean lines too, so one report has them all.
LineCheck = Callable[[pa.Table, pa.Array | None], list[RowIssue]]


def _sales_from_raw(
    raw: _Raw,
    *,
    mapping: ColumnMapping | None,
    customers: pa.Table | None,
    products: pa.Table | None,
    customers_source: str,
    products_source: str,
    stored: StoredLines | None = None,
    lines_checked: LineCheck | None = None,
) -> pa.Table:
    columns = resolve_columns(raw.table.column_names, FileKind.SALES, mapping, source=raw.source)
    _refuse_lines_left_on_other_sheets(raw, FileKind.SALES, mapping)
    _refuse_float_measures(raw, columns, MEASURE_COLUMNS)
    for name in ("customer_id", "product_id", "quantity", "net_amount"):
        if name not in columns.fields:
            raise _required_missing(name, FileKind.SALES, raw, mapping)
    if "line_id" not in columns.fields and columns.line_id_parts is None:
        raise _required_missing("line_id", FileKind.SALES, raw, mapping)
    if "invoice_date" not in columns.fields and "order_date" not in columns.fields:
        raise _required_missing("invoice_date", FileKind.SALES, raw, mapping)

    # The columns' trimmed text and their strict casts depend on nothing else: two threads
    # prepare them at once (Arrow's kernels release the GIL), and the checks below read them
    # in their own order, so the issues come out as they would one by one.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fanli-import") as pool:
        try:
            return _sales_checked(
                raw,
                columns,
                _Prepared.start(pool, raw.table, columns),
                mapping=mapping,
                customers=customers,
                products=products,
                customers_source=customers_source,
                products_source=products_source,
                stored=stored,
                lines_checked=lines_checked,
            )
        finally:
            pool.shutdown(cancel_futures=True)  # a refused file leaves nothing running


@dataclass
class _Prepared:
    """Work started ahead, in the order the checks read it: the ids' and codes' trimmed text,
    each date's and measure's strict cast (``_fast_cast``), and for a text column that is
    only tested for emptiness, just that test (a bitmap, not the column's text). Each result
    is handed over once and then belongs to its reader, so no column is held longer than
    reading it one by one would hold it."""

    texts: dict[str, Future[pa.ChunkedArray]]
    casts: dict[str, Future[pa.ChunkedArray | None]]
    blanks: dict[str, Future[pa.ChunkedArray]]

    @classmethod
    def start(
        cls, pool: ThreadPoolExecutor, table: pa.Table, columns: ResolvedColumns
    ) -> _Prepared:
        fields = columns.fields
        texts: dict[str, Future[pa.ChunkedArray]] = {}
        casts: dict[str, Future[pa.ChunkedArray | None]] = {}
        blanks: dict[str, Future[pa.ChunkedArray]] = {}

        def text(name: str) -> None:
            header = fields.get(name)
            if header is not None and header not in texts:
                texts[header] = pool.submit(_text, table.column(header))

        for part in columns.line_id_parts or ():
            texts[part] = pool.submit(_text, table.column(part))
        for name in ("line_id", "document_type", "customer_id", "product_id"):
            text(name)
        for name, target in (
            *((name, pa.date32()) for name in DATE_COLUMNS),
            *((name, FACT_DECIMAL) for name in MEASURE_COLUMNS),
        ):
            header = fields.get(name)
            if header is None:
                continue
            casts[name] = pool.submit(_fast_cast, table.column(header), target)
            if name in _TESTED_FOR_BLANKS and _is_text(table.column(header).type):
                blanks[name] = pool.submit(_blank, table.column(header))
        text("net_amount")  # the sign check quotes the amount as the file wrote it
        text("currency")
        return cls(texts, casts, blanks)


# The columns whose emptiness the checks test (``missing`` in ``_sales_checked``).
_TESTED_FOR_BLANKS = frozenset({"order_date", "invoice_date", "quantity", "net_amount"})


def _blank(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Cells of a text column that are empty or only spaces."""
    return pc.is_null(_text(column))


def _sales_checked(
    raw: _Raw,
    columns: ResolvedColumns,
    prepared: _Prepared,
    *,
    mapping: ColumnMapping | None,
    customers: pa.Table | None,
    products: pa.Table | None,
    customers_source: str,
    products_source: str,
    stored: StoredLines | None,
    lines_checked: LineCheck | None = None,
) -> pa.Table:
    checker = _Checker(raw, columns)
    table = raw.table
    length = table.num_rows

    def text_in(header: str) -> pa.ChunkedArray:
        started = prepared.texts.pop(header, None)
        return started.result() if started is not None else _text(table.column(header))

    def fast_cast(name: str, target: pa.DataType) -> pa.ChunkedArray | None:
        started = prepared.casts.pop(name, None)
        if started is not None:
            return started.result()
        header = columns.fields.get(name)
        return None if header is None else _fast_cast(table.column(header), target)

    def text_of(name: str) -> pa.ChunkedArray:
        header = columns.fields.get(name)
        if header is None:
            return pa.chunked_array([pa.nulls(length, pa.string())])
        return text_in(header)

    if columns.line_id_parts is not None:
        document, line = (text_in(part) for part in columns.line_id_parts)
        line_id = pc.binary_join_element_wise(document, line, "-")
    else:
        line_id = text_of("line_id")
    output: dict[str, Any] = {"line_id": line_id}
    _empty_flag(checker, line_id, "line_id")
    _nul_flag(checker, line_id, "line_id")
    # Checked with the file's own problems, so that one pass reports them all.
    holding = stored(line_id) if stored is not None else None
    if holding is not None:
        checker.flag(
            pc.is_valid(holding),
            "line_id",
            lambda found: said(
                "line {line} is already stored, in batch {batch}",
                line=found["line"],
                batch=found["batch"],
            ),
            pa.StructArray.from_arrays([line_id.combine_chunks(), holding], ["line", "batch"]),
        )

    written_type = text_of("document_type")
    document_type = written_type
    values = {**DOCUMENT_TYPE_VALUES, **(mapping.document_types if mapping else {})}
    if values and "document_type" in columns.fields:
        known = pa.array(list(values), pa.string())
        mapped = pa.array(list(values.values()), pa.string())
        positions = pc.index_in(document_type, value_set=known)
        translated = pc.take(mapped, pc.fill_null(positions, 0))
        document_type = pc.if_else(pc.is_valid(positions), translated, pc.utf8_lower(document_type))
    document_type = pc.fill_null(document_type, "invoice")
    # A type Fanli does not know would be counted by every agreement without a document_types
    # list and by none with one: refused, so that the user says what it is.
    unknown = pc.invert(pc.is_in(document_type, value_set=pa.array(DOCUMENT_TYPES)))
    if pc.any(unknown).as_py():
        header = columns.header("document_type")
        checker.flag(
            unknown,
            "document_type",
            lambda value: said(
                "{name} {value} is not a document type Fanli knows ({known}): map it under "
                "document_types in a mapping file, or leave such lines out",
                name=header,
                value=repr(value),
                known=", ".join(DOCUMENT_TYPES),
            ),
            written_type,
        )
    output["document_type"] = document_type

    for name in ("customer_id", "product_id"):
        output[name] = text_of(name)
        _empty_flag(checker, output[name], name)
        _nul_flag(checker, output[name], name)

    def raw_of(name: str) -> pa.ChunkedArray | None:
        header = columns.fields.get(name)
        return None if header is None else table.column(header)

    def missing(name: str) -> pa.ChunkedArray:
        """Cells that are empty (null, or blank text)."""
        raw_column = raw_of(name)
        if raw_column is None:
            return pa.chunked_array([pa.array([True] * length, pa.bool_())])
        started = prepared.blanks.pop(name, None)
        if started is not None:
            return started.result()
        if _is_text(raw_column.type):
            return _blank(raw_column)
        return pc.is_null(raw_column)

    def parsed_date(name: str) -> pa.ChunkedArray:
        fast = fast_cast(name, pa.date32())
        dates = fast if fast is not None else _parse_date(text_of(name), name, checker)
        _range_flag(checker, dates, name)
        return dates

    dates = {name: parsed_date(name) for name in ("order_date", "invoice_date", "paid_date")}
    if "order_date" not in columns.fields:
        dates["order_date"] = dates["invoice_date"]
    else:
        # An order date left empty falls back to the invoice date, like a missing column.
        dates["order_date"] = pc.coalesce(dates["order_date"], dates["invoice_date"])
    no_date = pc.and_(
        pc.is_null(dates["order_date"]),
        pc.and_(missing("order_date"), missing("invoice_date")),
    )
    both = said(
        "{invoice} and {order} are empty",
        invoice=columns.header("invoice_date"),
        order=columns.header("order_date"),
    )
    checker.flag(no_date, "invoice_date", lambda _value: both)
    output.update(dates)

    for name in MEASURE_COLUMNS:
        if name == "gross_amount" and name not in columns.fields:
            continue
        fast = fast_cast(name, FACT_DECIMAL)
        if fast is not None:
            if name != "gross_amount":
                _empty_flag(checker, pc.if_else(missing(name), None, fast), name)
            output[name] = fast
            continue
        text = text_of(name)
        if name != "gross_amount":
            _empty_flag(checker, text, name)
        output[name] = _parse_measure(text, name, checker)
    # A sale has a positive quantity and amount, a return both negative; opposite signs are a
    # keying error that would add to one measure what it takes from the other. (A zero on
    # either side is a price adjustment or a free good, and is fine.)
    zero = pa.scalar(0, FACT_DECIMAL)
    quantity, amount = output["quantity"], output["net_amount"]
    opposite = pc.or_(
        pc.and_(pc.greater(quantity, zero), pc.less(amount, zero)),
        pc.and_(pc.less(quantity, zero), pc.greater(amount, zero)),
    )
    checker.flag(
        opposite,
        "net_amount",
        lambda value: said(
            "the amount {amount} and the quantity have opposite signs: a sale has both "
            "positive, a return both negative",
            amount=repr(value),
        ),
        text_of("net_amount"),  # as the file wrote it
    )
    # A credit note takes back and a debit note adds: a credit note written with positive
    # amounts (as some ERPs print 红字 lines) had counted as a sale.
    for kind, wrong, direction in (
        (Code("credit_note"), pc.greater, Code("negative")),
        (Code("debit_note"), pc.less, Code("positive")),
    ):
        checker.flag(
            pc.and_(
                pc.and_(pc.equal(output["document_type"], kind), pc.invert(opposite)),
                pc.or_(wrong(quantity, zero), wrong(amount, zero)),
            ),
            "net_amount",
            functools.partial(_wrong_sign, kind=kind, direction=direction),
            text_of("net_amount"),
        )
    if "gross_amount" not in output:
        output["gross_amount"] = output["net_amount"]
    else:
        output["gross_amount"] = pc.coalesce(output["gross_amount"], output["net_amount"])

    written = pc.utf8_upper(text_of("currency"))
    # 人民币 and RMB are CNY: a name as ERPs write it is read as its code (looked for only
    # where the file has the column, and replaced only where some cell holds a name).
    named = (
        pc.index_in(written, value_set=pa.array(list(CURRENCY_NAMES), pa.string()))
        if "currency" in columns.fields
        else None
    )
    output["currency"] = (
        pc.coalesce(pc.take(pa.array(list(CURRENCY_NAMES.values()), pa.string()), named), written)
        if named is not None and named.null_count < len(named)
        else written
    )
    # A line in a currency Fanli does not know would count for no agreement, silently: refuse it.
    known_currencies = pa.array(sorted(MINOR_UNITS), pa.string())
    checker.flag(
        pc.and_(
            pc.is_valid(output["currency"]),
            pc.invert(pc.is_in(output["currency"], value_set=known_currencies)),
        ),
        "currency",
        lambda value: said(
            "unknown currency {currency} (known: {known})",
            currency=repr(value),
            known=", ".join(sorted(MINOR_UNITS)),
        ),
        output["currency"],
    )
    _flag_duplicates(checker, line_id, "line_id")
    for name, dimension, dimension_source in (
        ("customer_id", customers, customers_source),
        ("product_id", products, products_source),
    ):
        if dimension is None:
            continue
        known_ids = dimension.column(name)
        unknown = pc.and_(
            pc.is_valid(output[name]),
            pc.invert(pc.is_in(output[name], value_set=known_ids.combine_chunks())),
        )
        # A master by its name ("the customer master", said in the reader's language), a file
        # by its own.
        file_label: str = (
            Code(dimension_source)
            if dimension_source.startswith("the ")
            else Path(dimension_source).name
        )

        def describe(value: Any, name: str = name, file_label: str = file_label) -> Said:
            return said(
                "{name} {value} is not in {file}",
                name=checker.columns.header(name),
                value=repr(value),
                file=file_label,
            )

        checker.flag(unknown, name, describe, output[name])
    links = text_of("original_line_id") if "original_line_id" in columns.fields else None
    if links is not None:
        _nul_flag(checker, links, "original_line_id")

    def lines() -> pa.Table:
        arrays = [_as_array(output[field.name], field.type, length) for field in SALES_SCHEMA]
        facts = pa.Table.from_arrays(arrays, schema=SALES_SCHEMA)
        if links is not None:
            # Kept beside the facts (the engine does not read it): the line a return reverses.
            facts = facts.append_column("original_line_id", links)
        # The user's own headers and rows, so that later checks (the import's) name columns
        # and rows as the file does. A composed line id is named by both its columns.
        headers = {**columns.fields, "line_id": columns.header("line_id")}
        return facts.replace_schema_metadata(
            {
                HEADERS_METADATA: json.dumps(headers, ensure_ascii=False),
                ROWS_METADATA: raw.rows.as_json(),
                SOURCE_METADATA: raw.source,
            }
        )

    if checker.issues and lines_checked is not None:
        # Every problem in one report: the import's checks of whole lines, on the clean ones.
        clean = None if checker.flagged is None else pc.invert(checker.flagged)
        found = lines_checked(lines(), clean)
        checker.issues.extend(found)
        checker.total += len(found)
    checker.raise_if_any()
    return lines()


def _as_array(values: Any, type_: pa.DataType, length: int) -> pa.ChunkedArray:
    if isinstance(values, pa.Array):
        values = pa.chunked_array([values], type=values.type)
    if values.type != type_:
        values = pc.cast(values, type_)
    assert len(values) == length
    return values


# ---- customers and products --------------------------------------------------------------------


# What an import of customers or products checks against what is stored: called with the
# file's table (a row with an empty key included) and its records' row numbers.
MasterCheck = Callable[[pa.Table, "Rows"], list[RowIssue]]


def _dimension_from_raw(
    raw: _Raw,
    kind: FileKind,
    mapping: ColumnMapping | None,
    builtins: tuple[str, ...],
    check: MasterCheck | None,
) -> pa.Table:
    columns = resolve_columns(raw.table.column_names, kind, mapping, source=raw.source)
    _refuse_lines_left_on_other_sheets(raw, kind, mapping)
    _refuse_sales_as_master(columns.attributes, kind, raw.source)
    key = builtins[0]
    if key not in columns.fields:
        raise _required_missing(key, kind, raw, mapping)
    checker = _Checker(raw, columns)
    length = raw.table.num_rows
    output: dict[str, pa.ChunkedArray] = {}
    for name in builtins:
        header = columns.fields.get(name)
        output[name] = (
            _text(raw.table.column(header))
            if header is not None
            else pa.chunked_array([pa.nulls(length, pa.string())])
        )
    for name, header in columns.fields.items():
        if name not in output:
            output[name] = _text(raw.table.column(header))
    for header in columns.attributes:
        if header not in output:
            output[header] = _text(raw.table.column(header))
    _empty_flag(checker, output[key], key)
    _flag_duplicates(checker, output[key], key)
    for name, values in output.items():
        _nul_flag(checker, values, name)
    # The fields the file has, by its own headers: a field it lacks is left as stored, and the
    # messages name the columns as the file does.
    table = pa.table(
        {name: _as_array(values, pa.string(), length) for name, values in output.items()}
    ).replace_schema_metadata(
        {
            HEADERS_METADATA: json.dumps(columns.fields, ensure_ascii=False),
            ROWS_METADATA: raw.rows.as_json(),
            SOURCE_METADATA: raw.source,
        }
    )
    if check is not None:
        # Every problem in one report: the import's own checks beside the reader's.
        found = check(table, raw.rows)
        checker.issues.extend(found)
        checker.total += len(found)
    checker.raise_if_any()
    return table


def _refuse_sales_as_master(attributes: tuple[str, ...], kind: FileKind, source: str) -> None:
    """A sales file sent as customers or products would make its lines' dates and amounts
    attributes of the masters: refused when its extra columns are a sales line's date and
    amount."""
    sales = ALIASES[FileKind.SALES]
    found = {normalize_header(header): header for header in attributes}
    named = {
        field: next((found[n] for n in map(normalize_header, sales[field]) if n in found), None)
        for field in ("invoice_date", "net_amount")
    }
    if all(named.values()):
        raise InputError.said_at(
            "the file has the columns of sales lines ({date}, {amount}), not of {kind}: "
            "import it as sales",
            file=source,
            date=named["invoice_date"],
            amount=named["net_amount"],
            kind=Code(kind.value),
        )


def fields_of(table: pa.Table) -> set[str]:
    """The Fanli fields a file read by this module has a column for."""
    metadata = table.schema.metadata or {}
    raw = metadata.get(HEADERS_METADATA.encode())
    return set(json.loads(raw)) if raw else set()


def header_of(table: pa.Table, field: str) -> str:
    """The header the file used for ``field`` (the field name when unknown)."""
    metadata = table.schema.metadata or {}
    raw = metadata.get(HEADERS_METADATA.encode())
    headers: dict[str, str] = json.loads(raw) if raw else {}
    return headers.get(field, field)


# ---- public API --------------------------------------------------------------------------------


def read_customers(
    path: Path,
    *,
    mapping: ColumnMapping | None = None,
    progress: ProgressHook | None = None,
    check: MasterCheck | None = None,
) -> pa.Table:
    """Customers: ``customer_id``, ``name``, ``group``, then every other column as an attribute
    (a field the file lacks is null; ``fields_of`` says which it has). ``check`` adds the
    import's own problems to the reader's, so that one report lists them all."""
    raw = _read_raw(path, progress)
    return _dimension_from_raw(raw, FileKind.CUSTOMERS, mapping, CUSTOMER_BUILTINS, check)


def read_products(
    path: Path,
    *,
    mapping: ColumnMapping | None = None,
    progress: ProgressHook | None = None,
    check: MasterCheck | None = None,
) -> pa.Table:
    """Products: ``product_id``, ``name``, ``category``, ``brand``, then attributes (as
    ``read_customers``)."""
    raw = _read_raw(path, progress)
    return _dimension_from_raw(raw, FileKind.PRODUCTS, mapping, PRODUCT_BUILTINS, check)


def read_sales(
    path: Path,
    *,
    mapping: ColumnMapping | None = None,
    customers: pa.Table | None = None,
    products: pa.Table | None = None,
    customers_source: str = "the customers file",
    products_source: str = "the products file",
    progress: ProgressHook | None = None,
    stored: StoredLines | None = None,
    lines_checked: LineCheck | None = None,
) -> pa.Table:
    """Sales lines in ``SALES_SCHEMA``. With ``customers``/``products``, unknown ids are errors;
    with ``stored``, so are lines already stored. ``lines_checked`` runs the caller's checks
    of whole lines on the clean lines of a file with problems, for one report of them all
    (a file without problems is the caller's to check)."""
    raw = _read_raw(path, progress)
    return _sales_from_raw(
        raw,
        mapping=mapping,
        customers=customers,
        products=products,
        customers_source=customers_source,
        products_source=products_source,
        stored=stored,
        lines_checked=lines_checked,
    )


def read_facts(
    sales: Path,
    *,
    customers: Path | None = None,
    products: Path | None = None,
    mapping: ColumnMapping | None = None,
    progress: ProgressHook | None = None,
) -> Facts:
    """Read and cross-check every input of a calculation; fails on the first bad file."""
    customer_table = (
        read_customers(customers, mapping=mapping, progress=progress) if customers else None
    )
    product_table = (
        read_products(products, mapping=mapping, progress=progress) if products else None
    )
    sales_table = read_sales(
        sales,
        mapping=mapping,
        customers=customer_table,
        products=product_table,
        customers_source=str(customers) if customers else "the customers file",
        products_source=str(products) if products else "the products file",
        progress=progress,
    )
    return Facts(sales=sales_table, customers=customer_table, products=product_table)
