"""The agreement terms model: everything the calculation needs to know, validated on load.

Terms are written in YAML or JSON (see ``docs/agreements.md``). Numbers are exact: the loaders in
``fanli.agreements.files`` read YAML and JSON decimals as ``Decimal``, and a Python float given
directly is refused. Validation rejects, with a message naming the field, anything the engine
could otherwise silently misread: band gaps and overlaps, more than one open top band, rates out
of range, periods outside the term, unknown fields.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, NoReturn, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from fanli.kit.errors import Said, said
from fanli.kit.money import (
    MAX_AMOUNT,
    RoundingMode,
    UnknownCurrencyError,
    decimal_places,
    minor_unit,
)
from fanli.kit.periods import FIRST_DAY, LAST_DAY, Period, PeriodKind, calendar_periods

# Precision the engine represents exactly (it works in integers): see docs/calculation.md.
MEASURE_PLACES = 4  # thresholds and band bounds in the measure's unit (yuan or units)
PERCENT_PLACES = 4  # percent rates and growth-band bounds, e.g. 2.5% or 112.5%
PER_UNIT_PLACES = 6  # currency per unit, e.g. 0.0015 yuan per unit


class TermsRuleError(ValueError):
    """A rule of the terms broken at ``path`` (None: where pydantic says). ``str()`` is the
    English line ("rebate.tiers[0].rate: 120% is above 100%"); ``problem`` is the same
    sentence for a page to say in the reader's language."""

    def __init__(self, path: str | None, problem: Said) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else str(problem))


def _no_float(value: Any) -> Any:
    if isinstance(value, float):
        raise TermsRuleError(
            None,
            said(
                "{value} is a binary float; write the number as a decimal string or load the "
                "file with Fanli's loader so it stays exact",
                value=repr(value),
            ),
        )
    return value


Number = Annotated[Decimal, BeforeValidator(_no_float)]


class Terms(BaseModel):
    """Base for every terms object: unknown fields are errors, instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Measure(StrEnum):
    """What a sales line contributes to a basis."""

    NET = "net"  # net amount (after invoice discounts, before VAT)
    GROSS = "gross"  # gross amount
    QUANTITY = "quantity"  # units


class EligibilityEvent(StrEnum):
    """Which event makes a line count, and whose date places it in a period."""

    ORDER = "order"
    INVOICE = "invoice"
    PAID_INVOICE = "paid_invoice"


class RateForm(StrEnum):
    """How a band's rate turns into money."""

    PERCENT = "percent"  # percent of the basis amount (rate 2.5 means 2.5%)
    PER_UNIT = "per_unit"  # currency per unit of quantity
    FIXED = "fixed"  # a fixed amount on reaching the band


class TierMethod(StrEnum):
    """How the bands combine. Basis 2,000, bands 10% to 1,000 and 25% above: 500/350/600/700."""

    WHOLE_VOLUME = "whole_volume"  # attained band's rate on the whole basis
    MARGINAL = "marginal"  # each band's rate on the part of the basis inside it
    ROLLING = "rolling"  # lower bands at their full width plus the attained band on the whole
    ALL_REACHED = "all_reached"  # every reached band's rate on the whole basis


class TierScope(StrEnum):
    """Over what the tier basis accumulates."""

    PERIOD = "period"  # each calculation period on its own
    TERM = "term"  # term-to-date; each period pays the cumulative rebate minus earlier periods


class GrowthBaseline(StrEnum):
    PRIOR_YEAR = "prior_year"
    FIXED = "fixed"


class GrowthMode(StrEnum):
    """How a growth rebate pays (Enable's three retrospective forms)."""

    WHOLE_BASIS = "whole_basis"  # attained band's rate on the whole basis
    GROWTH_ONLY = "growth_only"  # attained band's rate on the growth above the baseline only
    MARGINAL = "marginal"  # each growth band's rate on the growth inside it


class AccrualMode(StrEnum):
    ACTUAL = "actual"  # the tier reached so far
    EXPECTED = "expected"  # the tier the window is expected to end in (run-rate projection)


class Split(StrEnum):
    """Who is paid when a buying group pools its basis."""

    COUNTERPARTY = "counterparty"  # all to the contracting entity
    PRO_RATA = "pro_rata"  # to each member in proportion to its own basis


