"""The web UI's languages: Simplified Chinese and English.

The messages are Babel catalogs (``locale/<code>/LC_MESSAGES/messages.po``). They are compiled
in memory when the server starts, so no compiled file is committed or can go stale. Dates,
numbers and money are formatted by Babel in the chosen locale: ``¥1,234.50`` and
``2026年3月31日`` in Chinese, ``CN¥1,234.50`` and ``Mar 31, 2026`` in English.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib.resources import files
from io import BytesIO
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import (
    format_currency,
    format_decimal,
    format_percent,
    get_currency_symbol,
)
from babel.support import Translations

LOCALES = ("zh_CN", "en")  # the first is the default
NAMES = {"zh_CN": "简体中文", "en": "English"}
COOKIE = "fanli_lang"


@cache
def translations(code: str) -> Translations:
    source = files("fanli.interfaces.web").joinpath(f"locale/{code}/LC_MESSAGES/messages.po")
    with source.open("rb") as po:
        catalog = read_po(po, locale=code)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(fp=compiled)


def choose(cookie: str | None, accept_language: str) -> str:
    """The cookie's language if it is one of ours, else the browser's first that is."""
    if cookie in LOCALES:
        return cookie
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().replace("-", "_").lower()
        if tag.startswith("zh"):
            return "zh_CN"
        if tag.startswith("en"):
            return "en"
    return LOCALES[0]


DEFAULT_ZONE = "Asia/Shanghai"  # where times are shown, unless FANLI_TIMEZONE says otherwise


@dataclass(frozen=True)
class Lang:
    """One request's language: its messages and its formats. Times are stored in UTC and shown
    in ``zone``, the company's time zone; the date of a time is its date there."""

    code: str
    zone: str = DEFAULT_ZONE

    def _(self, message: str, **values: object) -> str:
        text = translations(self.code).gettext(message)
        return text.format(**values) if values else text

    def n_(self, singular: str, plural: str, count: Decimal | int, **values: object) -> str:
        """A message about ``count`` things, in the form the language gives that number: "1
        problem", "3 problems"; Chinese has one form. ``{count}`` is the number in the
        reader's format unless given. A decimal count is singular only when exactly one."""
        form = 1 if count == 1 else 2  # the catalogs' rules read an integer
        text = translations(self.code).ngettext(singular, plural, form)
        return text.format(**{"count": self.number(count), **values})

    def money(self, amount: Decimal | None, currency: str = "CNY") -> str:
        if amount is None:
            return "—"
        return format_currency(amount, currency, locale=self.code)

    def unit_price(self, amount: Decimal | None, currency: str = "CNY") -> str:
        """A rate per unit, with every place it has (up to six): ¥0.0015."""
        if amount is None:
            return "—"
        symbol = get_currency_symbol(currency, locale=self.code)
        return symbol + format_decimal(amount, format="#,##0.00####", locale=self.code)

    def number(self, value: Decimal | int | None) -> str:
        return "—" if value is None else format_decimal(value, locale=self.code)

    def percent(self, value: Decimal | None) -> str:
        """``value`` in percent points (2.5 is 2.5%)."""
        if value is None:
            return "—"
        return format_percent(value / 100, format="#,##0.##%", locale=self.code)

    def today(self) -> dt.date:
        """Today's date in the company's zone: the day balances expire and periods run on."""
        return dt.datetime.now(ZoneInfo(self.zone)).date()

    def date(self, value: dt.date | None) -> str:
        if isinstance(value, dt.datetime):  # a time: its date in the company's zone
            value = value.astimezone(ZoneInfo(self.zone)).date()
        return "—" if value is None else format_date(value, format="medium", locale=self.code)

    def month(self, code: str) -> str:
        """An accounting period's month (its code, 2026-10) as the reader writes it: 2026年10月,
        Oct 2026. A code that is not a month is shown as it is."""
        try:
            first = dt.date.fromisoformat(f"{code}-01")
        except ValueError:
            return code
        if self.code == "zh_CN":
            return f"{first.year}年{first.month}月"
        return format_date(first, format="MMM y", locale=self.code)

    def datetime(self, value: dt.datetime | None) -> str:
        if value is None:
            return "—"
        return format_datetime(value, format="medium", tzinfo=ZoneInfo(self.zone), locale=self.code)
