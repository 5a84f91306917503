"""The rebate policy as data: the limits and rules a machine enforces, beside the text people read.

A policy document (YAML or JSON) has these parts, all checked when it is published:

- ``rates``: the highest rate per customer segment and product category (``null``: any). A
  percent rate is capped by ``max_percent``, an amount per unit by ``max_per_unit``, a fixed
  amount by ``max_fixed``. Where several limits can apply, the lowest binds.
- ``max_settlement``: the largest single settlement per segment.
- ``settlement_forms``: the forms an agreement may name.
- ``agreement_approval``: the approval steps every agreement version needs.
- ``deviation``: terms beyond the rate limits need a written justification and one more
  approver holding ``role``.
- ``settlement_approval``: amount bands ``[from, to)`` over the absolute amount, contiguous from
  zero, each with its steps; every approver must also hold an approval limit covering the amount.
- ``due_diligence``: the kinds of check a customer needs, current, to be proposed or paid a
  settlement.
- ``rebate_balance``: how long a credit to a rebate balance account stays usable.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from fanli.agreements.terms import SettlementForm
from fanli.customers.models import DueDiligenceKind
from fanli.users.actor import Role


def _no_float(value: object) -> object:
    if isinstance(value, float):
        raise ValueError("write amounts as strings or integers, not floating-point numbers")
    return value


Money = Annotated[Decimal, BeforeValidator(_no_float), Field(ge=0)]


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RateLimit(Part):
    segment: str | None = None
    category: str | None = None
    max_percent: Money | None = None
    max_per_unit: Money | None = None
    max_fixed: Money | None = None


class AmountLimit(Part):
    segment: str | None = None
    amount: Money


class Step(Part):
    role: Role
    count: int = Field(default=1, ge=1, le=5)


class Deviation(Part):
    role: Role = Role.COMPLIANCE


class SettlementBand(Part):
    lower: Money = Field(alias="from")
    upper: Money | None = Field(default=None, alias="to")
    steps: tuple[Step, ...] = Field(min_length=1)


class DueDiligence(Part):
    required: tuple[DueDiligenceKind, ...] = ()


class RebateBalance(Part):
    validity_days: int = Field(default=365, ge=1, le=3660)


def _unique_roles(where: str, steps: tuple[Step, ...]) -> None:
    # Approvals are counted per role; two steps of one role would both be filled by one
    # approval. Ask for the role once, with the count needed.
    roles = [step.role for step in steps]
    for role in set(roles):
        if roles.count(role) > 1:
            raise ValueError(f"{where} names {role.value} twice: give it once with a count")


def step_list(steps: tuple[Step, ...], *, plus: Role | None = None) -> list[dict[str, object]]:
    """Steps as stored: [{role, count}], with one more approver of ``plus`` if given (merged
    into that role's step, so that every role appears once)."""
    counts = {step.role: step.count for step in steps}
    if plus is not None:
        counts[plus] = counts.get(plus, 0) + 1
    return [{"role": role.value, "count": count} for role, count in counts.items()]


class Policy(Part):
    title: str = Field(min_length=1, max_length=200)
    effective_from: dt.date | None = None  # None: in force from the day it is published
    text: str = Field(min_length=1)
    rates: tuple[RateLimit, ...] = ()
    max_settlement: tuple[AmountLimit, ...] = ()
    settlement_forms: tuple[SettlementForm, ...] = Field(min_length=1)
    agreement_approval: tuple[Step, ...] = Field(min_length=1)
    deviation: Deviation = Deviation()
    settlement_approval: tuple[SettlementBand, ...] = Field(min_length=1)
    due_diligence: DueDiligence = DueDiligence()
    rebate_balance: RebateBalance = RebateBalance()

    @model_validator(mode="after")
    def _check(self) -> Self:
        expected = Decimal(0)
        for position, band in enumerate(self.settlement_approval, start=1):
            if band.lower != expected:
                raise ValueError(
                    f"settlement_approval band {position} starts at {band.lower}; the bands "
                    f"must be contiguous from 0 (expected {expected})"
                )
            last = position == len(self.settlement_approval)
            if band.upper is None and not last:
                raise ValueError(f"settlement_approval band {position} is open but not the last")
            if band.upper is not None and band.upper <= band.lower:
                raise ValueError(f"settlement_approval band {position} ends before it starts")
            if last and band.upper is not None:
                raise ValueError("the last settlement_approval band must be open (no 'to')")
            expected = band.upper if band.upper is not None else expected
        _unique_roles("agreement_approval", self.agreement_approval)
        for position, band in enumerate(self.settlement_approval, start=1):
            _unique_roles(f"settlement_approval band {position}", band.steps)
        for limit in self.rates:
            if limit.max_percent is None and limit.max_per_unit is None and limit.max_fixed is None:
                raise ValueError("a rates entry must set max_percent, max_per_unit or max_fixed")
        return self

    def settlement_steps(self, amount: Decimal) -> tuple[Step, ...]:
        """The approval steps for a settlement of ``amount`` (its absolute value decides)."""
        size = abs(amount)
        for band in self.settlement_approval:
            if band.lower <= size and (band.upper is None or size < band.upper):
                return band.steps
        raise AssertionError("bands are contiguous from 0 and end open")

    def max_settlement_for(self, segment: str | None) -> Decimal | None:
        limits = [
            limit.amount
            for limit in self.max_settlement
            if limit.segment is None or limit.segment == segment
        ]
        return min(limits) if limits else None
