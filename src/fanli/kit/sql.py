"""Quoting for the few values that must be written into SQL text (DuckDB file paths, names)."""

from __future__ import annotations

from pathlib import Path


def sql_literal(value: str | Path) -> str:
    """``value`` as a SQL string literal: in single quotes, inner quotes doubled."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_list(values: list[str] | list[Path]) -> str:
    """Comma-separated SQL string literals (for ``read_parquet([...])`` and ``IN (...)``)."""
    return ", ".join(sql_literal(value) for value in values)