class SettlementForm(StrEnum):
    CREDIT_NOTE = "credit_note"
    RED_INVOICE = "red_invoice"
    BANK_TRANSFER = "bank_transfer"
    REBATE_BALANCE = "rebate_balance"
    RECEIVABLE_OFFSET = "receivable_offset"


class CustomerSelector(Terms):
    """Customers by id, group or any attribute. Fields combine with AND, values with OR."""

    id: tuple[str, ...] | None = None
    group: tuple[str, ...] | None = None
    attributes: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    def is_empty(self) -> bool:
        return self.id is None and self.group is None and not self.attributes


class ProductSelector(Terms):
    """Products by id, category, brand or any attribute. Fields AND, values OR."""

    id: tuple[str, ...] | None = None
    category: tuple[str, ...] | None = None
    brand: tuple[str, ...] | None = None
    attributes: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    def is_empty(self) -> bool:
        return (
            self.id is None and self.category is None and self.brand is None and not self.attributes
        )


class CustomerFilter(Terms):
    """``include`` must match (empty: everyone); matching ANY field of ``exclude`` excludes."""

    include: CustomerSelector = CustomerSelector()
    exclude: CustomerSelector = CustomerSelector()


class ProductFilter(Terms):
    include: ProductSelector = ProductSelector()
    exclude: ProductSelector = ProductSelector()


class LineSet(Terms):
    """A set of sales lines: which customers and which products."""

    customers: CustomerFilter = CustomerFilter()
    products: ProductFilter = ProductFilter()


class DateRange(Terms):
    """Half-open ``[start, end)``; either end may be open."""

    start: dt.date | None = None
    end: dt.date | None = None


class Eligibility(LineSet):
    """Which lines earn the rebate."""

    event: EligibilityEvent = EligibilityEvent.INVOICE
    document_types: tuple[str, ...] | None = None  # None: every document type
    dates: DateRange = DateRange()


class Band(Terms):
    """One tier band ``[from, to)``; ``to`` omitted means open-ended (top band only)."""

    lower: Number = Field(alias="from")
    upper: Number | None = Field(default=None, alias="to")
    rate: Number


class Rebate(Terms):
    """The rate structure."""

    form: RateForm = RateForm.PERCENT
    method: TierMethod = TierMethod.WHOLE_VOLUME
    basis: Measure = Measure.NET
    tier_basis: Measure | None = None  # measure the tiers are judged on; default: ``basis``
    tiers: tuple[Band, ...]

    @property
    def tier_measure(self) -> Measure:
        return self.tier_basis or self.basis


class Growth(Terms):
    """Growth rebate: tiers are judged on the basis as a percent of a baseline (110 = 110%)."""

    baseline: GrowthBaseline = GrowthBaseline.PRIOR_YEAR
    baseline_amount: Number | None = None  # per calculation window, in the tier measure's unit
    mode: GrowthMode = GrowthMode.WHOLE_BASIS


class Cap(Terms):
    per_period: Number | None = None
    per_term: Number | None = None


class Guarantee(Terms):
    """Guaranteed minimum per period; with carry-forward the guarantee applies to the running
    total (after n periods at least n x amount), so strong and weak periods even out."""

    amount: Number
    carry_forward: bool = False


class Gate(LineSet):
    """Rebate only if this other set of lines reaches ``target`` in the same window."""

    measure: Measure = Measure.NET
    target: Number


class Parties(Terms):
    """The contracting entity and, for a buying group, the members whose basis is pooled."""

    counterparty: str = Field(min_length=1)  # a customer code: an empty one names nobody
    members: tuple[str, ...] = ()
    split: Split = Split.COUNTERPARTY


class Periods(Terms):
    kind: PeriodKind = PeriodKind.QUARTER
    scope: TierScope = TierScope.PERIOD
    custom: tuple[DateRange, ...] | None = None


class Accrual(Terms):
    mode: AccrualMode = AccrualMode.ACTUAL


class Settlement(Terms):
    form: SettlementForm = SettlementForm.CREDIT_NOTE
    payment_method: str | None = None
    clawback: bool = False  # a settlement may be negative (the customer repays an overpayment)


