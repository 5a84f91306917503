"""The reference calculator: docs/calculation.md read literally, row by row, in exact arithmetic.

This module owns the oracle. The columnar engine must agree with it to the cent, so it is written
to be checked by reading, not to be fast: every step of the specification is one small function
with the spec's own names (``P``, ``T``, ``G``, ``B``, ``R``, ``e``, ``c``, ``g``, ``f``).
Arithmetic is ``Fraction`` on exact ``Decimal`` inputs; the only rounding is the one the spec
names, ``kit.money.round_fraction`` to the currency's minor unit. It is pure: Arrow tables in
(converted with ``to_pylist``), ``ResultRow`` objects out, no database, no I/O, no clock.

Where the specification leaves a point open, the reading chosen is stated in a comment marked
``Reading:`` so that the spec and the engine can be aligned with it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pyarrow as pa

from fanli.agreements.terms import (
    AccrualMode,
    Agreement,
    Band,
    CustomerSelector,
    EligibilityEvent,
    GrowthBaseline,
    GrowthMode,
    LineSet,
    Measure,
    ProductSelector,
    RateForm,
    Split,
    TierMethod,
    TierScope,
)
from fanli.engine.results import ResultRow
from fanli.kit.errors import InputError
from fanli.kit.money import FACT_SCALE, ZERO, minor_unit, round_fraction
from fanli.kit.periods import Period, shift_years

_MEASURE_QUANTUM = Decimal(1).scaleb(-FACT_SCALE)  # measures are reported with four places
_FRACTION_ZERO = Fraction(0)


# ---- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    """One sales line, ids as text, measures as Decimal (a missing measure contributes 0)."""

    line_id: str
    document_type: str | None
    customer_id: str | None
    product_id: str | None
    order_date: dt.date | None
    invoice_date: dt.date | None
    paid_date: dt.date | None
    quantity: Decimal
    net_amount: Decimal
    gross_amount: Decimal
    currency: str | None

    def event_date(self, event: EligibilityEvent) -> dt.date | None:
        if event is EligibilityEvent.ORDER:
            return self.order_date
        if event is EligibilityEvent.INVOICE:
            return self.invoice_date
        return self.paid_date

    def measure(self, measure: Measure) -> Decimal:
        if measure is Measure.NET:
            return self.net_amount
        if measure is Measure.GROSS:
            return self.gross_amount
        return self.quantity


def _text(value: Any) -> str | None:
    """Ids and attribute values compare as text; null stays null (and never matches)."""
    return None if value is None else str(value)


def _measure_value(value: Any) -> Decimal:
    # Reading: a null measure (e.g. no gross amount on the line) adds nothing to a sum, as SQL SUM
    # skips nulls; the line itself still counts.
    if value is None:
        return ZERO
    if not isinstance(value, Decimal | int):
        raise InputError(f"measure {value!r} is not a decimal", file="sales")
    return Decimal(value)


def _line_from_row(row: Mapping[str, Any]) -> _Line:
    return _Line(
        line_id=str(row["line_id"]),
        document_type=_text(row.get("document_type")),
        customer_id=_text(row.get("customer_id")),
        product_id=_text(row.get("product_id")),
        order_date=row.get("order_date"),
        invoice_date=row.get("invoice_date"),
        paid_date=row.get("paid_date"),
        quantity=_measure_value(row.get("quantity")),
        net_amount=_measure_value(row.get("net_amount")),
        gross_amount=_measure_value(row.get("gross_amount")),
        currency=_text(row.get("currency")),
    )


@dataclass(frozen=True)
class _DateRange:
    """Half-open ``[start, end)``; may be empty (start >= end), unlike ``kit.periods.Period``."""

    start: dt.date
    end: dt.date

    def __contains__(self, day: object) -> bool:
        return isinstance(day, dt.date) and self.start <= day < self.end

    def intersect(self, other: _DateRange) -> _DateRange:
        return _DateRange(max(self.start, other.start), min(self.end, other.end))

    def one_year_earlier(self) -> _DateRange:
        return _DateRange(shift_years(self.start, -1), shift_years(self.end, -1))


def _range(period: Period) -> _DateRange:
    return _DateRange(period.start, period.end)


@dataclass(frozen=True)
class _Dimension:
    """A customer or product file: id text -> its eras -> column -> value text.

    An item has one era, holding always, unless the file has ``valid_from`` and ``valid_to``
    (customers only): then each row holds from ``valid_from`` (empty: always) until
    ``valid_to`` (exclusive; empty: for good), and a line is judged by the row its date falls in.
    """

    name: str  # "customers" or "products", for error messages
    id_column: str
    columns: frozenset[str]
    rows: Mapping[str, Sequence[tuple[_DateRange, Mapping[str, str | None]]]]

    def value(self, item_id: str | None, column: str, day: dt.date) -> str | None:
        """The item's value in ``column`` on ``day``; the id itself for the id column.

        A customer or product missing from its file (or from it on that day) has no other
        values (spec: it matches ``id`` selectors and empty includes only)."""
        if item_id is None:
            return None
        if column == self.id_column:
            return item_id
        for held, values in self.rows.get(item_id, ()):
            if day in held:
                return values.get(column)
        return None

    def check_column(self, column: str) -> None:
        """A filter naming an attribute needs the file that carries it.

        Reading: ``group``, ``category`` and ``brand`` are not attributes: without the file (or
        the column) every item simply has none, so those selectors match nothing."""
        if column not in self.columns:
            raise InputError(
                f"a filter names the attribute {column!r}, which the {self.name} file "
                f"{'does not have' if self.columns else 'is needed for'}",
                file=self.name,
                field=column,
            )


_ALWAYS = _DateRange(dt.date.min, dt.date.max)


def _day(row: Mapping[str, Any], column: str, item_id: str) -> dt.date | None:
    """An era's bound: a date, its ISO text, or nothing."""
    value = row[column]
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InputError(
            f"customer {item_id}: {value!r} is not a date", file="customers", field=column
        ) from None


