"""Validate the hand-written query (and the engine, when it runs) against the reference calculator.

The reference (``fanli.engine.reference.calculate_reference``) is plain Python with exact
fractions, row by row: fine for TPC-H SF 0.01 (60k lines), far too slow for SF 1. Passing here
is what makes the hand-written query a trustworthy yardstick at larger scale factors.

    python -m benchmarks.validate [--sf 0.01] [--engine]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.agreements import SEED, benchmark_agreements
from benchmarks.compare import compare
from benchmarks.handwritten import calculate as calculate_handwritten
from benchmarks.tpch import prepare
from fanli.engine.columnar import calculate
from fanli.engine.reference import calculate_reference
from fanli.engine.results import table_from_rows


def reference_table(sf: float, tpch_dir: Path | None = None) -> pa.Table:
    dataset = prepare(sf, tpch_dir=tpch_dir)
    return table_from_rows(
        calculate_reference(
            benchmark_agreements(),
            sales=pq.read_table(dataset.sales),
            customers=pq.read_table(dataset.customers),
            products=pq.read_table(dataset.products),
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, default=0.01)
    parser.add_argument("--tpch-dir", type=Path)
    parser.add_argument("--engine", action="store_true", help="check the engine as well")
    args = parser.parse_args()
    dataset = prepare(args.sf, tpch_dir=args.tpch_dir)
    agreements = benchmark_agreements()
    print(f"SF {args.sf:g}: {dataset.lines:,} lines, {len(agreements)} agreements (seed {SEED})")
    started = time.perf_counter()
    reference = reference_table(args.sf, args.tpch_dir)
    print(f"reference: {reference.num_rows:,} rows in {time.perf_counter() - started:.1f} s")
    hand = calculate_handwritten(
        agreements,
        sales=dataset.sales_files,
        customers=dataset.customers,
        products=dataset.products,
    )
    outcome = compare(hand, reference)
    print(f"hand-written vs reference: {outcome.describe()}")
    ok = outcome.identical
    if args.engine:
        engine = calculate(
            agreements,
            sales=dataset.sales_files,
            customers=pq.read_table(dataset.customers),
            products=pq.read_table(dataset.products),
        )
        engine_outcome = compare(engine, reference)
        print(f"engine vs reference: {engine_outcome.describe()}")
        ok = ok and engine_outcome.identical
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
