"""The API's shapes. Money is a decimal string ("1234.50"), never a JSON number."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema


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
    totp: str | None = Field(default=None, pattern=r"^\d{6}$")


class Me(Shape):
    code: str
    roles: list[str]
    customer: str | None
    approval_limit: Money | None
    csrf_token: str | None = None  # browser sessions: echo it in X-CSRF-Token


class TokenRequest(Shape):
    name: str = Field(min_length=1, max_length=100)
    roles: list[str] = Field(min_length=1)
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


class ProposeRequest(Shape):
    agreement: str = Field(min_length=1, max_length=64)
    beneficiary: str = Field(min_length=1, max_length=64)
    period_start: dt.date


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