class Contract(Terms):
    """The signed document the terms come from (R1: written terms first)."""

    reference: str = Field(min_length=1, max_length=100)
    document_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Agreement(Terms):
    """One version of a rebate agreement's terms."""

    id: str = Field(min_length=1, max_length=64)
    version: int = Field(default=1, ge=1)
    name: str = ""
    currency: str = "CNY"
    term: DateRange
    effective_from: dt.date | None = None  # this version counts sales dated from here on
    parties: Parties | None = None  # None: a programme; every eligible customer is a beneficiary
    eligibility: Eligibility = Eligibility()
    target: LineSet | None = None  # separate target set: tiers judged on these lines instead
    rebate: Rebate
    growth: Growth | None = None
    minimum: Number | None = None  # tier measure below this earns nothing
    gate: Gate | None = None
    cap: Cap = Cap()
    guarantee: Guarantee | None = None
    periods: Periods = Periods()
    accrual: Accrual = Accrual()
    rounding: RoundingMode = RoundingMode.HALF_UP
    settlement: Settlement = Settlement()
    contract: Contract | None = None

    # ---- derived views -------------------------------------------------------------------

    @property
    def term_period(self) -> Period:
        assert self.term.start is not None
        assert self.term.end is not None
        return Period(self.term.start, self.term.end)

    @property
    def earning_start(self) -> dt.date:
        """First day a sale can count: the later of the term start and the version's effect."""
        start = self.term_period.start
        if self.effective_from and self.effective_from > start:
            start = self.effective_from
        if self.eligibility.dates.start and self.eligibility.dates.start > start:
            start = self.eligibility.dates.start
        return start

    @property
    def earning_end(self) -> dt.date:
        end = self.term_period.end
        if self.eligibility.dates.end and self.eligibility.dates.end < end:
            end = self.eligibility.dates.end
        return end

    @property
    def pays_without_lines(self) -> bool:
        """A guarantee, or a fixed amount, can pay in a period without lines."""
        return self.guarantee is not None or self.rebate.form is RateForm.FIXED

    @property
    def prior_year_baseline(self) -> bool:
        """Growth is measured against the same period of the year before."""
        return self.growth is not None and self.growth.baseline is GrowthBaseline.PRIOR_YEAR

    def calculation_periods(self) -> list[Period]:
        if self.periods.kind is PeriodKind.CUSTOM:
            assert self.periods.custom is not None
            return [Period(p.start, p.end) for p in self.periods.custom]  # type: ignore[arg-type]
        return calendar_periods(self.term_period, self.periods.kind)

    @property
    def pool(self) -> tuple[str, ...] | None:
        """Customer ids whose lines count, when the agreement names its parties."""
        if self.parties is None:
            return None
        return (self.parties.counterparty, *self.parties.members)

    # ---- validation ----------------------------------------------------------------------

    @model_validator(mode="after")
    def _validate(self) -> Self:
        _check_identity(self)
        _check_currency(self)
        _check_term_and_periods(self)
        _check_bands(self)
        _check_modifiers(self)
        return self


def _fail(path: str, problem: Said) -> NoReturn:
    raise TermsRuleError(path, problem)


def _check_places(path: str, value: Decimal, places: int) -> None:
    if decimal_places(value) > places:
        _fail(
            path,
            said("{value} has more than {places} decimal places", value=value, places=places),
        )


# An agreement's code appears in addresses (/agreements/KA-Q/review), file names and GL
# exports: letters (Chinese too), digits, '-', '_' and '.', starting with a letter or digit.
_CODE = re.compile(r"[^\W_][\w.\-]*")
NAME_LENGTH = 200
# The most periods a term may have: the engine numbers them in 12 bits (engine.columnar).
MOST_PERIODS = 4095


def _check_identity(agreement: Agreement) -> None:
    if not _CODE.fullmatch(agreement.id):
        _fail(
            "id",
            said(
                "{value} is not an agreement code: use letters, digits, '-', '_' and '.', "
                "starting with a letter or digit",
                value=agreement.id,
            ),
        )
    if len(agreement.name) > NAME_LENGTH:
        _fail("name", said("a name has at most {most} characters", most=NAME_LENGTH))