def _dimension(table: pa.Table | None, *, name: str, id_column: str) -> _Dimension:
    if table is None:
        return _Dimension(name, id_column, frozenset(), {})
    eras = id_column == "customer_id" and {"valid_from", "valid_to"} <= set(table.column_names)
    rows: dict[str, list[tuple[_DateRange, dict[str, str | None]]]] = {}
    for row in table.to_pylist():
        item_id = _text(row.get(id_column))
        if item_id is None:
            continue
        held = _ALWAYS
        if eras:
            held = _DateRange(
                _day(row, "valid_from", item_id) or dt.date.min,
                _day(row, "valid_to", item_id) or dt.date.max,
            )
        values = {
            column: _text(value)
            for column, value in row.items()
            if not (eras and column in ("valid_from", "valid_to"))
        }
        # Without eras the last row of an id wins, as before.
        rows[item_id] = [*rows.get(item_id, []), (held, values)] if eras else [(held, values)]
    for item_id, held_by in rows.items():
        spans = sorted(held.start for held, _ in held_by), sorted(held.end for held, _ in held_by)
        if any(end > start for end, start in zip(spans[1][:-1], spans[0][1:], strict=True)):
            raise InputError(
                f"customer {item_id} has eras that overlap (valid_from, valid_to)",
                file=name,
                field="valid_from",
            )
    return _Dimension(name, id_column, frozenset(table.column_names), rows)


# ---- which lines count -------------------------------------------------------------------------

# A selector field: the dimension column it reads and the values it accepts (OR).
_Field = tuple[str, tuple[str, ...]]


def _customer_fields(selector: CustomerSelector, customers: _Dimension) -> list[_Field]:
    fields: list[_Field] = []
    if selector.id is not None:
        fields.append((customers.id_column, selector.id))
    if selector.group is not None:
        fields.append(("group", selector.group))
    for attribute, values in selector.attributes.items():
        customers.check_column(attribute)
        fields.append((attribute, values))
    return fields


def _product_fields(selector: ProductSelector, products: _Dimension) -> list[_Field]:
    fields: list[_Field] = []
    if selector.id is not None:
        fields.append((products.id_column, selector.id))
    if selector.category is not None:
        fields.append(("category", selector.category))
    if selector.brand is not None:
        fields.append(("brand", selector.brand))
    for attribute, values in selector.attributes.items():
        products.check_column(attribute)
        fields.append((attribute, values))
    return fields


def _field_matches(dimension: _Dimension, item_id: str | None, field: _Field, day: dt.date) -> bool:
    column, values = field
    value = dimension.value(item_id, column, day)
    return value is not None and value in values  # null never matches


