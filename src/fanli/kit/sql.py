"""Quoting for the few values that must be written into SQL text (DuckDB file paths, names),
and lists of values bound in chunks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# SQLite binds some tens of thousands of parameters per statement at most (32,766 since 3.32):
# a list bound in ``IN (...)`` goes in chunks of this many.
BOUND_PER_STATEMENT = 10_000


def sql_literal(value: str | Path) -> str:
    """``value`` as a SQL string literal: in single quotes, inner quotes doubled."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_list(values: list[str] | list[Path]) -> str:
    """Comma-separated SQL string literals (for ``read_parquet([...])`` and ``IN (...)``)."""
    return ", ".join(sql_literal(value) for value in values)


def chunks(values: Sequence[T], size: int = BOUND_PER_STATEMENT) -> list[Sequence[T]]:
    """``values`` in consecutive slices of at most ``size`` (none for no values)."""
    return [values[i : i + size] for i in range(0, len(values), size)]
