"""The company's clock: the interfaces take ``now`` in FANLI_TIMEZONE, so the day a service
derives from it is the company's day (the services' side is tested where they use it, e.g.
expiring rebate balances in tests/store/test_settlements.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from fanli.config import Settings, company_now, company_zone


@pytest.fixture
def fresh_zone() -> Iterator[None]:
    company_zone.cache_clear()
    yield
    company_zone.cache_clear()


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/Los_Angeles", "Pacific/Kiritimati"])
def test_now_is_taken_in_the_company_zone(
    zone: str, fresh_zone: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FANLI_TIMEZONE", zone)
    before = dt.datetime.now(dt.UTC)
    now = company_now()
    after = dt.datetime.now(dt.UTC)
    assert now.tzinfo == ZoneInfo(zone)
    assert before <= now <= after  # the same instant, only seen from the company's zone
    # So its date is the zone's: Kiritimati (UTC+14) and Los Angeles (UTC-8/-7) are a day
    # apart from UTC for part of every day.
    assert now.date() == after.astimezone(ZoneInfo(zone)).date() or (
        now.date() == before.astimezone(ZoneInfo(zone)).date()
    )


def test_the_default_zone_is_shanghai(fresh_zone: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FANLI_TIMEZONE", raising=False)
    assert company_now().utcoffset() == dt.timedelta(hours=8)


def test_an_unknown_zone_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        Settings(timezone="Mars/Olympus")