def _passes_filter(
    dimension: _Dimension,
    item_id: str | None,
    include: list[_Field],
    exclude: list[_Field],
    day: dt.date,
) -> bool:
    """Include: every field matches (empty include admits everyone); exclude: ANY field matches.
    An item is judged by its values on ``day``, the line's event date."""
    included = all(_field_matches(dimension, item_id, field, day) for field in include)
    excluded = any(_field_matches(dimension, item_id, field, day) for field in exclude)
    return included and not excluded


@dataclass(frozen=True)
class _Rules:
    """Rules 2-5 of "Which lines count" for one agreement and one line set (dates apart)."""

    agreement: Agreement
    customers: _Dimension
    products: _Dimension
    customer_include: list[_Field]
    customer_exclude: list[_Field]
    product_include: list[_Field]
    product_exclude: list[_Field]

    def selects(self, line: _Line, day: dt.date) -> bool:
        agreement = self.agreement
        document_types = agreement.eligibility.document_types
        if document_types is not None and line.document_type not in document_types:
            return False
        if line.currency is not None and line.currency != agreement.currency:
            return False
        if not _passes_filter(
            self.customers, line.customer_id, self.customer_include, self.customer_exclude, day
        ):
            return False
        if not _passes_filter(
            self.products, line.product_id, self.product_include, self.product_exclude, day
        ):
            return False
        pool = agreement.pool
        return pool is None or line.customer_id in pool


def _rules(
    agreement: Agreement, customers: _Dimension, products: _Dimension, line_set: LineSet
) -> _Rules:
    """Resolve a line set's filters once (an attribute missing from its file fails here)."""
    return _Rules(
        agreement=agreement,
        customers=customers,
        products=products,
        customer_include=_customer_fields(line_set.customers.include, customers),
        customer_exclude=_customer_fields(line_set.customers.exclude, customers),
        product_include=_product_fields(line_set.products.include, products),
        product_exclude=_product_fields(line_set.products.exclude, products),
    )


@dataclass(frozen=True)
class _LineSet:
    """A line set's lines (rules 2-5 hold), with their event date; dates are checked per use."""

    lines: tuple[tuple[_Line, dt.date], ...]
    measure: Measure

    def total(self, dates: _DateRange, *, beneficiary: Callable[[_Line], bool]) -> Decimal:
        return sum(
            (
                line.measure(self.measure)
                for line, day in self.lines
                if day in dates and beneficiary(line)
            ),
            ZERO,
        )

    def count(self, dates: _DateRange, *, beneficiary: Callable[[_Line], bool]) -> int:
        return sum(1 for line, day in self.lines if day in dates and beneficiary(line))


def _select(lines: Iterable[_Line], rules: _Rules, measure: Measure) -> _LineSet:
    """Lines of the set that have an event date, of any date: the prior-year baseline reads
    lines before the term and is not limited by the as-of date."""
    event = rules.agreement.eligibility.event
    selected: list[tuple[_Line, dt.date]] = []
    for line in lines:
        day = line.event_date(event)
        if day is None:
            continue
        if rules.selects(line, day):
            selected.append((line, day))
    return _LineSet(tuple(selected), measure)


# ---- rating ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rating:
    tier: int  # attained band, 1-based; 0 when none
    rate: Decimal | None  # the attained band's rate as written
    raw: Fraction  # the raw rebate in currency units, exact


def _rate_value(form: RateForm, band: Band) -> Fraction:
    """A band's rate as a fraction of the basis (percent), currency per unit, or an amount."""
    rate = Fraction(band.rate)
    return rate / 100 if form is RateForm.PERCENT else rate


def _attained_band(bands: Sequence[Band], value: Fraction | None) -> int:
    """The highest band whose ``from`` is at most the value (a boundary belongs to the upper)."""
    if value is None:
        return 0
    attained = 0
    for number, band in enumerate(bands, start=1):
        if Fraction(band.lower) <= value:
            attained = number
    return attained


def _band_width(band: Band) -> Fraction:
    # Only the top band may be open; bands below the attained one are never the top band.
    assert band.upper is not None
    return Fraction(band.upper) - Fraction(band.lower)


