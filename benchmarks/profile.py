"""Where the engine spends its time: every SQL statement it runs, timed, slowest first.

The engine's DuckDB connection is wrapped (nothing in ``fanli`` changes) so that each
``execute``/``sql`` call is timed and its text kept; the slowest statements are then re-run under
``EXPLAIN ANALYZE`` on the same connection state, when ``--explain`` is given.

    python -m benchmarks.profile --sf 1 [--top 5] [--explain]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import duckdb
import pyarrow.parquet as pq

from benchmarks.agreements import benchmark_agreements
from benchmarks.tpch import prepare
from fanli.engine import columnar

_real_connect = duckdb.connect


class _Timed:
    """A DuckDB connection that records each statement's wall time."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, log: list[tuple[float, str]]):
        self._connection = connection
        self._log = log

    def _timed(self, method: str, query: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = getattr(self._connection, method)(query, *args, **kwargs)
        self._log.append((time.perf_counter() - started, query))
        return result

    def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return self._timed("execute", query, *args, **kwargs)

    def sql(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return self._timed("sql", query, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, default=1.0)
    parser.add_argument("--top", type=int, default=6)
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    dataset = prepare(args.sf)
    log: list[tuple[float, str]] = []
    kept: list[_Timed] = []

    def connect(*a: Any, **k: Any) -> _Timed:
        timed = _Timed(_real_connect(*a, **k), log)
        kept.append(timed)
        return timed

    columnar.duckdb.connect = connect  # type: ignore[assignment]
    started = time.perf_counter()
    table = columnar.calculate(
        benchmark_agreements(),
        sales=dataset.sales_files,
        customers=pq.read_table(dataset.customers),
        products=pq.read_table(dataset.products),
    )
    total = time.perf_counter() - started
    print(f"engine: {total:.2f} s, {table.num_rows:,} rows, {len(log)} statements")
    in_sql = sum(seconds for seconds, _ in log)
    print(f"in statements: {in_sql:.2f} s; outside them (Python, fetches): {total - in_sql:.2f} s")
    for seconds, query in sorted(log, key=lambda item: -item[0])[: args.top]:
        text = " ".join(query.split())
        print(f"\n{seconds:7.3f} s  {text[:600]}{' ...' if len(text) > 600 else ''}")
    columnar.duckdb.connect = _real_connect  # type: ignore[assignment]


if __name__ == "__main__":
    main()
