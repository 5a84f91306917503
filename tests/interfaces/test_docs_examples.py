"""Every worked example of docs/agreements.md, computed by ``fanli calc`` from its files.

The amounts below are the ones the document states (with their arithmetic).
"""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fanli.interfaces.cli.main import app

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"

# (example, extra options, {(agreement, beneficiary, period): (rebate, cumulative, accrual)})
CASES: list[tuple[str, list[str], dict[tuple[str, str, int], tuple[str, str, str]]]] = [
    (
        "tiers",
        [],
        {
            ("WHOLE", "C1", 1): ("500.00", "500.00", "500.00"),
            ("MARGINAL", "C1", 1): ("350.00", "350.00", "350.00"),
            ("ROLLING", "C1", 1): ("600.00", "600.00", "600.00"),
            ("ALL", "C1", 1): ("700.00", "700.00", "700.00"),
        },
    ),
    (
        "per-unit",
        [],
        {
            ("UNIT", "C1", 1): ("120.00", "120.00", "120.00"),
            ("FIXED", "C1", 1): ("800.00", "800.00", "800.00"),
        },
    ),
    (
        "growth",
        [],
        {
            ("G-WHOLE", "C1", 1): ("70500.00", "70500.00", "70500.00"),
            ("G-ONLY", "C1", 1): ("10500.00", "10500.00", "10500.00"),
            ("G-MARGINAL", "C1", 1): ("3500.00", "3500.00", "3500.00"),
            ("G-FIXED", "C1", 1): ("47000.00", "47000.00", "47000.00"),
        },
    ),
    (
        "minimum-gate",
        [],
        {
            ("MIN", "C1", 1): ("600.00", "600.00", "600.00"),
            ("MIN", "C2", 1): ("0.00", "0.00", "0.00"),
            ("GATE", "C1", 1): ("400.00", "400.00", "400.00"),
            ("GATE", "C2", 1): ("0.00", "0.00", "0.00"),
        },
    ),
    (
        "caps-guarantee",
        [],
        {
            ("CAPPED", "C1", 1): ("500.00", "500.00", "500.00"),
            ("CAPPED", "C1", 2): ("200.00", "700.00", "700.00"),
            ("CAPPED", "C1", 3): ("300.00", "1000.00", "1000.00"),
            ("CARRIED", "C2", 1): ("300.00", "300.00", "300.00"),
            ("CARRIED", "C2", 2): ("510.00", "810.00", "810.00"),
            ("CARRIED", "C2", 3): ("600.00", "1410.00", "1410.00"),
        },
    ),
    (
        "term-scope",
        [],
        {
            ("TERM", "C1", 1): ("160.00", "160.00", "160.00"),
            ("TERM", "C1", 2): ("320.00", "480.00", "480.00"),
            ("TERM", "C1", 3): ("-300.00", "180.00", "180.00"),
        },
    ),
    (
        "buying-group",
        [],
        {
            ("GROUP", "C1", 1): ("166.68", "166.68", "166.68"),
            ("GROUP", "C2", 1): ("100.00", "100.00", "100.00"),
            ("GROUP", "C3", 1): ("66.67", "66.67", "66.67"),
        },
    ),
    (
        "eligibility",
        [],
        {
            ("PAID-DRINKS", "C1", 1): ("280.00", "280.00", "280.00"),
        },
    ),
    (
        "rounding",
        [],
        {
            ("HALF-UP", "C1", 1): ("5.01", "5.01", "5.01"),
            ("HALF-EVEN", "C1", 1): ("5.00", "5.00", "5.00"),
        },
    ),
    (
        "tier-basis",
        [],
        {
            ("QTY-BANDS", "C1", 1): ("80.00", "80.00", "80.00"),
        },
    ),
    (
        "accrual",
        ["--as-of", "2026-03-31"],
        {
            ("EXPECTED", "C1", 1): ("300.00", "300.00", "600.00"),
        },
    ),
    (
        "chinese-erp",
        [],
        {
            ("ERP", "C1", 1): ("185.00", "185.00", "185.00"),
        },
    ),
]


@pytest.mark.parametrize(("example", "options", "expected"), CASES, ids=[c[0] for c in CASES])
def test_documented_example(
    example: str,
    options: list[str],
    expected: dict[tuple[str, str, int], tuple[str, str, str]],
    tmp_path: Path,
) -> None:
    out = tmp_path / "results.csv"
    result = CliRunner().invoke(
        app,
        [
            "calc",
            "--agreements",
            str(EXAMPLES / f"{example}.yaml"),
            "--sales",
            str(EXAMPLES / f"{example}-sales.csv"),
            "--customers",
            str(EXAMPLES / "customers.csv"),
            "--products",
            str(EXAMPLES / "products.csv"),
            "--out",
            str(out),
            *options,
        ],
    )
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    got = {
        (row["agreement_id"], row["beneficiary_id"], int(row["period_index"])): (
            Decimal(row["rebate"]),
            Decimal(row["cumulative_rebate"]),
            Decimal(row["accrual"]),
        )
        for row in rows
    }
    want = {key: tuple(Decimal(value) for value in values) for key, values in expected.items()}
    assert got == want