def _check_size(path: str, value: Decimal) -> None:
    if abs(value) >= MAX_AMOUNT:
        _fail(path, said("{value} is larger than an amount can be", value=value))


def _check_currency(agreement: Agreement) -> None:
    try:
        minor_unit(agreement.currency)
    except UnknownCurrencyError as error:
        _fail("currency", error.problem)


def _check_term_and_periods(agreement: Agreement) -> None:
    term = agreement.term
    if term.start is None or term.end is None:
        _fail("term", said("both start and end are required"))
    assert term.start is not None
    assert term.end is not None
    if term.end <= term.start:
        _fail("term", said("end {end} must be after start {start}", end=term.end, start=term.start))
    for name, bound in (("start", term.start), ("end", term.end)):
        # A run reads a period's year before and the month after: beyond these days the
        # calendar itself ends, and every run would fail on the one agreement.
        if not FIRST_DAY <= bound <= LAST_DAY:
            _fail(
                f"term.{name}",
                said(
                    "{day} is outside the days Fanli keeps ({first} to {last})",
                    day=bound,
                    first=FIRST_DAY,
                    last=LAST_DAY,
                ),
            )
    if agreement.effective_from and not term.start <= agreement.effective_from < term.end:
        _fail("effective_from", said("{day} is outside the term", day=agreement.effective_from))
    dates = agreement.eligibility.dates
    for name, day in (("start", dates.start), ("end", dates.end)):
        if day is not None and not term.start <= day <= term.end:
            _fail(f"eligibility.dates.{name}", said("{day} is outside the term", day=day))
    if dates.start and dates.end and dates.end <= dates.start:
        _fail("eligibility.dates", said("end must be after start"))
    periods = agreement.periods
    if periods.kind is PeriodKind.CUSTOM:
        if not periods.custom:
            _fail("periods.custom", said("custom periods need a list of start and end"))
        assert periods.custom is not None
        expected_start = term.start
        for index, custom in enumerate(periods.custom):
            path = f"periods.custom[{index}]"
            if custom.start is None or custom.end is None:
                _fail(path, said("start and end are required"))
            assert custom.start is not None
            assert custom.end is not None
            if custom.start < term.start or custom.end > term.end:
                _fail(
                    path,
                    said(
                        "[{start}, {end}) lies outside the term", start=custom.start, end=custom.end
                    ),
                )
            if custom.end <= custom.start:
                _fail(path, said("end must be after start"))
            if custom.start != expected_start:
                _fail(
                    path, said("must start on {day} (periods are contiguous)", day=expected_start)
                )
            expected_start = custom.end
        if expected_start != term.end:
            _fail(
                "periods.custom",
                said("periods end on {day}, the term on {end}", day=expected_start, end=term.end),
            )
    elif periods.custom is not None:
        _fail(
            "periods.custom",
            said("only allowed with kind 'custom', not {kind}", kind=repr(periods.kind.value)),
        )
    # The engine numbers a term's periods in 12 bits. A calendar kind can only exceed that
    # over centuries; counting is cheap enough to do only then.
    if periods.kind is PeriodKind.CUSTOM:
        count = len(periods.custom or [])
    elif (term.end - term.start).days > MOST_PERIODS * 28:
        count = len(calendar_periods(agreement.term_period, periods.kind))
    else:
        count = 0
    if count > MOST_PERIODS:
        _fail(
            "periods",
            said(
                "the term has {count} periods; at most {most} are supported",
                count=count,
                most=MOST_PERIODS,
            ),
        )


