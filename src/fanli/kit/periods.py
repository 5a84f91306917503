"""Half-open periods ``[start, end)`` and the calendar splits Fanli calculates on.

Calculation periods follow the calendar (a quarter is January-March, April-June, ...) and are
clipped to the agreement term, so a term starting on 15 February has a first quarter
[15 Feb, 1 Apr).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from fanli.kit.errors import InputError

# The days Fanli keeps: sales, as-of days, accounting periods. Python's dates end in 9999, and
# a day's rebate period, its prior year and the month after it must stay inside them.
FIRST_DAY = dt.date(1900, 1, 1)
LAST_DAY = dt.date(9998, 12, 31)


def kept_day(day: dt.date, *, field: str, last: dt.date = LAST_DAY) -> dt.date:
    """``day``, refused when it is outside the days Fanli keeps (``last`` may be later for an
    end that only means "never")."""
    if not FIRST_DAY <= day <= last:
        raise InputError.said_at(
            "{day} is outside the days Fanli keeps ({first} to {last})",
            field=field,
            day=day,
            first=FIRST_DAY,
            last=last,
        )
    return day


class PeriodKind(StrEnum):
    """Length of a calculation period."""

    MONTH = "month"
    QUARTER = "quarter"
    HALF = "half"
    YEAR = "year"
    CUSTOM = "custom"


MONTHS_PER_KIND: dict[PeriodKind, int] = {
    PeriodKind.MONTH: 1,
    PeriodKind.QUARTER: 3,
    PeriodKind.HALF: 6,
    PeriodKind.YEAR: 12,
}


@dataclass(frozen=True, order=True)
class Period:
    """A half-open date range ``[start, end)``."""

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"period end {self.end} must be after its start {self.start}")

    def __contains__(self, day: object) -> bool:
        return isinstance(day, dt.date) and self.start <= day < self.end

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def label(self) -> str:
        """``2026-01-01..2026-04-01``: unambiguous, sortable, half-open."""
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


def add_months(day: dt.date, months: int) -> dt.date:
    """First day of the month ``months`` after ``day``'s month (``day`` must be a 1st)."""
    index = day.year * 12 + (day.month - 1) + months
    return dt.date(index // 12, index % 12 + 1, 1)


def shift_years(day: dt.date, years: int) -> dt.date:
    """Same calendar day ``years`` later; 29 February becomes 1 March in a common year."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return dt.date(day.year + years, 3, 1)


def calendar_periods(term: Period, kind: PeriodKind) -> list[Period]:
    """Split ``term`` into calendar months, quarters, halves or years, clipped to the term."""
    step = MONTHS_PER_KIND[kind]
    first_month_index = term.start.year * 12 + term.start.month - 1
    aligned_index = first_month_index - (first_month_index % step)
    boundary = dt.date(aligned_index // 12, aligned_index % 12 + 1, 1)
    periods: list[Period] = []
    while boundary < term.end:
        following = add_months(boundary, step)
        start = max(boundary, term.start)
        end = min(following, term.end)
        if start < end:
            periods.append(Period(start, end))
        boundary = following
    return periods
