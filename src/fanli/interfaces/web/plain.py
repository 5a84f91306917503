"""An agreement's terms in plain language, for the customer portal: what it pays, on what,
how the tiers work, and when: the rate's form, the tier method, the periods, which purchases
count (products, the event and dates that place a purchase), a minimum, caps, growth over a
baseline, a gate, a guaranteed minimum and a separate target set.

Which customers an agreement selects is not said: the reader is the customer it selected.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from .i18n import Lang

PERIODS = {
    "month": "monthly",
    "quarter": "quarterly",
    "half": "half-yearly",
    "year": "yearly",
    "custom": "over the agreed periods",
}
MEASURES = {"net": "net sales", "gross": "gross sales", "quantity": "units bought"}
METHODS = {
    "whole_volume": "the rate of the band reached applies to the whole basis",
    "marginal": "each band's rate applies to the part of the basis inside it",
    "rolling": "lower bands count in full, and the band reached applies to the whole basis",
    "all_reached": "the rate of every band reached applies to the whole basis",
}

# A product selection's fields, as the reader names them ({values} is a list).
PRODUCT_FIELDS = {
    "category": "category {values}",
    "brand": "brand {values}",
    "id": "products {values}",
}
# How an include's fields join (all must match) and an exclude's (any one excludes).
ALL_OF, ANY_OF = ", and ", ", or "
EVENTS = {
    "order": "A purchase counts on its order date.",
    "paid_invoice": "A purchase counts once its invoice is paid, on the day it is paid.",
}

LIMITS = (
    ("per_period", "At most {amount} a period."),
    ("per_term", "At most {amount} over the term."),
)


def _amount(lang: Lang, value: Any, measure: str, currency: str) -> str:
    number = Decimal(str(value))
    return (
        lang.number(number) + lang._(" units")
        if measure == "quantity"
        else lang.money(number, currency)
    )


def _rate(lang: Lang, rate: Any, form: str, currency: str) -> str:
    value = Decimal(str(rate))
    if form == "per_unit":
        return lang._("{amount} per unit", amount=lang.unit_price(value, currency))
    if form == "fixed":
        return lang._("a fixed {amount}", amount=lang.money(value, currency))
    return lang.percent(value)


def describe(terms: dict[str, Any], lang: Lang) -> list[str]:
    """Sentences that say what ``terms`` (an agreement version's stored terms) pay."""
    rebate = terms["rebate"]
    currency = terms.get("currency", "CNY")
    form = rebate.get("form", "percent")
    measure = rebate.get("tier_basis") or rebate.get("basis", "net")
    kind = (terms.get("periods") or {}).get("kind", "quarter")
    sentences = [
        lang._(
            "From {start} to {end}, worked out {how}, on your {measure}.",
            start=lang.date(_day(terms["term"]["start"])),
            # A term's end is exclusive: the reader is told its last day.
            end=lang.date(_day(terms["term"]["end"]) - dt.timedelta(days=1)),
            how=lang._(PERIODS.get(kind, kind)),
            measure=lang._(MEASURES.get(rebate.get("basis", "net"), rebate.get("basis", "net"))),
        )
    ]
    bands = []
    on_growth = bool(terms.get("growth"))
    for band in rebate["tiers"]:
        if on_growth:  # the bands are growth over the baseline, in percent
            low, high = f"{band['from']}%", f"{band.get('to')}%"
            rate = _rate(lang, band["rate"], form, currency)
            bands.append(
                lang._("growth from {low}: {rate}", low=low, rate=rate)
                if band.get("to") is None
                else lang._("growth {low} to {high}: {rate}", low=low, high=high, rate=rate)
            )
            continue
        low = _amount(lang, band["from"], measure, currency)
        rate = _rate(lang, band["rate"], form, currency)
        if band.get("to") is None:
            bands.append(lang._("from {low}: {rate}", low=low, rate=rate))
        else:
            high = _amount(lang, band["to"], measure, currency)
            bands.append(lang._("{low} to {high}: {rate}", low=low, high=high, rate=rate))
    sentences.append(lang._("Bands: {bands}.", bands=lang._("; ").join(bands)))
    sentences += _purchases(terms.get("eligibility") or {}, lang)
    if len(rebate["tiers"]) > 1:
        method = rebate.get("method", "whole_volume")
        sentences.append(lang._(METHODS.get(method, method)).capitalize() + lang._("."))
    if terms.get("minimum") is not None:
        sentences.append(
            lang._(
                "Below {minimum}, nothing is earned.",
                minimum=_amount(lang, terms["minimum"], measure, currency),
            )
        )
    cap = terms.get("cap") or {}
    limits = (
        ("per_period", "At most {amount} a period."),
        ("per_term", "At most {amount} over the term."),
    )
    for key, text in limits:
        if cap.get(key) is not None:
            sentences.append(lang._(text, amount=lang.money(Decimal(str(cap[key])), currency)))
    sentences += _conditions(terms, lang, measure, currency)
    return sentences


def _products(selector: dict[str, Any], lang: Lang, joined: str) -> str:
    """A product selector's fields in words, joined by ``joined`` (an include's fields must
    all match; any one of an exclude's fields excludes)."""
    parts = [
        lang._(text, values=lang._(", ").join(selector[key]))
        for key, text in PRODUCT_FIELDS.items()
        if selector.get(key)
    ]
    parts += [
        lang._("{name} {values}", name=name, values=lang._(", ").join(values))
        for name, values in (selector.get("attributes") or {}).items()
        if values
    ]
    return lang._(joined).join(parts)


def _purchases(eligibility: dict[str, Any], lang: Lang) -> list[str]:
    """Which of the customer's purchases count: products, documents, dates and the event."""
    said = []
    products = eligibility.get("products") or {}
    included = _products(products.get("include") or {}, lang, ALL_OF)
    if included:
        said.append(lang._("Only purchases of {products} count.", products=included))
    excluded = _products(products.get("exclude") or {}, lang, ANY_OF)
    if excluded:
        said.append(lang._("Purchases of {products} do not count.", products=excluded))
    if eligibility.get("document_types"):
        said.append(
            lang._(
                "Only these documents count: {types}.",
                types=lang._(", ").join(eligibility["document_types"]),
            )
        )
    dates = eligibility.get("dates") or {}
    start, end = dates.get("start"), dates.get("end")
    if start and end:
        said.append(
            lang._(
                "Only purchases from {start} to {end} count.",
                start=lang.date(_day(start)),
                end=lang.date(_day(end) - dt.timedelta(days=1)),
            )
        )
    elif start:
        said.append(lang._("Only purchases from {start} count.", start=lang.date(_day(start))))
    elif end:
        last = lang.date(_day(end) - dt.timedelta(days=1))
        said.append(lang._("Only purchases until {end} count.", end=last))
    event = eligibility.get("event", "invoice")
    if event in EVENTS:
        said.append(lang._(EVENTS[event]))
    return said


def _conditions(terms: dict[str, Any], lang: Lang, measure: str, currency: str) -> list[str]:
    """Growth, a gate, a guarantee and a separate target, each said in a sentence."""
    said = []
    growth = terms.get("growth")
    if growth:
        if growth.get("baseline") == "fixed" and growth.get("baseline_amount") is not None:
            base = lang._(
                "a baseline of {amount} a period",
                amount=_amount(lang, growth["baseline_amount"], measure, currency),
            )
        else:
            base = lang._("your purchases in the same period a year before")
        said.append(lang._("The bands are your growth over {base}, in percent.", base=base))
    gate = terms.get("gate")
    if gate:
        categories = ((gate.get("products") or {}).get("include") or {}).get("category") or []
        lines = (
            lang._("of {categories}", categories=lang._(", ").join(categories))
            if categories
            else ""
        )
        said.append(
            lang._(
                "Only if your purchases {lines} reach {target} in the same period.",
                lines=lines,
                target=_amount(lang, gate["target"], gate.get("measure", "net"), currency),
            ).replace("  ", " ")
        )
    guarantee = terms.get("guarantee")
    if guarantee:
        amount = lang.money(Decimal(str(guarantee["amount"])), currency)
        said.append(
            lang._("At least {amount} a period, counted over the term so far.", amount=amount)
            if guarantee.get("carry_forward")
            else lang._("At least {amount} a period.", amount=amount)
        )
    if terms.get("target"):
        said.append(lang._("The tiers are judged on a separate, agreed set of purchases."))
    return said


def _day(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
