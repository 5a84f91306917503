"""The benchmark's 200 agreements: deterministic programme agreements over TPC-H attributes.

Seeded ``random.Random(2026)``: the same list on every machine and every run. Each agreement is a
programme (no ``parties``: every eligible customer is its own beneficiary) of one calendar year
between 1993 and 1998 with quarterly periods, over customers chosen by market segment and/or
nation and products chosen by manufacturer and/or brand, with include and exclude selectors. The
rate structures mix the four tier methods, the three bases (net, gross, quantity), percent and
per-unit forms, caps per period and per term, and a few minimum thresholds. Every number is
written as a decimal string: nothing here is ever a float.

Band bounds are sized to TPC-H's spend per customer and quarter (a line averages ~36,000 net and
~25 units; a customer orders about twice a quarter), so results spread over all tiers, caps bite
on some rows and some rows stay below the first band.

    python -m benchmarks.agreements          # summary of the list
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from decimal import Decimal
from typing import Any

from fanli.agreements.terms import Agreement

SEED = 2026
COUNT = 200

SEGMENTS = ("AUTOMOBILE", "BUILDING", "FURNITURE", "HOUSEHOLD", "MACHINERY")
NATIONS = (
    "ALGERIA", "ARGENTINA", "BRAZIL", "CANADA", "EGYPT", "ETHIOPIA", "FRANCE", "GERMANY",
    "INDIA", "INDONESIA", "IRAN", "IRAQ", "JAPAN", "JORDAN", "KENYA", "MOROCCO", "MOZAMBIQUE",
    "PERU", "CHINA", "ROMANIA", "SAUDI ARABIA", "VIETNAM", "RUSSIA", "UNITED KINGDOM",
    "UNITED STATES",
)  # fmt: skip
MANUFACTURERS = tuple(f"Manufacturer#{m}" for m in range(1, 6))
BRANDS = tuple(f"Brand#{m}{n}" for m in range(1, 6) for n in range(1, 6))
METHODS = ("whole_volume", "marginal", "rolling", "all_reached")

# Band steps per basis (yuan for net and gross, units for quantity) and rates per form.
AMOUNT_STEPS = ("10000", "20000", "25000", "40000", "50000", "75000")
QUANTITY_STEPS = ("10", "20", "25", "40", "60")
PERCENT_RATES = ("0.5", "0.75", "1", "1.25", "1.5", "2", "2.375", "0.0625", "3.1416")
PERCENT_STEPS = ("0.25", "0.5", "0.75", "1", "1.125", "0.0125")
PER_UNIT_RATES = ("0.15", "0.275", "0.3125", "0.5", "1.05", "0.045678")
PER_UNIT_STEPS = ("0.05", "0.1", "0.125", "0.2", "0.000321")


def _customers(rng: random.Random) -> dict[str, Any]:
    """A customer filter: a segment within some nations, one or two nations (minus a segment),
    or a segment minus most nations. Selective on purpose: a programme targets a slice of the
    customer base, and results (agreement x customer x 4 quarters) stay well below the lines."""
    kind = rng.choice(("segment_nation", "segment_nation", "nation", "nation_minus_segment"))
    if kind == "segment_nation":
        return {
            "include": {
                "attributes": {
                    "segment": [rng.choice(SEGMENTS)],
                    "nation": rng.sample(NATIONS, rng.randint(1, 4)),
                }
            }
        }
    if kind == "nation":
        return {"include": {"attributes": {"nation": [rng.choice(NATIONS)]}}}
    return {
        "include": {"attributes": {"nation": rng.sample(NATIONS, rng.randint(1, 2))}},
        "exclude": {"attributes": {"segment": rng.sample(SEGMENTS, rng.randint(1, 3))}},
    }


def _products(rng: random.Random) -> dict[str, Any]:
    """A product filter: a manufacturer, some brands, or a manufacturer minus a brand."""
    kind = rng.choice(("manufacturer", "brands", "manufacturer_minus_brand", "manufacturers"))
    if kind == "manufacturer":
        return {"include": {"attributes": {"manufacturer": [rng.choice(MANUFACTURERS)]}}}
    if kind == "manufacturers":
        return {"include": {"attributes": {"manufacturer": rng.sample(MANUFACTURERS, 2)}}}
    if kind == "brands":
        return {"include": {"brand": rng.sample(BRANDS, rng.randint(2, 5))}}
    maker = rng.randint(1, 5)
    return {
        "include": {"attributes": {"manufacturer": [f"Manufacturer#{maker}"]}},
        "exclude": {"brand": [f"Brand#{maker}{rng.randint(1, 5)}"]},
    }


def _bands(rng: random.Random, *, quantity: bool, per_unit: bool) -> list[dict[str, Decimal]]:
    """1-4 contiguous bands, the first from 0 or from a small entry threshold."""
    steps = QUANTITY_STEPS if quantity else AMOUNT_STEPS
    rates, rate_steps = (
        (PER_UNIT_RATES, PER_UNIT_STEPS) if per_unit else (PERCENT_RATES, PERCENT_STEPS)
    )
    count = rng.choice((1, 2, 2, 3, 3, 3, 4, 4))
    lower = Decimal(0) if rng.random() < 0.75 else Decimal(rng.choice(steps)) / 2
    rate = Decimal(rng.choice(rates))
    bands: list[dict[str, Decimal]] = []
    for index in range(count):
        band = {"from": lower, "rate": rate}
        if index < count - 1:
            upper = lower + Decimal(rng.choice(steps))
            band["to"] = upper
            lower = upper
            rate += Decimal(rng.choice(rate_steps))
        bands.append(band)
    return bands


def _agreement(rng: random.Random, number: int) -> Agreement:
    year = rng.randint(1993, 1998)
    basis = rng.choice(("net", "net", "net", "gross", "gross", "quantity", "quantity"))
    per_unit = basis == "quantity"  # a per-unit rate pays on quantity
    terms: dict[str, Any] = {
        "id": f"BENCH-{number:03d}",
        "name": f"Benchmark programme {number}",
        "currency": "CNY",
        "term": {"start": dt.date(year, 1, 1), "end": dt.date(year + 1, 1, 1)},
        "eligibility": {"customers": _customers(rng), "products": _products(rng)},
        "rebate": {
            "form": "per_unit" if per_unit else "percent",
            "method": rng.choice(METHODS),
            "basis": basis,
            "tiers": _bands(rng, quantity=per_unit, per_unit=per_unit),
        },
        "periods": {"kind": "quarter"},
    }
    cap: dict[str, Decimal] = {}
    if rng.random() < 0.3:
        cap["per_period"] = Decimal(rng.choice(("150.00", "400.00", "750.50", "1200.00")))
    if rng.random() < 0.25:
        cap["per_term"] = Decimal(rng.choice(("300.00", "999.99", "2500.00", "5000.00")))
    if cap:
        terms["cap"] = cap
    if rng.random() < 0.1:
        terms["minimum"] = (
            Decimal(rng.choice(("20", "35")))
            if per_unit
            else Decimal(rng.choice(("15000", "30000.5")))
        )
    return Agreement.model_validate(terms)


def benchmark_agreements(count: int = COUNT, seed: int = SEED) -> list[Agreement]:
    """The deterministic list of benchmark agreements."""
    rng = random.Random(seed)
    return [_agreement(rng, number) for number in range(1, count + 1)]


def summary(agreements: list[Agreement]) -> str:
    """One paragraph describing the mix, for the benchmark's report."""
    methods = Counter(a.rebate.method.value for a in agreements)
    bases = Counter(a.rebate.basis.value for a in agreements)
    years = Counter(a.term_period.start.year for a in agreements)
    capped_period = sum(a.cap.per_period is not None for a in agreements)
    capped_term = sum(a.cap.per_term is not None for a in agreements)
    minimum = sum(a.minimum is not None for a in agreements)
    return (
        f"{len(agreements)} agreements (seed {SEED}); methods {dict(sorted(methods.items()))}; "
        f"bases {dict(sorted(bases.items()))}; years {dict(sorted(years.items()))}; "
        f"cap per period {capped_period}, per term {capped_term}, minimum {minimum}"
    )


if __name__ == "__main__":
    items = benchmark_agreements()
    print(summary(items))
    for item in items[:3]:
        print(item.model_dump_json(by_alias=True, exclude_defaults=True))
