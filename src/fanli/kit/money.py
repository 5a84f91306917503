"""Money: Decimal only, currencies with their minor units, and the one rounding step.

Floats never enter: ``D`` refuses them, because a float such as 0.1 is already wrong before any
arithmetic happens. Amounts are rounded exactly once, at the result line, with a named mode.
"""

from __future__ import annotations

import decimal
import re
from decimal import Decimal
from enum import StrEnum
from typing import Final

from fanli.kit.errors import said

ZERO: Final = Decimal(0)

# Minor-unit exponents (ISO 4217) of the currencies Fanli knows; extend as customers need.
MINOR_UNITS: Final[dict[str, int]] = {
    "CNY": 2,
    "HKD": 2,
    "TWD": 2,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "SGD": 2,
    "AUD": 2,
    "CAD": 2,
    "CHF": 2,
    "JPY": 0,
    "KRW": 0,
    "VND": 0,
}

# Currencies as Chinese ERP exports name them in a 币别/币种 column (Kingdee and Yonyou write
# 人民币, some systems RMB): read as their ISO 4217 codes. Compared after upper-casing.
CURRENCY_NAMES: Final[dict[str, str]] = {
    "人民币": "CNY",
    "RMB": "CNY",
    "港币": "HKD",
    "港元": "HKD",
    "新台币": "TWD",
    "美元": "USD",
    "欧元": "EUR",
    "英镑": "GBP",
    "新加坡元": "SGD",
    "澳元": "AUD",
    "澳大利亚元": "AUD",
    "加元": "CAD",
    "加拿大元": "CAD",
    "瑞士法郎": "CHF",
    "日元": "JPY",
    "韩元": "KRW",
    "越南盾": "VND",
}

# Fact amounts and quantities carry at most this many decimal places (net = price x (1 - discount)
# needs four). The engine holds them as integers in units of 10**-FACT_SCALE.
FACT_SCALE: Final = 4


class RoundingMode(StrEnum):
    """How a result line is rounded to the currency's minor unit."""

    HALF_UP = "half_up"  # halves away from zero (commercial rounding, the default)
    HALF_EVEN = "half_even"  # halves to the even neighbour (banker's rounding)


_DECIMAL_ROUNDING: Final = {
    RoundingMode.HALF_UP: decimal.ROUND_HALF_UP,
    RoundingMode.HALF_EVEN: decimal.ROUND_HALF_EVEN,
}


# The largest amount any one value may hold: the stores keep four places in 64-bit integers
# (SQLite) or NUMERIC(22, 4) (PostgreSQL); 10^14 leaves room in both, and in their sums.
MAX_AMOUNT: Final = Decimal(10) ** 14

# An amount as a person types it, on the command line or in a request: digits, a point and up
# to four places. Python's Decimal would also read "1_000", "1e3", " 5 " and other scripts'
# digits ("５"); an amount is written one way only.
AMOUNT_TEXT: Final = re.compile(r"[0-9]+(\.[0-9]{1,4})?")


class UnknownCurrencyError(ValueError):
    """A currency code Fanli has no minor unit for; ``problem`` is the message said, for a page
    to say in the reader's language."""

    def __init__(self, currency: str) -> None:
        self.problem = said(
            "unknown currency {currency} (known: {known})",
            currency=repr(currency),
            known=", ".join(sorted(MINOR_UNITS)),
        )
        super().__init__(str(self.problem))


def minor_unit(currency: str) -> int:
    """Number of decimal places of ``currency`` (2 for CNY, 0 for JPY)."""
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise UnknownCurrencyError(currency) from None


def amount_text(amount: Decimal, currency: str) -> str:
    """An amount as text with its currency's places (two for CNY, none for JPY), and more
    only where the amount has them (the ledger keeps four). Nothing is rounded: 194.6900 is
    194.69, 129.0000 yen is 129, and 0.005 stays 0.005."""
    unit = amount.quantize(Decimal(1).scaleb(-minor_unit(currency)))
    return f"{unit:f}" if unit == amount else f"{amount.normalize():f}"


def D(value: Decimal | int | str) -> Decimal:  # noqa: N802 - the conventional short name
    """Make an exact Decimal from an int, a string or a Decimal; a float is refused."""
    if isinstance(value, (bool, float)):
        raise TypeError(f"refusing {type(value).__name__} {value!r}: money is never a float")
    if isinstance(value, Decimal):
        return value
    return Decimal(value)


def decimal_places(value: Decimal) -> int:
    """Decimal places a value needs (trailing zeros do not count)."""
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def quantize_money(value: Decimal, currency: str, mode: RoundingMode) -> Decimal:
    """Round ``value`` once to the currency's minor unit with the named mode."""
    exponent = Decimal(1).scaleb(-minor_unit(currency))
    with decimal.localcontext() as context:
        context.prec = 60
        return value.quantize(exponent, rounding=_DECIMAL_ROUNDING[mode])


def round_fraction(numerator: int, denominator: int, mode: RoundingMode) -> int:
    """Round the exact fraction numerator/denominator to an integer (denominator > 0).

    The engine's SQL implements the same rule on integers; this is the Python twin used by the
    reference calculator and the tests.
    """
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    sign = -1 if numerator < 0 else 1
    magnitude = abs(numerator)
    quotient, remainder = divmod(magnitude, denominator)
    twice = 2 * remainder
    if twice > denominator or (
        twice == denominator and (mode is RoundingMode.HALF_UP or quotient % 2 == 1)
    ):
        quotient += 1
    return sign * quotient
