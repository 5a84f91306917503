"""Compare two result tables (RESULT_SCHEMA) row for row, to the cent, with DuckDB.

Rows are matched as whole tuples (EXCEPT ALL both ways), so row order never matters and a
difference in any column — an amount, a tier, a count — shows up, with a few examples keyed by
agreement x beneficiary x period for the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from fanli.engine.results import RESULT_SCHEMA

KEY = ("agreement_id", "version", "beneficiary_id", "period_index")


@dataclass
class Comparison:
    """Outcome of comparing ``left`` with ``right``."""

    left_rows: int
    right_rows: int
    only_left: int  # rows of left with no identical row in right
    only_right: int
    columns_differing: dict[str, int] = field(default_factory=dict)  # among rows matched by key
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.only_left == 0 and self.only_right == 0 and self.left_rows == self.right_rows

    def describe(self) -> str:
        if self.identical:
            return f"identical: {self.left_rows:,} rows, every column equal"
        lines = [
            f"DIFFERENT: {self.left_rows:,} vs {self.right_rows:,} rows; "
            f"{self.only_left:,} rows only in the first, {self.only_right:,} only in the second"
        ]
        if self.columns_differing:
            lines.append(f"  columns differing (rows with the same key): {self.columns_differing}")
        lines.extend(f"  {example}" for example in self.examples)
        return "\n".join(lines)


def compare(left: pa.Table, right: pa.Table, *, examples: int = 5) -> Comparison:
    """Row-for-row comparison of two result tables on every RESULT_SCHEMA column."""
    columns = RESULT_SCHEMA.names
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.register("l", left.select(columns).cast(RESULT_SCHEMA))
    con.register("r", right.select(columns).cast(RESULT_SCHEMA))
    listed = ", ".join(columns)

    def scalar(sql: str) -> int:
        row = con.execute(sql).fetchone()
        assert row is not None
        return int(row[0])

    only_left = scalar(
        f"SELECT count(*) FROM (SELECT {listed} FROM l EXCEPT ALL SELECT {listed} FROM r)"
    )
    only_right = scalar(
        f"SELECT count(*) FROM (SELECT {listed} FROM r EXCEPT ALL SELECT {listed} FROM l)"
    )
    result = Comparison(left.num_rows, right.num_rows, only_left, only_right)
    if result.identical:
        con.close()
        return result
    on = " AND ".join(f"l.{name} = r.{name}" for name in KEY)
    others = [name for name in columns if name not in KEY]
    counts = ", ".join(
        f"count(*) FILTER (WHERE l.{name} IS DISTINCT FROM r.{name}) AS {name}" for name in others
    )
    row = con.execute(f"SELECT {counts} FROM l JOIN r ON {on}").fetchone()
    assert row is not None
    result.columns_differing = {
        name: int(value) for name, value in zip(others, row, strict=True) if value
    }
    differing = " OR ".join(f"l.{name} IS DISTINCT FROM r.{name}" for name in others)
    shown = ", ".join(f"l.{name} AS {name}" for name in KEY)
    pairs = ", ".join(
        f"CASE WHEN l.{name} IS DISTINCT FROM r.{name} THEN "
        f"coalesce(CAST(l.{name} AS VARCHAR), 'NULL') || ' vs ' || "
        f"coalesce(CAST(r.{name} AS VARCHAR), 'NULL') END AS {name}"
        for name in others
    )
    cursor = con.execute(
        f"SELECT {shown}, {pairs} FROM l JOIN r ON {on} WHERE {differing} "
        f"ORDER BY ALL LIMIT {examples}"
    )
    names = [description[0] for description in cursor.description]
    for values in cursor.fetchall():
        result.examples.append(
            {name: value for name, value in zip(names, values, strict=True) if value is not None}
        )
    key = ", ".join(KEY)
    missing = con.execute(
        f"SELECT 'only in first' AS side, {key} FROM l ANTI JOIN r USING ({key}) "
        f"UNION ALL SELECT 'only in second', {key} FROM r ANTI JOIN l USING ({key}) "
        f"ORDER BY ALL LIMIT {examples}"
    )
    names = [description[0] for description in missing.description]
    result.examples.extend(dict(zip(names, values, strict=True)) for values in missing.fetchall())
    con.close()
    return result
