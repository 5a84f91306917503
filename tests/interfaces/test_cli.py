"""The CLI: exit codes, one-line errors without tracebacks, result files that round-trip."""

from __future__ import annotations

import csv
import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from openpyxl import load_workbook
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from fanli.config import company_zone
from fanli.interfaces.cli.common import EXIT_REFUSED, ExitError, errors, local_time
from fanli.interfaces.cli.main import app

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def calc(*extra: str, example: str = "term-scope") -> tuple[int, str, str]:
    return run(
        "calc",
        "--agreements",
        str(EXAMPLES / f"{example}.yaml"),
        "--sales",
        str(EXAMPLES / f"{example}-sales.csv"),
        *extra,
    )


def test_bad_sales_file_is_one_red_line_and_exit_2(tmp_path: Path) -> None:
    sales = tmp_path / "s.csv"
    sales.write_text(
        "line_id,customer_id,product_id,invoice_date,quantity,net_amount\n"
        "L1,C1,P1,2026-03-31,1,12.300000000000001\n",
        encoding="utf-8",
    )
    code, stdout, stderr = run(
        "calc",
        "--agreements",
        str(EXAMPLES / "tiers.yaml"),
        "--sales",
        str(sales),
        "--out",
        str(tmp_path / "r.csv"),
    )
    assert code == 2
    assert stdout == ""
    assert stderr == (
        f"error: file {sales}, row 2, field 'net_amount': net_amount '12.300000000000001' has "
        "more than 4 decimal places\n"
    )
    assert not (tmp_path / "r.csv").exists()


def test_missing_file_exit_2(tmp_path: Path) -> None:
    code, _, stderr = run(
        "calc",
        "--agreements",
        str(tmp_path / "nope.yaml"),
        "--sales",
        str(EXAMPLES / "tiers-sales.csv"),
        "--out",
        "r.csv",
    )
    assert code == 2
    missing = tmp_path / "nope.yaml"
    assert stderr == f"error: file {missing}: cannot read: No such file or directory\n"


def test_bad_agreement_and_bad_options(tmp_path: Path) -> None:
    terms = tmp_path / "a.yaml"
    terms.write_text(
        "id: X\nterm: {start: 2026-01-01, end: 2027-01-01}\nrebate: {tiers: []}\n", encoding="utf-8"
    )
    code, _, stderr = run(
        "calc",
        "--agreements",
        str(terms),
        "--sales",
        str(EXAMPLES / "tiers-sales.csv"),
        "--out",
        "r.csv",
    )
    assert (code, stderr) == (
        2,
        f"error: file {terms}: agreement X: rebate.tiers: at least one band is required\n",
    )
    code, _, stderr = calc("--out", "r.txt")
    assert (code, stderr) == (
        2,
        "error: file r.txt, field '--out': unsupported result file type '.txt'; use .csv, "
        ".xlsx or .parquet\n",
    )
    code, _, stderr = calc("--out", "r.csv", "--as-of", "31.3.2026")
    assert (code, stderr) == (
        2,
        "error: field '--as-of': '31.3.2026' is not a date (use 2026-03-31)\n",
    )
    code, _, stderr = calc()
    assert (code, stderr) == (
        2,
        "error: field '--out': give --out for a result file, or --explain AGREEMENT\n",
    )


def test_unwritable_output_exit_2(tmp_path: Path) -> None:
    code, _, stderr = calc("--out", str(tmp_path / "no" / "such" / "r.csv"))
    assert code == 2
    assert stderr.startswith("error: ")
    assert stderr.count("\n") == 1


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_outputs_round_trip_exactly(tmp_path: Path) -> None:
    paths = {suffix: tmp_path / f"r{suffix}" for suffix in (".csv", ".xlsx", ".parquet")}
    for path in paths.values():
        code, stdout, stderr = calc("--out", str(path))
        assert code == 0, stderr
        assert "TERM" in stdout
    rows = read_csv(paths[".csv"])
    assert [(row["period_index"], row["rebate"], row["cumulative_rebate"]) for row in rows] == [
        ("1", "160.00", "160.00"),
        ("2", "320.00", "480.00"),
        ("3", "-300.00", "180.00"),
    ]
    parquet = pq.read_table(paths[".parquet"]).to_pylist()
    assert [row["rebate"] for row in parquet] == [Decimal(row["rebate"]) for row in rows]
    sheet = load_workbook(paths[".xlsx"], read_only=True).worksheets[0]
    cells = list(sheet.iter_rows(values_only=True))
    header = list(cells[0])
    excel = [dict(zip(header, values, strict=True)) for values in cells[1:]]
    for name in ("basis", "window_basis", "rebate", "cumulative_rebate", "accrual"):
        assert [Decimal(repr(row[name])) for row in excel] == [Decimal(row[name]) for row in rows]


def test_explain(tmp_path: Path) -> None:
    code, stdout, stderr = calc("--explain", "TERM", "--period", "3")
    assert code == 0, stderr
    assert "Scope term: this period earns R_i - R_(i-1) = 180.00 - 480.00 = -300.00" in stdout
    assert "Whole volume: 2% x 9,000.00 = 180.00" in stdout
    code, _, stderr = calc("--explain", "NOPE")
    assert (code, stderr) == (
        2,
        "error: field '--explain': no agreement 'NOPE' (agreements: TERM)\n",
    )


def test_demo_command() -> None:
    code, stdout, stderr = run("demo")
    assert code == 0, stderr
    assert "SUXIAN-GROUP" in stdout
    assert "Demo:" in stdout


def test_a_database_kept_busy_is_one_line_not_a_traceback(capsys) -> None:  # type: ignore[no-untyped-def]
    locked = OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))
    with pytest.raises(ExitError) as failed, errors():
        raise locked
    assert failed.value.code == EXIT_REFUSED
    assert " ".join(capsys.readouterr().err.split()) == (
        "error: the database is busy: another Fanli process kept it for over 30 seconds; "
        "nothing was changed, try again"
    )
    other = OperationalError("SELECT ...", {}, sqlite3.OperationalError("no such table: x"))
    with pytest.raises(OperationalError), errors():
        raise other  # not a queue: a fault, left to the log


def test_times_are_shown_on_the_companys_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch and period lists had shown UTC: 23:48 on the 28th while the business day, and a
    payout made then, were already the 29th in Shanghai."""
    late = datetime(2026, 11, 28, 23, 48, tzinfo=UTC)
    for zone, shown in (
        ("Asia/Shanghai", "2026-11-29 07:48"),
        ("Europe/Berlin", "2026-11-29 00:48"),
    ):
        monkeypatch.setenv("FANLI_TIMEZONE", zone)
        company_zone.cache_clear()  # read once per process
        try:
            assert local_time(late) == shown
            assert local_time(late, "%Y-%m-%d") == "2026-11-29"
        finally:
            company_zone.cache_clear()
