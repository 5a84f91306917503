"""The ledger seen whole: each period's accrued, settled and outstanding rebate, the customers
and programmes with the most outstanding, the customers close to their next band, and how far
one standing is from its next band.

The dashboard, a customer's statement and the portal read these; the rules (what counts as
near, how a band's progress is measured) live here, once, not in the pages.

Amounts are kept apart per currency. An agreement's results and postings are in the
agreement's currency, and amounts in two currencies never add up.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, literal, select, true, type_coerce
from sqlalchemy.orm import Session

from fanli.agreements.models import AgreementRecord, AgreementVersion
from fanli.agreements.queries import DEFAULT_CURRENCY, version_currencies
from fanli.db.base import Amount
from fanli.kit.money import ZERO
from fanli.ledger.models import (
    Account,
    AccountingPeriod,
    EntryKind,
    JournalEntry,
    JournalLine,
)
from fanli.ledger.queries import accounting_periods, liabilities, standings_on
from fanli.sales.store import FactStore

NEAR_SHARE = Decimal("0.1")  # within 10% of the next band's threshold is a near miss
LEADERS = 5
NEAR_MISSES = 10


# ---- one standing: how far from the next band ---------------------------------------------------


@dataclass(frozen=True)
class TierProgress:
    """Where a tier basis stands between its band and the next."""

    form: str  # the rebate's form: percent, per_unit or fixed (how to read a rate)
    basis_in_units: bool  # the rebate's basis is a quantity, not money
    in_units: bool  # the tiers count quantity, not money
    on_growth: bool  # the tiers are growth over a baseline (a percent), not an amount to reach
    next_from: Decimal | None  # the next band's threshold; None at the top band or on growth
    more: Decimal | None  # how much more tier basis reaches it
    share: int  # percent of the way from this band's start to the next (100 at the top)
    # Why a band reached earns nothing: "minimum" (``more`` is then the way to the minimum) or
    # "gate" (the gate's own lines fell short of its target); None when nothing holds it back.
    held_back: str | None = None


def tier_progress(
    terms: Mapping[str, Any], tier: int, tier_basis: Decimal, rebate_amount: Decimal | None = None
) -> TierProgress:
    """How far ``tier_basis``, in band ``tier`` (1-based; 0 below the first band), is from the
    next band of the agreement ``terms`` (the stored terms, as JSON). Given the period's rebate,
    a band reached that earns nothing says why: the minimum or the gate."""
    rebate = terms.get("rebate", {})
    tiers = rebate.get("tiers", [])
    on_growth = bool(terms.get("growth"))
    basis_in_units = rebate.get("basis") == "quantity"
    in_units = (rebate.get("tier_basis") or rebate.get("basis")) == "quantity"
    form = str(rebate.get("form", "percent"))
    if rebate_amount is not None and rebate_amount == ZERO and tier >= 1:
        minimum = terms.get("minimum")
        if minimum is not None and tier_basis < Decimal(str(minimum)):
            floor = Decimal(str(minimum))
            share = int(max(tier_basis, ZERO) / floor * 100) if floor > 0 else 0
            return TierProgress(
                form, basis_in_units, in_units, on_growth, floor, floor - tier_basis,
                max(0, min(share, 100)), "minimum",
            )  # fmt: skip
        if terms.get("gate"):
            return TierProgress(
                form, basis_in_units, in_units, on_growth, None, None, 0, "gate"
            )  # fmt: skip
    if on_growth or tier >= len(tiers):
        # A growth band is a percent of a baseline: "¥X more" would need the baseline's amount.
        return TierProgress(form, basis_in_units, in_units, on_growth, None, None, 100)
    start = Decimal(str(tiers[tier - 1]["from"])) if tier >= 1 else ZERO
    next_from = Decimal(str(tiers[tier]["from"]))
    span = next_from - start
    share = int((tier_basis - start) / span * 100) if span > 0 else 0
    more = max(next_from - tier_basis, ZERO)
    return TierProgress(
        form, basis_in_units, in_units, on_growth, next_from, more, max(0, min(share, 100))
    )


def bases_in_units(session: Session) -> set[tuple[str, int]]:
    """The agreement versions (code, version) whose rebate basis is a quantity, not money."""
    return {
        (code, version)
        for code, version, terms in session.execute(
            select(AgreementRecord.code, AgreementVersion.version, AgreementVersion.terms).join(
                AgreementRecord, AgreementRecord.id == AgreementVersion.agreement_id
            )
        ).all()
        if (terms or {}).get("rebate", {}).get("basis") == "quantity"
    }


# ---- per currency --------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodTotals:
    """One accounting period's movements on the rebate liability, in one currency."""

    period: str
    accrued: Decimal  # accrual and adjustment entries, net: a run that lowers a rebate reverses
    settled: Decimal  # payouts: settlements paid, less claw-backs collected
    outstanding: Decimal  # the balance at the period's end, over every period since the first


_ACCRUING = (EntryKind.ACCRUAL.value, EntryKind.ADJUSTMENT.value)


