"""Property tests: the columnar engine and the reference calculator agree to the cent.

Hypothesis draws 1-4 random but valid agreements (``strategies.py``: every feature of the terms
model, bounds and rates on coarse grids so that band edges and exact half cents come up often),
random sales and customer and product files, and an as-of date; both calculators must return
the same rows, and the rows must satisfy the invariants that follow from docs/calculation.md.

Profiles (tests/conftest.py): ``ci`` (300 examples, the default) and ``thorough`` (3,000), picked
with ``HYPOTHESIS_PROFILE=thorough``. A failure prints the shrunk scenario as literal terms and
sales, and a ``@reproduce_failure`` blob; to replay a whole run, pass the seed it printed:
``pytest tests/engine/test_properties.py --hypothesis-seed=<seed>``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import fields
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import event, given, settings
from strategies import Scenario, scenarios

from fanli.agreements.terms import AccrualMode, Agreement, RateForm, Split, TierScope
from fanli.engine import columnar
from fanli.engine.reference import calculate_reference
from fanli.engine.results import ResultRow, rows_from_table
from fanli.kit.errors import InputError
from fanli.kit.money import minor_unit

Key = tuple[str, int, str, int]


def _describe_differences(actual: list[ResultRow], expected: list[ResultRow]) -> str:
    """Which rows only one side has, and which fields differ on the rows both have."""
    engine = {row.key(): row for row in actual}
    reference = {row.key(): row for row in expected}
    lines = []
    for key in sorted(engine.keys() - reference.keys()):
        lines.append(f"only the engine has {key}: {engine[key]}")
    for key in sorted(reference.keys() - engine.keys()):
        lines.append(f"only the reference has {key}: {reference[key]}")
    for key in sorted(engine.keys() & reference.keys()):
        for field in fields(ResultRow):
            mine = getattr(engine[key], field.name)
            theirs = getattr(reference[key], field.name)
            if mine != theirs:
                lines.append(f"{key} {field.name}: engine {mine!r}, reference {theirs!r}")
    return "\n".join(lines)


def _units(amount: Decimal, currency: str) -> int:
    """An amount in whole minor units; fails when it is not whole (not rounded to the unit)."""
    scaled = amount.scaleb(minor_unit(currency))
    assert scaled == scaled.to_integral_value(), f"{amount} is not in whole {currency} units"
    return int(scaled)


def _by_beneficiary(rows: list[ResultRow]) -> dict[tuple[str, int, str], list[ResultRow]]:
    grouped: dict[tuple[str, int, str], list[ResultRow]] = defaultdict(list)
    for row in rows:
        grouped[(row.agreement_id, row.version, row.beneficiary_id)].append(row)
    return grouped


def _is_pro_rata(agreement: Agreement) -> bool:
    return agreement.parties is not None and agreement.parties.split is Split.PRO_RATA


def _check_rows_of_agreement(
    agreement: Agreement, rows: list[ResultRow], as_of: dt.date | None
) -> None:
    periods = agreement.calculation_periods()
    started = [p for p in periods if as_of is None or p.start <= as_of]
    bands = agreement.rebate.tiers
    currency = agreement.currency
    for row in rows:
        period = periods[row.period_index - 1]
        assert (row.period_start, row.period_end) == (period.start, period.end)
        assert as_of is None or period.start <= as_of
        assert row.currency == currency
        assert 0 <= row.tier <= len(bands)
        assert row.rate == (bands[row.tier - 1].rate if row.tier else None)
        assert (row.baseline is None) == (agreement.growth is None)
        assert (row.gate_basis is None) == (agreement.gate is None)
        assert row.lines >= 0
        assert row.lines or row.basis == 0
        for name in ("window_rebate", "rebate", "cumulative_rebate", "accrual"):
            _units(getattr(row, name), currency)

    pro_rata = _is_pro_rata(agreement)
    cap = agreement.cap
    guarantee = agreement.guarantee
    for beneficiary_rows in _by_beneficiary(rows).values():
        indexes = [row.period_index for row in beneficiary_rows]
        assert indexes == sorted(set(indexes))
        # Guarantees and fixed amounts can pay without lines: every started period is reported.
        if guarantee is not None or agreement.rebate.form is RateForm.FIXED:
            assert indexes == list(range(1, len(started) + 1))
        running = Decimal(0)
        for row in beneficiary_rows:
            running += row.rebate
            assert row.cumulative_rebate == running
            projected = (
                agreement.accrual.mode is AccrualMode.EXPECTED
                and as_of is not None
                and row.period_start <= as_of < row.period_end
            )
            if not projected:
                assert row.accrual == row.cumulative_rebate
        if pro_rata:
            continue
        plain = cap.per_period is None and cap.per_term is None and guarantee is None
        for row in beneficiary_rows:
            if plain and agreement.periods.scope is TierScope.PERIOD:
                assert row.rebate == row.window_rebate
            if plain and agreement.periods.scope is TierScope.TERM:
                assert row.cumulative_rebate == row.window_rebate
            if cap.per_period is not None:
                assert row.rebate <= cap.per_period
            if cap.per_term is not None:
                assert row.cumulative_rebate <= cap.per_term
            if guarantee is not None and cap.per_term is None:
                if guarantee.carry_forward:
                    assert row.cumulative_rebate >= row.period_index * guarantee.amount
                else:
                    assert row.rebate >= guarantee.amount


def _check_pro_rata_split(scenario: Scenario, agreement: Agreement, rows: list[ResultRow]) -> None:
    """The members' shares add up to what the pool earns when it is all paid to the
    counterparty, period by period; each share has the pool's sign."""
    assert agreement.parties is not None
    pooled = agreement.model_copy(
        update={"parties": agreement.parties.model_copy(update={"split": Split.COUNTERPARTY})}
    )
    pool_rows = calculate_reference(
        [pooled],
        sales=scenario.sales_table(),
        customers=scenario.customers_table(),
        products=scenario.products_table(),
        as_of=scenario.as_of,
        unstated_currency=scenario.unstated_currency,
    )
    counterparty = agreement.parties.counterparty
    pool = {row.period_index: row for row in pool_rows}
    shares: dict[int, list[ResultRow]] = defaultdict(list)
    for row in rows:
        shares[row.period_index].append(row)
    assert sorted(shares) == sorted(pool)
    for index, period_rows in shares.items():
        whole = pool[index]
        assert counterparty in {row.beneficiary_id for row in period_rows}
        assert sum(row.rebate for row in period_rows) == whole.rebate
        for row in period_rows:
            assert row.window_rebate == whole.window_rebate
            assert row.tier == whole.tier
            assert row.window_basis == whole.window_basis
            assert row.rebate * whole.rebate >= 0
    # The accrual increments are split the same way: the running totals add up.
    last = {row.beneficiary_id: row for row in rows}
    if pool_rows:
        assert sum(row.accrual for row in last.values()) == pool_rows[-1].accrual


