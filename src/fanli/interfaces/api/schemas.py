"""The API's shapes. Money is a decimal string ("1234.50"), never a JSON number."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    WithJsonSchema,
)

from fanli.kit.money import AMOUNT_TEXT, MAX_AMOUNT
from fanli.kit.periods import FIRST_DAY, LAST_DAY
from fanli.users.actor import Role


def _money_text(value: Decimal) -> str:
    # Amounts are stored with four places; they are written with the currency's two unless a
    # value really uses more (none does today: results and settlements are whole cents).
    cents = value.quantize(Decimal("0.01"))
    return format(cents if cents == value else value, "f")


Money = Annotated[
    Decimal,
    PlainSerializer(_money_text, return_type=str, when_used="always"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+\.\d{2,4}$", "examples": ["1234.50"]}),
]


# An amount in a stated currency, with that currency's places (129 yen, 105.00 dollars) and
# more only where it has them; the field beside it names the currency.
CurrencyAmount = Annotated[
    str,
    WithJsonSchema(
        {"type": "string", "pattern": r"^-?\d+(\.\d{1,4})?$", "examples": ["1234.50", "129"]}
    ),
]


def _no_float(value: object) -> object:
    if isinstance(value, float):
        raise ValueError('write amounts as decimal strings ("150.00"), not JSON numbers')
    if isinstance(value, str) and not AMOUNT_TEXT.fullmatch(value):
        raise ValueError(
            f"{value[:40]!r} is not an amount: write digits, a point and up to four places "
            '("150.00")'
        )
    return value


MoneyIn = Annotated[
    Decimal,
    BeforeValidator(_no_float),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d{1,4})?$", "examples": ["150.00"]}),
]

# An approval limit: an amount in whole fen, as settlements are paid.
LimitIn = Annotated[
    Decimal,
    BeforeValidator(_no_float),
    Field(ge=0, lt=MAX_AMOUNT, decimal_places=2),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d{1,2})?$", "examples": ["50000.00"]}),
]


# A day a request may name: one Fanli keeps (a year 1 or 9999 is refused, not computed with).
Day = Annotated[dt.date, Field(ge=FIRST_DAY, le=LAST_DAY)]
# The end of a validity or of a check may be the calendar's last day, meaning "never": it is
# only compared with, never computed with.
Until = Annotated[dt.date, Field(ge=FIRST_DAY)]


class Shape(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")


T = TypeVar("T")


class Page(Shape, Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int


class SignInRequest(Shape):
    user: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)
    # Six digits, as an authenticator app shows them ("123 456" too: the spaces are dropped).
    totp: str | None = Field(default=None, pattern=r"^\s*(\d\s*){6}$")


class Me(Shape):
    code: str
    roles: list[str]
    customer: str | None
    approval_limit: Money | None
    csrf_token: str | None = None  # browser sessions: echo it in X-CSRF-Token
    # The password was handed over by an administrator: this session may only change it
    # (POST /api/users/{code}/password), read this, and sign out.
    password_change_required: bool = False


class TokenRequest(Shape):
    name: str = Field(min_length=1, max_length=100)
    roles: list[Role] = Field(min_length=1)
    days: int = Field(ge=1, le=366)


class TokenCreated(Shape):
    id: int
    token: str  # shown once
    roles: list[str]
    expires_at: dt.datetime


class CustomerOut(Shape):
    code: str
    legal_name: str
    credit_code: str | None
    segment: str | None
    region: str | None


class SettlementOut(Shape):
    id: int
    agreement_code: str
    beneficiary: str
    period_start: dt.date
    period_end: dt.date
    currency: str
    amount: Money
    approval_basis: Money
    form: str
    status: str
    steps: list[dict[str, Any]]
    proposed_by: str
    rejection_reason: str | None


class StandingOut(Shape):
    """Why the settlement's period is contested: its statement is disputed and unanswered, or a
    correction was promised and has not come yet."""

    standing: str
    since: dt.datetime
    comment: str


class SettlementDetailOut(SettlementOut):
    # Only for an open settlement (proposed or approved): approving or paying it then pays
    # numbers the customer contests.
    statement: StandingOut | None = None


class ProposeRequest(Shape):
    agreement: str = Field(min_length=1, max_length=64)
    beneficiary: str = Field(min_length=1, max_length=64)
    period_start: Day


class RejectRequest(Shape):
    reason: str = Field(min_length=1, max_length=500)


class PayRequest(Shape):
    document_number: str | None = Field(default=None, max_length=64)
    original_invoices: list[str] = Field(default_factory=list, max_length=1000)
    bank_account_id: int | None = None


class PayoutOut(Shape):
    id: int
    settlement_id: int
    form: str
    amount: Money
    document_number: str | None
    journal_entry_id: int


class PolicyOut(Shape):
    version: int
    title: str
    effective_from: dt.date
    sha256: str
    published_by: str


class EventOut(Shape):
    seq: int
    occurred_at: dt.datetime
    type: str
    actor: str
    entity_type: str
    entity_id: str
    hash: str


class ProductOut(Shape):
    code: str
    name: str | None  # a products file may have no name column
    category: str | None
    brand: str | None


class BatchOut(Shape):
    id: int
    kind: str
    source_name: str
    rows: int
    status: str
    imported_at: dt.datetime
    imported_by: str
    first_date: dt.date | None
    last_date: dt.date | None
    # a voided batch: when, by whom and why (as `fanli batch list` and the imports page say)
    voided_at: dt.datetime | None = None
    voided_by: str | None = None
    void_reason: str | None = None


class ReturnLeftOut(Shape):
    """A return in another active batch that names a line of the voided batch: it keeps
    reducing the rebate until that sale is imported again or the return is voided too."""

    batch_id: int
    line_id: str


class VoidOut(BatchOut):
    returns_left: list[ReturnLeftOut]


class ImportOut(Shape):
    batch_id: int
    kind: str
    rows: int
    already_imported: bool
    inserted: int
    updated: int
    # Sales lines dated after the day of the import (stored; runs count them as of their day)
    dated_ahead: int = 0
    latest: dt.date | None = None  # their latest date


class ReasonRequest(Shape):
    reason: str = Field(min_length=1, max_length=500)


class VersionOut(Shape):
    id: int
    version: int
    status: str
    effective_from: dt.date
    terms_hash: str
    terms: dict[str, Any]
    review: dict[str, Any] | None


class AgreementOut(Shape):
    code: str
    name: str
    status: str
    versions: list[VersionOut]


class SubmitRequest(Shape):
    justification: str | None = Field(default=None, max_length=2000)


class ApproveRequest(Shape):
    terms_hash: str = Field(pattern=r"^[0-9a-f]{64}$")


class AccrualRequest(Shape):
    as_of: Day
    # A day before the last run's reverses what was accrued since: refused unless asked for,
    # as true itself ("on" or "yes" is no answer to a question that reverses postings).
    rewind: StrictBool = False


class CurrencyChange(Shape):
    currency: str
    net_change: CurrencyAmount
    adjusted: CurrencyAmount  # the part of net_change posted as adjustments for closed periods


class RunOut(Shape):
    run_id: int
    as_of: dt.date
    results_stored: int
    lines_posted: int
    # The run's change, in its currency's places: for a run in one currency (or none); null
    # for a run in several, whose ``by_currency`` has each currency's (amounts in two
    # currencies never add up).
    net_change: CurrencyAmount | None
    adjusted: CurrencyAmount | None  # the part posted as adjustments for closed periods
    by_currency: list[CurrencyChange] = []


class RunListOut(Shape):
    id: int
    as_of: dt.date
    actor: str
    results_stored: int
    lines_posted: int


class PeriodOut(Shape):
    code: str
    start: dt.date
    end: dt.date
    status: str
    closed_by: str | None


class JournalLineOut(Shape):
    entry_id: int
    entry_kind: str
    entry_date: dt.date
    debit_account: str
    credit_account: str
    amount: CurrencyAmount  # in the agreement's currency, with its places
    currency: str
    agreement_code: str
    beneficiary: str
    period_start: dt.date
    period_end: dt.date


class BankAccountIn(Shape):
    bank_name: str = Field(min_length=1, max_length=200)
    account_number: str = Field(min_length=1, max_length=64)
    holder_name: str = Field(min_length=1, max_length=200)
    country: str = Field(default="CN", pattern=r"^[A-Za-z]{2}$")


class BankAccountOut(Shape):
    id: int
    bank_name: str
    account_number: str
    holder_name: str
    country: str
    registered_by: str
    verified_by: str | None


class DueDiligenceIn(Shape):
    kind: str
    passed: bool = True
    reference: str = Field(min_length=1, max_length=200)
    checked_on: Day
    expires_on: Until
    note: str = Field(default="", max_length=500)


class DueDiligenceOut(Shape):
    id: int
    kind: str
    passed: bool
    reference: str
    checked_on: dt.date
    expires_on: dt.date
    recorded_by: str


class CreditOut(Shape):
    id: int
    amount: Money
    valid_until: dt.date
    status: str


class BalanceOut(Shape):
    customer: str
    available: Money
    locked: Money
    credits: list[CreditOut]


class BalanceUseIn(Shape):
    customer: str = Field(min_length=1, max_length=64)
    amount: Annotated[MoneyIn, Field(gt=0, lt=MAX_AMOUNT, decimal_places=4)]
    order_reference: str = Field(min_length=1, max_length=64)


class BalanceDecisionIn(Shape):
    approve: bool
    reason: str = Field(default="", max_length=500)


class BalanceUseOut(Shape):
    id: int
    credit_id: int
    amount: Money
    order_reference: str
    status: str


class StatementAnswerIn(Shape):
    decision: Annotated[str, Field(pattern="^(signed_off|disputed)$")]
    comment: str = Field(default="", max_length=2000)


class StatementResponseOut(Shape):
    """A customer's answer to its statement for the periods from ``period_start``: signed off,
    or disputed with a comment; ``statement_sha256`` pins the numbers it answered."""

    id: int
    customer_code: str
    period_start: dt.date
    statement_sha256: str
    decision: str
    comment: str
    responded_by: str
    responded_at: dt.datetime


class DisputeAnswerIn(Shape):
    outcome: Annotated[str, Field(pattern="^(upheld|correcting)$")]
    comment: str = Field(min_length=1, max_length=2000)


class DisputeAnswerOut(Shape):
    id: int
    response_id: int
    outcome: str
    comment: str
    answered_by: str
    answered_at: dt.datetime


class StatementLine(Shape):
    agreement_code: str
    version: int
    period_start: dt.date
    period_end: dt.date
    currency: str
    lines: int
    basis: Money
    tier: int
    rate: Annotated[Decimal, PlainSerializer(str, return_type=str)] | None
    rebate: Money
    accrued: Money


class Statement(Shape):
    customer: str
    legal_name: str
    lines: list[StatementLine]
    settlements: list[SettlementOut]
    balance: BalanceOut


class UserIn(Shape):
    code: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(min_length=1)
    approval_limit: LimitIn | None = None
    customer: str | None = Field(default=None, max_length=64)


class UserOut(Shape):
    code: str
    name: str
    roles: list[str]
    approval_limit: Money | None
    customer_code: str | None
    active: bool


class DelegationIn(Shape):
    delegator: str = Field(min_length=1, max_length=64)
    delegate: str = Field(min_length=1, max_length=64)
    valid_from: Day
    valid_to: Until
    reason: str = Field(min_length=1, max_length=300)


class DelegationOut(Shape):
    id: int
    valid_from: dt.date
    valid_to: dt.date


class ErrorOut(BaseModel):
    """Every error: a stable code, and a detail (a message, or a list of field problems)."""

    error: str
    detail: Any


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in (
        (400, "a required header (Idempotency-Key) is missing"),
        (401, "not signed in"),
        (403, "the caller's role may not do this"),
        (404, "no such object (or not one the caller may see)"),
        (409, "refused by a rule in the current state, or a request with this key in flight"),
        (422, "invalid input: the fields and reasons"),
        (429, "too many failed sign-ins"),
        (500, "an unexpected error"),
    )
}


class ApprovalOut(Shape):
    approver: str
    principal: str
    role: str
    approved_at: dt.datetime


class ApprovalStatusOut(Shape):
    settlement: SettlementOut
    approvals: list[ApprovalOut]
    missing: list[str]


class TerminationIn(Shape):
    on: Day
    reason: str = Field(min_length=1, max_length=500)


class ExpiryIn(Shape):
    as_of: Day


class ExpiryOut(Shape):
    credits: int
    released: Money


class AssignmentIn(Shape):
    user: str = Field(min_length=1, max_length=64)


class PasswordIn(Shape):
    password: str = Field(min_length=12, max_length=200)


class SecondFactorOut(Shape):
    secret: str
    provisioning_uri: str


# ---- the periodic audit ------------------------------------------------------------------------


class AuditRunIn(Shape):
    period: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="e.g. 2026-03")
    detectors: list[str] | None = Field(default=None, max_length=20)


class AuditRunOut(Shape):
    id: int
    period: str
    started_at: dt.datetime
    actor: str
    detectors: list[str]
    found: int
    opened: int


class FindingOut(Shape):
    id: int
    detector: str
    period: str
    department: str
    customer_code: str | None
    amount: Money | None
    summary: str
    evidence: dict[str, Any]
    status: str
    owner: str | None
    resolution: str | None
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    closed_by: str | None


class AssignmentRequest(Shape):
    owner: str = Field(min_length=1, max_length=64)


class TrailOut(Shape):
    holds: bool
    events: int
    first_bad_event: int | None
    problem: str | None