def _rate(
    agreement: Agreement,
    *,
    tier_basis: Fraction,
    payment_basis: Fraction,
    gate_basis: Fraction | None,
    baseline: Fraction | None,
) -> _Rating:
    """Section "Rating": the attained band and the raw rebate of one window (T, P, G, B)."""
    bands = agreement.rebate.tiers
    growth = agreement.growth
    value: Fraction | None
    if growth is None:
        value = tier_basis
    elif baseline is None or baseline <= 0 or tier_basis < 0:
        value = None  # no growth band is reached
    else:
        value = 100 * tier_basis / baseline
    tier = _attained_band(bands, value)
    if tier == 0:
        return _Rating(0, None, _FRACTION_ZERO)
    # Reading: the attained band and its rate are reported even when the minimum or the gate
    # withholds the rebate, so that the row explains what was reached and why nothing is paid.
    rate = bands[tier - 1].rate
    earned = True
    if agreement.minimum is not None and tier_basis < Fraction(agreement.minimum):
        earned = False
    if agreement.gate is not None:
        assert gate_basis is not None
        if gate_basis < Fraction(agreement.gate.target):
            earned = False
    if not earned:
        return _Rating(tier, rate, _FRACTION_ZERO)
    raw = _raw_rebate(agreement, tier, tier_basis, payment_basis, baseline)
    return _Rating(tier, rate, raw)


def _raw_rebate(
    agreement: Agreement,
    tier: int,
    tier_basis: Fraction,
    payment_basis: Fraction,
    baseline: Fraction | None,
) -> Fraction:
    """The method tables of "Rating": ``a = tier``, ``T = tier_basis``, ``P = payment_basis``."""
    rebate = agreement.rebate
    bands = rebate.tiers[:tier]
    rates = [_rate_value(rebate.form, band) for band in bands]
    attained_rate = rates[-1]
    attained = bands[-1]
    if rebate.form is RateForm.FIXED:
        # An amount on reaching the band (growth allows whole_basis only, method whole_volume).
        if rebate.method is TierMethod.ALL_REACHED:
            return sum(rates, _FRACTION_ZERO)
        return attained_rate

    growth = agreement.growth
    if growth is None:
        # Reading: "for T = 0 the raw rebate is 0" belongs to the P / T valuation, so it applies
        # to marginal and rolling only; whole_volume and all_reached pay on P whatever T is.
        if rebate.method is TierMethod.WHOLE_VOLUME:
            return attained_rate * payment_basis
        if rebate.method is TierMethod.ALL_REACHED:
            return sum(rates, _FRACTION_ZERO) * payment_basis
        if tier_basis == 0:
            return _FRACTION_ZERO  # the average payment per tier unit P / T is undefined
        below = sum(
            (rate * _band_width(band) for rate, band in zip(rates[:-1], bands[:-1], strict=True)),
            _FRACTION_ZERO,
        )
        per_tier_unit = payment_basis / tier_basis  # P / T, never rounded
        if rebate.method is TierMethod.MARGINAL:
            # Reading: as written, r_a (T - l_a) even above a closed top band's ``to``.
            return (below + attained_rate * (tier_basis - Fraction(attained.lower))) * per_tier_unit
        assert rebate.method is TierMethod.ROLLING
        return (below + attained_rate * tier_basis) * per_tier_unit

    assert baseline is not None  # a growth band was reached, so B > 0
    if growth.mode is GrowthMode.WHOLE_BASIS:
        return attained_rate * payment_basis
    if tier_basis == 0:
        return _FRACTION_ZERO
    per_tier_unit = payment_basis / tier_basis
    if growth.mode is GrowthMode.GROWTH_ONLY:
        return attained_rate * max(tier_basis - baseline, _FRACTION_ZERO) * per_tier_unit
    assert growth.mode is GrowthMode.MARGINAL
    scale = baseline / 100  # growth-band bounds are percent of B: l_b' = l_b x B / 100
    below = sum(
        (
            rate * _band_width(band) * scale
            for rate, band in zip(rates[:-1], bands[:-1], strict=True)
        ),
        _FRACTION_ZERO,
    )
    return (below + attained_rate * (tier_basis - Fraction(attained.lower) * scale)) * per_tier_unit


# ---- from windows to periods -------------------------------------------------------------------


def _units_per_currency_unit(currency: str) -> int:
    """100 for CNY (fen), 1 for JPY."""
    return int(10 ** minor_unit(currency))


def _round_to_units(raw: Fraction, agreement: Agreement) -> int:
    """The one rounding: the raw rebate to whole minor units of the currency."""
    scaled = raw * _units_per_currency_unit(agreement.currency)
    return round_fraction(scaled.numerator, scaled.denominator, agreement.rounding)


