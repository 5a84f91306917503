"""Regressions found by the property tests (test_properties.py), shrunk to small literal ledgers.

Each test names the discrepancy between the columnar engine and the reference calculator and
states the amounts docs/calculation.md requires, worked out by hand. They run on every calculator
of the ``calculator`` fixture (tests/engine/conftest.py).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from builders import Calculator, agreement, sales_table

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
