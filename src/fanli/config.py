"""Settings, read once from the environment (prefix ``FANLI_``) or given explicitly in tests.

``FANLI_DATABASE_URL`` selects the relational store (default: SQLite in the data directory);
``FANLI_DATA_DIR`` holds that database and the sales fact store (immutable Parquet per batch).
``FANLI_READ_CACHE_SIZE`` is how many bodies of hot API reads each server process keeps
(ADR 0007); 0 turns the cache off.
``FANLI_AUDIT_EVERY_MINUTES`` and ``FANLI_AUDIT_AS`` turn on the server's own schedule for the
periodic audit (and a signed checkpoint, when the signing key is in the data directory); off by
default, where cron does it (docs/audit.md).
``FANLI_TIMEZONE`` is the company's time zone (an IANA name; default Asia/Shanghai): where the
web pages show times, and where the business day turns. Times are stored in UTC.
"""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FANLI_")

    data_dir: Path = Path("fanli-data")
    database_url: str | None = None
    read_cache_size: int = Field(default=2_000, ge=0)
    audit_every_minutes: float = Field(default=0, ge=0)  # 0: no in-process schedule
    audit_as: str | None = None  # the internal auditor the scheduled runs act as
    timezone: str = "Asia/Shanghai"  # where times are shown and the day turns (stored in UTC)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name: Asia/Shanghai)") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'fanli.db').resolve()}"

    @property
    def facts_dir(self) -> Path:
        return self.data_dir / "facts"


@functools.cache
def company_zone() -> ZoneInfo:
    """The company's time zone (``FANLI_TIMEZONE``), read once per process."""
    return Settings().zone


def company_now() -> dt.datetime:
    """This instant in the company's time zone.

    The interfaces hand it to the services as ``now``. A service that needs "today" (a credit's
    validity, the policy in force, the posting day of a payout) takes ``now.date()``, which is
    then the company's day. Taken in UTC, that day would turn at 08:00 in Shanghai, and a credit
    would still be valid, or a policy not yet in force, for the first eight hours of a day.
    Stored timestamps are converted to UTC either way.
    """
    return dt.datetime.now(company_zone())
