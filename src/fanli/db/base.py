"""The declarative base, the naming convention for constraints, and the column types.

Money and measures are exact. PostgreSQL holds them as NUMERIC. SQLite has no exact decimal
type (its NUMERIC affinity turns values into 8-byte floats), so there ``Amount`` is stored as a
64-bit integer count of 10**-4 units: SQLite sums integers exactly and raises on overflow,
so ``SUM`` in SQL stays exact on both (ADR 0004).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import JSON, BigInteger, DateTime, MetaData, Numeric
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator, TypeEngine

from fanli.kit.money import FACT_SCALE

NAMING_CONVENTION: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_UNIT: Final = Decimal(1).scaleb(-FACT_SCALE)

# Foreign keys that PostgreSQL enforces with a statement-level trigger in place of the
# constraint (migration 0012, ADR 0004 decision 11). Their models declare them for SQLite only,
# and ``alembic check`` does not look for them on PostgreSQL.
CHECKED_BY_TRIGGER_ON_POSTGRESQL: Final = frozenset({"fk_journal_line_entry_id_journal_entry"})


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: Final[dict[Any, Any]] = {dict[str, Any]: JSON}


class Amount(TypeDecorator[Decimal]):
    """An exact decimal with four places: NUMERIC(22, 4), or scaled BIGINT on SQLite."""

    impl = Numeric(22, FACT_SCALE)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(22, FACT_SCALE, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            if isinstance(value, int) and not isinstance(value, bool):
                value = Decimal(value)
            else:
                raise TypeError(f"an amount must be a Decimal, not {type(value).__name__}")
        exact = value.quantize(_UNIT)
        if exact != value:
            raise ValueError(f"{value} has more than {FACT_SCALE} decimal places")
        if dialect.name == "sqlite":
            return int(exact.scaleb(FACT_SCALE))
        return exact

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-FACT_SCALE)
        return Decimal(value).quantize(_UNIT)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must carry a time zone")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        stamp: dt.datetime = value
        if stamp.tzinfo is None:
            return stamp.replace(tzinfo=dt.UTC)
        return stamp.astimezone(dt.UTC)