def _to_units(amount: Decimal, currency: str) -> int:
    """An amount validated to the currency's minor unit, as an integer number of minor units."""
    scaled = Fraction(amount) * _units_per_currency_unit(currency)
    assert scaled.denominator == 1, f"{amount} has more places than {currency} allows"
    return scaled.numerator


def _money(units: int, currency: str) -> Decimal:
    return Decimal(units).scaleb(-minor_unit(currency))


def _running_totals(agreement: Agreement, earned: Sequence[int]) -> list[int]:
    """Steps 1-3 (cap per period, guarantee, cap per term) on the periods' ``e_i`` in minor units;
    returns the running totals ``sum_{j<=i} f_j``."""
    currency = agreement.currency
    cap = agreement.cap
    cap_per_period = None if cap.per_period is None else _to_units(cap.per_period, currency)
    cap_per_term = None if cap.per_term is None else _to_units(cap.per_term, currency)
    guarantee = agreement.guarantee
    guaranteed = None if guarantee is None else _to_units(guarantee.amount, currency)

    totals: list[int] = []
    capped_total = 0  # sum c_j
    guaranteed_total = 0  # sum g_j
    for number, period_earned in enumerate(earned, start=1):
        capped = period_earned if cap_per_period is None else min(period_earned, cap_per_period)
        capped_total += capped
        if guarantee is None or guaranteed is None:
            guaranteed_total += capped
        elif guarantee.carry_forward:
            guaranteed_total = max(capped_total, number * guaranteed)
        else:
            guaranteed_total += max(capped, guaranteed)
        totals.append(
            guaranteed_total if cap_per_term is None else min(guaranteed_total, cap_per_term)
        )
    return totals


def _differences(totals: Sequence[int]) -> list[int]:
    return [total - (totals[index - 1] if index else 0) for index, total in enumerate(totals)]


def _split(units: int, weights: Mapping[str, Decimal], counterparty: str) -> dict[str, int]:
    """Pro-rata split of whole minor units by largest remainder.

    Negative contributions count as zero; when all are zero the counterparty takes everything.
    Each gets the floor of its exact share of ``|units|``; the units left over go one each to the
    largest remainders (ties: the smaller customer id first); the sign is applied afterwards."""
    positive = {customer: max(weight, ZERO) for customer, weight in weights.items()}
    total = sum(positive.values(), ZERO)
    shares = dict.fromkeys(weights, 0)
    if total == 0:
        shares[counterparty] = units
        return shares
    magnitude = abs(units)
    exact = {
        customer: magnitude * Fraction(weight) / Fraction(total)
        for customer, weight in positive.items()
    }
    for customer, share in exact.items():
        shares[customer] = math.floor(share)
    left_over = magnitude - sum(shares.values())
    by_remainder = sorted(
        exact, key=lambda customer: (-(exact[customer] - shares[customer]), customer)
    )
    for customer in by_remainder[:left_over]:
        shares[customer] += 1
    sign = -1 if units < 0 else 1
    return {customer: sign * share for customer, share in shares.items()}


# ---- one agreement -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    """One result's window figures, before the period steps."""

    period: Period
    window_basis: Decimal  # P
    tier_basis: Decimal  # T
    gate_basis: Decimal | None  # G
    baseline: Decimal | None  # B
    rating: _Rating
    window_rebate: int  # R in minor units


@dataclass(frozen=True)
class _Sets:
    """The agreement's line sets (rules 2-5), lines of any date; windows pick the dates."""

    earning: _LineSet
    target: _LineSet
    gate: _LineSet | None


def _baseline(
    agreement: Agreement, sets: _Sets, window: _DateRange, belongs: Callable[[_Line], bool]
) -> Decimal | None:
    """``B`` for ``window``: the fixed amount, or ``T`` over the window moved back one year.

    The prior-year baseline takes the target set's lines (rules 2-5) dated in the moved window;
    the effective date, ``eligibility.dates`` and the as-of date do not restrict it."""
    growth = agreement.growth
    if growth is None:
        return None
    if growth.baseline is GrowthBaseline.FIXED:
        assert growth.baseline_amount is not None
        return growth.baseline_amount
    return sets.target.total(window.one_year_earlier(), beneficiary=belongs)