def period_totals(
    session: Session, customers: set[str] | None = None
) -> dict[str, list[PeriodTotals]]:
    """Per currency, every accounting period's liability movements in period order, over the
    beneficiaries in ``customers`` (None: all). A reversed accrual lowers what was accrued; it
    is not a settlement."""
    currencies = version_currencies(session)
    zero = literal(ZERO, Amount())  # an Amount, so SQLite's sums stay scaled integers
    net_credit = type_coerce(
        func.sum(
            case((JournalLine.credit_account == Account.LIABILITY, JournalLine.amount), else_=zero)
        )
        - func.sum(
            case((JournalLine.debit_account == Account.LIABILITY, JournalLine.amount), else_=zero)
        ),
        Amount(),
    )
    # Per currency and period: (accrued, settled, anything else on the liability).
    moves: dict[tuple[str, str], tuple[Decimal, Decimal, Decimal]] = {}
    for code, version_id, kind, credited in session.execute(
        select(AccountingPeriod.code, JournalLine.version_id, JournalEntry.kind, net_credit)
        .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
        .join(AccountingPeriod, AccountingPeriod.id == JournalEntry.accounting_period_id)
        .where(JournalLine.beneficiary.in_(sorted(customers)) if customers is not None else true())
        .group_by(AccountingPeriod.code, JournalLine.version_id, JournalEntry.kind)
    ).all():
        key = (currencies.get(version_id, DEFAULT_CURRENCY), code)
        accrued, settled, other = moves.get(key, (ZERO, ZERO, ZERO))
        if kind in _ACCRUING:
            accrued += credited
        elif kind == EntryKind.PAYOUT.value:
            settled -= credited  # a payout debits the liability
        else:
            other += credited
        moves[key] = (accrued, settled, other)
    periods = [period.code for period in accounting_periods(session)]
    totals: dict[str, list[PeriodTotals]] = {}
    for currency in sorted({currency for currency, _code in moves}):
        outstanding = ZERO
        rows = totals.setdefault(currency, [])
        for code in periods:
            accrued, settled, other = moves.get((currency, code), (ZERO, ZERO, ZERO))
            outstanding += accrued - settled + other
            rows.append(PeriodTotals(code, accrued, settled, outstanding))
    return totals


@dataclass(frozen=True)
class Leaders:
    """The customers and the programmes with the most rebate outstanding, in one currency."""

    customers: list[tuple[str, Decimal]]
    programmes: list[tuple[str, Decimal]]


def leaders(
    session: Session, shown: set[str] | None = None, limit: int = LEADERS
) -> dict[str, Leaders]:
    """Per currency, the ``limit`` customers and programmes with the most outstanding in the
    journal, over the customers in ``shown`` (None: all)."""
    codes = dict(
        session.execute(
            select(AgreementVersion.id, AgreementRecord.code).join(
                AgreementRecord, AgreementRecord.id == AgreementVersion.agreement_id
            )
        ).all()
    )
    currencies = version_currencies(session)
    customers: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    programmes: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for (version_id, beneficiary, _period), amount in liabilities(session).items():
        if shown is not None and beneficiary not in shown:
            continue
        currency = currencies.get(version_id, DEFAULT_CURRENCY)
        customers[currency][beneficiary] += amount
        programmes[currency][codes.get(version_id, "?")] += amount

    def top(totals: dict[str, Decimal]) -> list[tuple[str, Decimal]]:
        return sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:limit]

    return {
        currency: Leaders(top(customers[currency]), top(programmes[currency]))
        for currency in sorted(customers)
    }


@dataclass(frozen=True)
class NearMiss:
    """A customer close to the next band of an agreement in a rebate period running now."""

    customer: str
    agreement: str
    tier: int  # the band reached (1-based)
    more: Decimal  # tier basis still needed for the next band
    in_units: bool  # ``more`` is a quantity, not money
    currency: str


def near_misses(
    session: Session,
    store: FactStore,
    day: dt.date,
    shown: set[str] | None = None,
    *,
    share: Decimal = NEAR_SHARE,
    limit: int = NEAR_MISSES,
) -> list[NearMiss]:
    """The customers (of ``shown``; None: all) within ``share`` of their next band's threshold
    in a rebate period containing ``day``, nearest first. Below the first band nothing has been
    earned yet; growth bands are percentages of a baseline, not amounts to reach: neither
    counts."""
    versions = {
        (code, version.version): version
        for version, code in session.execute(
            select(AgreementVersion, AgreementRecord.code).join(
                AgreementRecord, AgreementRecord.id == AgreementVersion.agreement_id
            )
        ).all()
    }
    found = []
    for standing in standings_on(session, store, day):
        version = versions.get((standing.agreement_code, standing.version))
        if version is None or standing.tier < 1:
            continue
        if shown is not None and standing.beneficiary not in shown:
            continue
        progress = tier_progress(version.terms, standing.tier, standing.tier_basis)
        if progress.next_from is None or progress.more is None:
            continue
        if ZERO < progress.more <= progress.next_from * share:
            found.append(
                NearMiss(
                    standing.beneficiary,
                    standing.agreement_code,
                    standing.tier,
                    progress.more,
                    progress.in_units,
                    version.terms.get("currency", DEFAULT_CURRENCY),
                )
            )
    return sorted(found, key=lambda miss: (miss.more, miss.customer))[:limit]
