"""Compile agreement terms into the small integer tables the columnar engine joins against.

Everything here is exact integer arithmetic done once per agreement, in Python, before any fact
is read:

* measures (amounts, quantities, thresholds) in units of 10**-4 (``MEASURE_UNIT``);
* percent rates in parts per million of the basis, per-unit rates in 10**-6 of the currency, so
  that rate x measure is always in 10**-10 of the currency (``AMOUNT_UNIT``);
* fixed amounts directly in 10**-10 of the currency;
* growth-band bounds in 10**-4 percent;
* caps and guarantees in the currency's minor unit (they apply after the one rounding).

Bands carry what the rating needs so that it is one lookup per result row (DESIGN.md): the
marginal amount accumulated below the band, the sum of the rates up to it, and the sum of fixed
amounts up to it. Line sets (earning, target, gate, baseline) carry their validity split into
month x period segments: the key of the eligibility map.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum

from fanli.agreements.terms import (
    Agreement,
    CustomerFilter,
    EligibilityEvent,
    GrowthBaseline,
    Measure,
    ProductFilter,
    RateForm,
    Split,
    TierScope,
)
from fanli.kit.money import FACT_SCALE, minor_unit
from fanli.kit.periods import Period, add_months, shift_years

MEASURE_UNIT = 10**FACT_SCALE  # integer measures count 10**-4 of a unit
RATE_UNIT = 10**6  # rates: parts per million (percent) or 10**-6 currency per unit
AMOUNT_EXPONENT = 10  # rate x measure lands in 10**-10 of the currency
PERCENT_UNIT = 10**4  # growth-band bounds in 10**-4 percent
GROWTH_SCALE = 100 * PERCENT_UNIT  # growth value = GROWTH_SCALE x T / B


class Role(IntEnum):
    """What a line set contributes to a result."""

    EARNING = 0  # P, and T when the tier is judged on the earning set
    TARGET = 1  # T from a separate target set
    GATE = 2  # G
    BASELINE = 3  # B: the target set one year back


MEASURE_CODE = {Measure.NET: 0, Measure.GROSS: 1, Measure.QUANTITY: 2}
EVENT_COLUMN = {
    EligibilityEvent.ORDER: "order_date",
    EligibilityEvent.INVOICE: "invoice_date",
    EligibilityEvent.PAID_INVOICE: "paid_date",
}


def to_int(value: Decimal, unit: int) -> int:
    """Exact integer of ``value`` in 1/unit; validation guarantees no digits are lost."""
    scaled = value * unit
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} is finer than 1/{unit}")
    return int(scaled)


@dataclass(frozen=True)
class CompiledBand:
    agreement_no: int
    band_no: int  # 1-based
    lower: int  # measure units, or 10**-4 percent for growth
    rate: int  # RATE_UNIT scale (fixed form: 10**-10 currency)
    marginal_below: int  # sum over lower bands of rate x width
    rate_sum: int  # sum of rates up to and including this band
    display_rate: int  # the rate as written, x 10**6


@dataclass(frozen=True)
class Segment:
    """Part of a set's validity inside one calendar month and one calculation period."""

    month: dt.date  # first of the month, the map's key
    start: dt.date
    end: dt.date  # exclusive
    period_index: int


@dataclass(frozen=True)
class LineSetSpec:
    set_no: int
    agreement_no: int
    role: Role
    event_column: str
    customers: CustomerFilter
    products: ProductFilter
    pool: tuple[str, ...] | None
    document_types: tuple[str, ...] | None
    currency: str
    segments: tuple[Segment, ...]
    measure: int  # MEASURE_CODE summed for the set's role
    second_measure: int | None  # the earning set's tier measure when it differs from P


@dataclass(frozen=True)
class CompiledAgreement:
    """Integer parameters of one agreement (one row of the engine's ``agreement`` table)."""

    agreement_no: int
    agreement: Agreement
    periods: tuple[Period, ...]
    scope_term: bool
    method: str
    form: str
    p_measure: int
    t_measure: int
    g_measure: int
    same_measure: bool  # T and P are the same sum: P / T = 1
    growth_mode: str | None
    baseline_fixed: int | None
    minimum: int | None
    gate_target: int | None
    cap_period: int | None  # minor units
    cap_term: int | None
    guarantee: int | None
    carry_forward: bool
    pooled: bool
    pro_rata: bool
    counterparty: str | None
    half_even: bool
    divisor: int  # 10**-10 units per minor unit
    money_to_measure: int  # minor units -> 10**-4 units
    expected: bool
    dense: bool  # a period without lines can still pay: every started period is a row
    bands: tuple[CompiledBand, ...]


def compile_bands(agreement_no: int, agreement: Agreement) -> tuple[CompiledBand, ...]:
    rebate = agreement.rebate
    growth = agreement.growth is not None
    bound_unit = PERCENT_UNIT if growth else MEASURE_UNIT
    rate_unit = {
        RateForm.PERCENT: RATE_UNIT // 100,  # 10 (percent) -> 100,000 ppm
        RateForm.PER_UNIT: RATE_UNIT,
        RateForm.FIXED: 10**AMOUNT_EXPONENT,
    }[rebate.form]
    compiled: list[CompiledBand] = []
    marginal_below = 0
    rate_sum = 0
    for number, band in enumerate(rebate.tiers, start=1):
        rate = to_int(band.rate, rate_unit)
        rate_sum += rate
        compiled.append(
            CompiledBand(
                agreement_no=agreement_no,
                band_no=number,
                lower=to_int(band.lower, bound_unit),
                rate=rate,
                marginal_below=marginal_below,
                rate_sum=rate_sum,
                display_rate=to_int(band.rate, RATE_UNIT),
            )
        )
        if band.upper is not None:
            marginal_below += rate * to_int(band.upper - band.lower, bound_unit)
    return tuple(compiled)