def _check_bands(agreement: Agreement) -> None:
    rebate = agreement.rebate
    bands = rebate.tiers
    if not bands:
        _fail("rebate.tiers", said("at least one band is required"))
    bound_places = PERCENT_PLACES if agreement.growth else MEASURE_PLACES
    for index, band in enumerate(bands):
        path = f"rebate.tiers[{index}]"
        if band.lower < 0:
            _fail(f"{path}.from", said("{value} is negative", value=band.lower))
        _check_places(f"{path}.from", band.lower, bound_places)
        if band.upper is not None:
            _check_places(f"{path}.to", band.upper, bound_places)
            if band.upper <= band.lower:
                _fail(
                    path,
                    said(
                        "to ({upper}) must be greater than from ({lower})",
                        upper=band.upper,
                        lower=band.lower,
                    ),
                )
        elif index != len(bands) - 1:
            _fail(path, said("only the top band may be open-ended (no 'to'); bands must be sorted"))
        if index > 0:
            previous = bands[index - 1]
            if previous.upper is not None and band.lower > previous.upper:
                _fail(
                    path,
                    said("gap between {upper} and {lower}", upper=previous.upper, lower=band.lower),
                )
            if previous.upper is not None and band.lower < previous.upper:
                _fail(
                    path,
                    said(
                        "overlaps the previous band (from {lower} < {upper})",
                        lower=band.lower,
                        upper=previous.upper,
                    ),
                )
        if band.rate < 0:
            _fail(f"{path}.rate", said("{value} is negative", value=band.rate))
        if rebate.form is RateForm.PERCENT:
            if band.rate > 100:
                _fail(f"{path}.rate", said("{rate}% is above 100%", rate=band.rate))
            _check_places(f"{path}.rate", band.rate, PERCENT_PLACES)
        elif rebate.form is RateForm.PER_UNIT:
            _check_places(f"{path}.rate", band.rate, PER_UNIT_PLACES)
        else:
            _check_places(f"{path}.rate", band.rate, minor_unit(agreement.currency))
    if rebate.form is RateForm.FIXED and rebate.method not in (
        TierMethod.WHOLE_VOLUME,
        TierMethod.ALL_REACHED,
    ):
        _fail("rebate.method", said("a fixed amount pays with whole_volume or all_reached only"))
    if rebate.form is RateForm.PER_UNIT and rebate.basis is not Measure.QUANTITY:
        _fail("rebate.basis", said("a per-unit rate pays on quantity: set basis: quantity"))


def _check_modifiers(agreement: Agreement) -> None:
    places = minor_unit(agreement.currency)
    growth = agreement.growth
    if growth is not None:
        if growth.baseline is GrowthBaseline.FIXED:
            if growth.baseline_amount is None or growth.baseline_amount <= 0:
                _fail("growth.baseline_amount", said("a fixed baseline needs a positive amount"))
            assert growth.baseline_amount is not None
            _check_places("growth.baseline_amount", growth.baseline_amount, MEASURE_PLACES)
        elif growth.baseline_amount is not None:
            _fail("growth.baseline_amount", said("only allowed with baseline: fixed"))
        if agreement.rebate.method is not TierMethod.WHOLE_VOLUME:
            _fail("rebate.method", said("growth rebates choose their method with growth.mode"))
        if agreement.rebate.form is RateForm.FIXED and growth.mode is not GrowthMode.WHOLE_BASIS:
            _fail("growth.mode", said("a fixed amount pays with mode whole_basis only"))
    if agreement.minimum is not None:
        if agreement.minimum < 0:
            _fail("minimum", said("must not be negative"))
        _check_places("minimum", agreement.minimum, MEASURE_PLACES)
        _check_size("minimum", agreement.minimum)
    if agreement.gate is not None:
        _check_places("gate.target", agreement.gate.target, MEASURE_PLACES)
        _check_size("gate.target", agreement.gate.target)
    for name in ("per_period", "per_term"):
        value = getattr(agreement.cap, name)
        if value is not None:
            if value < 0:
                _fail(f"cap.{name}", said("must not be negative"))
            _check_places(f"cap.{name}", value, places)
            _check_size(f"cap.{name}", value)
    if agreement.guarantee is not None:
        if agreement.guarantee.amount < 0:
            _fail("guarantee.amount", said("must not be negative"))
        _check_places("guarantee.amount", agreement.guarantee.amount, places)
        _check_size("guarantee.amount", agreement.guarantee.amount)
        cap = agreement.cap.per_period
        if cap is not None and cap < agreement.guarantee.amount:
            _fail("guarantee.amount", said("is above cap.per_period"))
    parties = agreement.parties
    if parties is not None:
        if parties.counterparty in parties.members:
            _fail("parties.members", said("the counterparty is a member already; list others only"))
        if len(set(parties.members)) != len(parties.members):
            _fail("parties.members", said("a member is listed twice"))
        if parties.split is Split.PRO_RATA and not parties.members:
            _fail("parties.split", said("pro_rata needs members to split between"))
