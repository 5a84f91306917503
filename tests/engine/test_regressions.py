"""Regressions found by the property tests (test_properties.py), shrunk to small literal ledgers.

Each test names the discrepancy between the columnar engine and the reference calculator and
states the amounts docs/calculation.md requires, worked out by hand. They run on every calculator
of the ``calculator`` fixture (tests/engine/conftest.py).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from builders import Calculator, agreement, sale, sales_table

from fanli.engine.results import ResultRow

D = Decimal


def only(rows: list[ResultRow]) -> ResultRow:
    assert len(rows) == 1, rows
    return rows[0]


# ---- a negative tier basis valued at P / T -----------------------------------------------------


@pytest.mark.parametrize(
    "terms",
    [
        pytest.param(
            {"rebate": {"method": "marginal", "tiers": [{"from": "0", "rate": "2"}]}}, id="marginal"
        ),
        pytest.param(
            {"rebate": {"method": "rolling", "tiers": [{"from": "0", "rate": "2"}]}}, id="rolling"
        ),
        pytest.param(
            {
                "rebate": {"tiers": [{"from": "0", "rate": "2"}]},
                "growth": {"mode": "growth_only", "baseline": "fixed", "baseline_amount": "1000"},
            },
            id="growth_only",
        ),
        pytest.param(
            {
                "rebate": {"tiers": [{"from": "0", "rate": "2"}]},
                "growth": {"mode": "marginal", "baseline": "fixed", "baseline_amount": "1000"},
            },
            id="growth_marginal",
        ),
    ],
)
def test_negative_tier_basis_with_a_separate_target_earns_nothing(
    calculator: Calculator, terms: dict[str, Any]
) -> None:
    """Spec, Rating: a return of 1,000.00 is the only line, so T = P = -1,000. No band is reached
    (every band starts at 0 or above; for growth, T < 0 reaches no band), so the raw rebate is 0.
    The separate target set (``target: {}``, every line) makes the engine value T at P / T.

    Engine bug: it pays 0.01 (one minor unit from rounding 0 / T with T negative); with growth
    marginal it fails with a conversion error instead."""
    row = only(
        calculator(
            [agreement(target={}, **terms)],
            sales=sales_table([("C1", "P1", "2025-01-01", "-1000.00")]),
        )
    )
    assert (row.tier_basis, row.tier, row.rate) == (D(-1000), 0, None)
    assert row.window_rebate == row.rebate == row.cumulative_rebate == row.accrual == D(0)


# ---- a line at the top of the facts' range ----------------------------------------------------


@pytest.mark.parametrize(
    ("terms", "line", "expected"),
    [
        # 1% x 10,000,000,000.00 = 100,000,000.00
        pytest.param(
            {"rebate": {"tiers": [{"from": "0", "rate": "1"}]}},
            sale("10000000000.00", date="2025-03-01"),
            D("100000000.00"),
            id="net",
        ),
        # 0.50 per unit x 20,000,000,000 units = 10,000,000,000.00
        pytest.param(
            {
                "rebate": {
                    "form": "per_unit",
                    "basis": "quantity",
                    "tiers": [{"from": "0", "rate": "0.5"}],
                }
            },
            sale("1.00", quantity="20000000000", date="2025-03-01"),
            D("10000000000.00"),
            id="quantity",
        ),
    ],
)
def test_a_line_of_ten_billion_is_calculated_exactly(
    calculator: Calculator, terms: dict[str, Any], line: dict[str, Any], expected: Decimal
) -> None:
    """Spec, Inputs and "Exactness in the engine": a measure is a decimal with at most 4 places
    (the facts' schema holds 18 digits, up to 10^14), held as an integer in 10^-4 units and
    multiplied in 128-bit integers. A single line of 10^10 or more is still exact.

    Engine bug (or an unstated range limit): converting the line's DECIMAL(18, 4) value to 10^-4
    units overflows DECIMAL(18) and the engine raises CalculationError; two lines of 6 x 10^9
    each are calculated correctly."""
    row = only(calculator([agreement(**terms)], sales=sales_table([line])))
    assert row.rebate == expected