def _optional(value: Decimal | None, unit: int) -> int | None:
    return None if value is None else to_int(value, unit)


def compile_agreement(agreement_no: int, agreement: Agreement) -> CompiledAgreement:
    rebate = agreement.rebate
    minor = 10 ** minor_unit(agreement.currency)
    parties = agreement.parties
    growth = agreement.growth
    return CompiledAgreement(
        agreement_no=agreement_no,
        agreement=agreement,
        periods=tuple(agreement.calculation_periods()),
        scope_term=agreement.periods.scope is TierScope.TERM,
        method=rebate.method.value,
        form=rebate.form.value,
        p_measure=MEASURE_CODE[rebate.basis],
        t_measure=MEASURE_CODE[rebate.tier_measure],
        g_measure=MEASURE_CODE[agreement.gate.measure] if agreement.gate else 0,
        same_measure=rebate.tier_measure is rebate.basis and agreement.target is None,
        growth_mode=growth.mode.value if growth else None,
        baseline_fixed=(
            _optional(growth.baseline_amount, MEASURE_UNIT)
            if growth and growth.baseline is GrowthBaseline.FIXED
            else None
        ),
        minimum=_optional(agreement.minimum, MEASURE_UNIT),
        gate_target=_optional(agreement.gate.target, MEASURE_UNIT) if agreement.gate else None,
        cap_period=_optional(agreement.cap.per_period, minor),
        cap_term=_optional(agreement.cap.per_term, minor),
        guarantee=_optional(agreement.guarantee.amount, minor) if agreement.guarantee else None,
        carry_forward=bool(agreement.guarantee and agreement.guarantee.carry_forward),
        pooled=parties is not None,
        pro_rata=parties is not None and parties.split is Split.PRO_RATA,
        counterparty=parties.counterparty if parties else None,
        half_even=agreement.rounding.value == "half_even",
        divisor=10**AMOUNT_EXPONENT // minor,
        money_to_measure=MEASURE_UNIT // minor,
        expected=agreement.accrual.mode.value == "expected",
        dense=agreement.pays_without_lines,
        bands=compile_bands(agreement_no, agreement),
    )


def month_segments(
    ranges: list[tuple[int, dt.date, dt.date]], start: dt.date, end: dt.date
) -> tuple[Segment, ...]:
    """Cut each ``(period_index, from, to)`` to ``[start, end)`` and split it at month starts."""
    segments: list[Segment] = []
    for period_index, range_start, range_end in ranges:
        low = max(range_start, start)
        high = min(range_end, end)
        while low < high:
            month = low.replace(day=1)
            next_month = add_months(month, 1)
            segment_end = min(high, next_month)
            segments.append(Segment(month, low, segment_end, period_index))
            low = segment_end
    return tuple(segments)


def compile_sets(
    compiled: CompiledAgreement, first_set_no: int, as_of: dt.date | None
) -> list[LineSetSpec]:
    """The line sets of one agreement with their month x period segments."""
    agreement = compiled.agreement
    eligibility = agreement.eligibility
    ranges = [(i, p.start, p.end) for i, p in enumerate(compiled.periods, start=1)]
    last_day = as_of + dt.timedelta(days=1) if as_of else dt.date.max
    earning_segments = month_segments(
        ranges, agreement.earning_start, min(agreement.earning_end, last_day)
    )
    common = {
        "agreement_no": compiled.agreement_no,
        "event_column": EVENT_COLUMN[eligibility.event],
        "pool": agreement.pool,
        "document_types": eligibility.document_types,
        "currency": agreement.currency,
    }
    target = agreement.target or eligibility
    tier_from_earning = agreement.target is None and compiled.t_measure != compiled.p_measure
    specs = [
        LineSetSpec(
            set_no=first_set_no,
            role=Role.EARNING,
            customers=eligibility.customers,
            products=eligibility.products,
            segments=earning_segments,
            measure=compiled.p_measure,
            second_measure=compiled.t_measure if tier_from_earning else None,
            **common,  # type: ignore[arg-type]
        )
    ]
    if agreement.target is not None:
        specs.append(
            LineSetSpec(
                set_no=first_set_no + len(specs),
                role=Role.TARGET,
                customers=agreement.target.customers,
                products=agreement.target.products,
                segments=earning_segments,
                measure=compiled.t_measure,
                second_measure=None,
                **common,  # type: ignore[arg-type]
            )
        )
    if agreement.gate is not None:
        specs.append(
            LineSetSpec(
                set_no=first_set_no + len(specs),
                role=Role.GATE,
                customers=agreement.gate.customers,
                products=agreement.gate.products,
                segments=earning_segments,
                measure=compiled.g_measure,
                second_measure=None,
                **common,  # type: ignore[arg-type]
            )
        )
    if agreement.prior_year_baseline:
        shifted = [(i, shift_years(start, -1), shift_years(end, -1)) for i, start, end in ranges]
        specs.append(
            LineSetSpec(
                set_no=first_set_no + len(specs),
                role=Role.BASELINE,
                customers=target.customers,
                products=target.products,
                segments=month_segments(shifted, dt.date.min, dt.date.max),
                measure=compiled.t_measure,
                second_measure=None,
                **common,  # type: ignore[arg-type]
            )
        )
    return specs