def _window(
    agreement: Agreement,
    sets: _Sets,
    period: Period,
    counting_range: _DateRange,
    belongs: Callable[[_Line], bool],
) -> _Window:
    term = agreement.term_period
    window = (
        _range(period)
        if agreement.periods.scope is TierScope.PERIOD
        else _DateRange(term.start, period.end)
    )
    dates = window.intersect(counting_range)
    payment = sets.earning.total(dates, beneficiary=belongs)
    tier_basis = sets.target.total(dates, beneficiary=belongs)
    gate = None if sets.gate is None else sets.gate.total(dates, beneficiary=belongs)
    baseline = _baseline(agreement, sets, window, belongs)
    rating = _rate(
        agreement,
        tier_basis=Fraction(tier_basis),
        payment_basis=Fraction(payment),
        gate_basis=None if gate is None else Fraction(gate),
        baseline=None if baseline is None else Fraction(baseline),
    )
    return _Window(
        period=period,
        window_basis=payment,
        tier_basis=tier_basis,
        gate_basis=gate,
        baseline=baseline,
        rating=rating,
        window_rebate=_round_to_units(rating.raw, agreement),
    )


def _projected_window_rebate(
    agreement: Agreement,
    *,
    sets: _Sets,
    window: _Window,
    as_of: dt.date,
    belongs: Callable[[_Line], bool],
) -> int:
    """Accrual ``expected``: the run-rate projection that replaces ``R`` of the as-of period.

    ``T``, ``P`` and ``G`` are scaled by ``H / E`` to the horizon, rated, and the raw rebate is
    scaled back by ``E / H`` and rounded once."""
    term = agreement.term_period
    # Reading: the horizon starts at the period or term start even when the effective date or
    # eligibility.dates start later.
    horizon = window.period if agreement.periods.scope is TierScope.PERIOD else term
    horizon_days = horizon.days  # H
    elapsed_days = (as_of - horizon.start).days + 1  # E: start through the as-of date inclusive
    to_horizon = Fraction(horizon_days, elapsed_days)
    baseline: Fraction | None = None
    if agreement.growth is not None:
        # A prior_year baseline is the prior year's T over the whole horizon; a fixed baseline
        # stays as it is.
        whole = _baseline(agreement, sets, _range(horizon), belongs)
        assert whole is not None
        baseline = Fraction(whole)
    rating = _rate(
        agreement,
        tier_basis=Fraction(window.tier_basis) * to_horizon,
        payment_basis=Fraction(window.window_basis) * to_horizon,
        gate_basis=None if window.gate_basis is None else Fraction(window.gate_basis) * to_horizon,
        baseline=baseline,
    )
    return _round_to_units(rating.raw / to_horizon, agreement)


def _earned(agreement: Agreement, window_rebates: Sequence[int]) -> list[int]:
    """``e_i``: ``R_i`` (scope period) or ``R_i - R_{i-1}`` (scope term, a claw-back if < 0)."""
    if agreement.periods.scope is TierScope.PERIOD:
        return list(window_rebates)
    return _differences(window_rebates)


def _measure(value: Decimal) -> Decimal:
    return value.quantize(_MEASURE_QUANTUM)


def _beneficiary(agreement: Agreement, customer_id: str | None) -> str | None:
    """The customer for a programme; the counterparty for the pool's customers (rule 5)."""
    if customer_id is None:
        return None  # Reading: a line without a customer has no beneficiary and never counts
    if agreement.parties is None:
        return customer_id
    return agreement.parties.counterparty if customer_id in (agreement.pool or ()) else None


def _is_pro_rata(agreement: Agreement) -> bool:
    return agreement.parties is not None and agreement.parties.split is Split.PRO_RATA


def _recipients(agreement: Agreement, beneficiary: str, counting: set[str]) -> list[str]:
    """Who gets result rows for a beneficiary.

    With ``pro_rata`` the counterparty always has rows (it takes everything when no member has a
    positive basis), and each member has rows when it has a counting line of its own in the term.
    Customer ids are ordered as text."""
    if not _is_pro_rata(agreement):
        return [beneficiary]
    assert agreement.parties is not None
    members = sorted(member for member in agreement.parties.members if member in counting)
    return [agreement.parties.counterparty, *members]


def _projected_index(
    agreement: Agreement, periods: Sequence[Period], as_of: dt.date | None
) -> int | None:
    """With ``expected`` accrual, the position of the period containing the as-of date."""
    if agreement.accrual.mode is not AccrualMode.EXPECTED or as_of is None:
        return None
    for index, period in enumerate(periods):
        if as_of in period:
            return index
    return None  # the as-of date is after the term: every period has ended