def _check_invariants(scenario: Scenario, rows: list[ResultRow]) -> None:
    keys = [row.key() for row in rows]
    assert keys == sorted(set(keys))
    by_agreement: dict[tuple[str, int], list[ResultRow]] = defaultdict(list)
    for row in rows:
        by_agreement[(row.agreement_id, row.version)].append(row)
    known = {(a.id, a.version): a for a in scenario.agreements}
    assert by_agreement.keys() <= known.keys()
    for key, agreement_rows in by_agreement.items():
        agreement = known[key]
        _check_rows_of_agreement(agreement, agreement_rows, scenario.as_of)
        if _is_pro_rata(agreement):
            _check_pro_rata_split(scenario, agreement, agreement_rows)


@settings(print_blob=True)
@given(scenario=scenarios())
def test_engine_agrees_with_reference(scenario: Scenario) -> None:
    inputs = {
        "sales": scenario.sales_table(),
        "customers": scenario.customers_table(),
        "products": scenario.products_table(),
        "as_of": scenario.as_of,
        "unstated_currency": scenario.unstated_currency,
    }
    try:
        expected = calculate_reference(list(scenario.agreements), **inputs)
    except InputError:
        # A filter names an attribute whose file is missing: the engine must refuse it too.
        with pytest.raises(InputError):
            columnar.calculate(list(scenario.agreements), **inputs)
        return
    # The engine reads the lines in reverse: no result may depend on their order.
    sales = inputs["sales"]
    reversed_sales = sales.take(pa.array(range(sales.num_rows - 1, -1, -1), pa.int64()))
    table = columnar.calculate(list(scenario.agreements), **(inputs | {"sales": reversed_sales}))
    actual = rows_from_table(table)
    assert actual == expected, _describe_differences(actual, expected)
    _check_invariants(scenario, expected)
    _record_coverage(scenario, expected)


def _record_coverage(scenario: Scenario, rows: list[ResultRow]) -> None:
    """What the example exercised, for ``--hypothesis-show-statistics``."""
    event(f"result rows: {'none' if not rows else '1-9' if len(rows) < 10 else '10+'}")
    if any(row.rebate < 0 for row in rows):
        event("a claw-back (negative rebate)")
    if any(row.tier > 1 for row in rows):
        event("a band above the first reached")
    if any(row.accrual != row.cumulative_rebate for row in rows):
        event("an expected accrual differs from the actual one")
    pro_rata = {(a.id, a.version): a.parties for a in scenario.agreements if _is_pro_rata(a)}
    if any(
        row.rebate and row.beneficiary_id != parties.counterparty
        for row in rows
        if (parties := pro_rata.get((row.agreement_id, row.version))) is not None
    ):
        event("a pro-rata member is paid")