@dataclass(frozen=True)
class _PoolResult:
    """A beneficiary's windows and its per-period rebate and accrual increments (minor units)."""

    windows: list[_Window]
    rebates: list[int]  # f_i
    accrual_increments: list[int]  # accrual_i - accrual_{i-1}


def _pool_result(
    agreement: Agreement,
    *,
    sets: _Sets,
    periods: Sequence[Period],
    counting_range: _DateRange,
    as_of: dt.date | None,
    belongs: Callable[[_Line], bool],
) -> _PoolResult:
    windows = [_window(agreement, sets, period, counting_range, belongs) for period in periods]
    window_rebates = [window.window_rebate for window in windows]
    totals = _running_totals(agreement, _earned(agreement, window_rebates))
    accruals = list(totals)
    projected_index = _projected_index(agreement, periods, as_of)
    if projected_index is not None:
        assert as_of is not None
        projected = _projected_window_rebate(
            agreement,
            sets=sets,
            window=windows[projected_index],
            as_of=as_of,
            belongs=belongs,
        )
        # The projection replaces this period's R; caps and guarantees then apply as usual.
        earned = _earned(agreement, [*window_rebates[:projected_index], projected])
        accruals[projected_index] = _running_totals(agreement, earned)[-1]
    return _PoolResult(windows, _differences(totals), _differences(accruals))


def _calculate_agreement(
    agreement: Agreement,
    lines: Sequence[_Line],
    customers: _Dimension,
    products: _Dimension,
    as_of: dt.date | None,
) -> list[ResultRow]:
    currency = agreement.currency
    # Rule 1 and the as-of date: where a line's event date must lie for it to count now.
    counting_range = _DateRange(agreement.earning_start, agreement.earning_end)
    if as_of is not None:
        counting_range = counting_range.intersect(
            _DateRange(counting_range.start, as_of + dt.timedelta(days=1))
        )
    rebate = agreement.rebate

    def rules(line_set: LineSet) -> _Rules:
        return _rules(agreement, customers, products, line_set)

    earning = _select(lines, rules(agreement.eligibility), rebate.basis)
    # The target set defaults to the earning set (same lines, judged on the tier measure).
    target = _select(lines, rules(agreement.target or agreement.eligibility), rebate.tier_measure)
    gate = (
        None
        if agreement.gate is None
        else _select(lines, rules(agreement.gate), agreement.gate.measure)
    )
    sets = _Sets(earning, target, gate)

    # Customers with a counting line (earning, target or gate set) dated in the term, and the
    # beneficiaries they make results for; ids are ordered as text.
    counting: set[str] = set()
    beneficiary_ids: set[str] = set()
    for line_set in (earning, target, gate):
        for line, day in line_set.lines if line_set is not None else ():
            beneficiary = _beneficiary(agreement, line.customer_id)
            if day in counting_range and beneficiary is not None and line.customer_id is not None:
                counting.add(line.customer_id)
                beneficiary_ids.add(beneficiary)
    beneficiaries = sorted(beneficiary_ids)

    periods = [
        period
        for period in agreement.calculation_periods()
        if as_of is None or period.start <= as_of
    ]
    rows: list[ResultRow] = []
    for beneficiary in beneficiaries:

        def belongs(line: _Line, beneficiary: str = beneficiary) -> bool:
            return _beneficiary(agreement, line.customer_id) == beneficiary

        pool = _pool_result(
            agreement,
            sets=sets,
            periods=periods,
            counting_range=counting_range,
            as_of=as_of,
            belongs=belongs,
        )
        active = [
            _has_lines(agreement, sets, period, counting_range, belongs)
            or index == _projected_index(agreement, periods, as_of)
            or _quiet_periods_pay(agreement)
            for index, period in enumerate(periods)
        ]
        for index, is_active in enumerate(active):
            # The spec omits quiet periods because nothing can change in them; the oracle checks
            # that claim instead of trusting it.
            if not is_active and (pool.rebates[index] or pool.accrual_increments[index]):
                raise AssertionError(f"quiet period {index + 1} of {agreement.id} pays")
        for recipient in _recipients(agreement, beneficiary, counting):

            def own(line: _Line, recipient: str = recipient) -> bool:
                return line.customer_id == recipient

            # A pro-rata member's lines and basis are its own; otherwise the pool's.
            recipient_lines = own if _is_pro_rata(agreement) else belongs
            cumulative = 0
            accrued = 0
            for index, window in enumerate(pool.windows):
                if not active[index]:
                    continue
                period_dates = _range(window.period).intersect(counting_range)
                rebate_share = pool.rebates[index]
                accrual_share = pool.accrual_increments[index]
                if _is_pro_rata(agreement):
                    weights = _pro_rata_weights(agreement, earning, period_dates)
                    counterparty = beneficiary
                    rebate_share = _split(rebate_share, weights, counterparty)[recipient]
                    accrual_share = _split(accrual_share, weights, counterparty)[recipient]
                cumulative += rebate_share
                accrued += accrual_share
                rows.append(
                    ResultRow(
                        agreement_id=agreement.id,
                        version=agreement.version,
                        beneficiary_id=recipient,
                        period_index=index + 1,
                        period_start=window.period.start,
                        period_end=window.period.end,
                        currency=currency,
                        lines=earning.count(period_dates, beneficiary=recipient_lines),
                        basis=_measure(earning.total(period_dates, beneficiary=recipient_lines)),
                        window_basis=_measure(window.window_basis),
                        tier_basis=_measure(window.tier_basis),
                        baseline=_optional_measure(window.baseline),
                        gate_basis=_optional_measure(window.gate_basis),
                        tier=window.rating.tier,
                        rate=window.rating.rate,
                        window_rebate=_money(window.window_rebate, currency),
                        rebate=_money(rebate_share, currency),
                        cumulative_rebate=_money(cumulative, currency),
                        accrual=_money(accrued, currency),
                    )
                )
    return rows


def _quiet_periods_pay(agreement: Agreement) -> bool:
    """A guarantee, or a fixed amount, can pay in a period without lines."""
    return agreement.guarantee is not None or agreement.rebate.form is RateForm.FIXED


def _has_lines(
    agreement: Agreement,
    sets: _Sets,
    period: Period,
    counting_range: _DateRange,
    belongs: Callable[[_Line], bool],
) -> bool:
    """Whether the pool has a line in the period: earning, target or gate lines that count, or
    prior-year baseline lines in the period moved back one year."""
    dates = _range(period).intersect(counting_range)
    for line_set in (sets.earning, sets.target, sets.gate):
        if line_set is not None and line_set.count(dates, beneficiary=belongs):
            return True
    growth = agreement.growth
    if growth is not None and growth.baseline is GrowthBaseline.PRIOR_YEAR:
        return sets.target.count(_range(period).one_year_earlier(), beneficiary=belongs) > 0
    return False


def _optional_measure(value: Decimal | None) -> Decimal | None:
    return None if value is None else _measure(value)


def _pro_rata_weights(
    agreement: Agreement, earning: _LineSet, period_dates: _DateRange
) -> dict[str, Decimal]:
    """Each pool customer's own ``P`` in the period alone."""
    weights: dict[str, Decimal] = {}
    for customer in agreement.pool or ():

        def own(line: _Line, customer: str = customer) -> bool:
            return line.customer_id == customer

        weights[customer] = earning.total(period_dates, beneficiary=own)
    return weights


# ---- entry point -------------------------------------------------------------------------------


def calculate_reference(
    agreements: Sequence[Agreement],
    *,
    sales: pa.Table,
    customers: pa.Table | None = None,
    products: pa.Table | None = None,
    as_of: dt.date | None = None,
    unstated_currency: str | None = None,
) -> list[ResultRow]:
    """Results per agreement x beneficiary x period, following docs/calculation.md literally.

    Rows are sorted by ``ResultRow.key``; every agreement is calculated on its own. A line
    that states no currency is in ``unstated_currency`` when one is given (rule 3)."""
    lines = [_line_from_row(row) for row in sales.to_pylist()]
    if unstated_currency is not None:
        lines = [
            line if line.currency is not None else replace(line, currency=unstated_currency)
            for line in lines
        ]
    customer_dimension = _dimension(customers, name="customers", id_column="customer_id")
    product_dimension = _dimension(products, name="products", id_column="product_id")
    rows: list[ResultRow] = []
    for agreement in agreements:
        rows.extend(
            _calculate_agreement(agreement, lines, customer_dimension, product_dimension, as_of)
        )
    return sorted(rows, key=ResultRow.key)
