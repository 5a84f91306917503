"""TPC-H data as Fanli sales facts and customer/product dimensions, generated once and cached.

``tpchgen-cli`` writes the TPC-H tables as Parquet; DuckDB then shapes them into the files the
engine reads (the canonical shapes of ``fanli.engine.facts``, with integer ids):

- ``sales.parquet``: one invoice line per lineitem, with its order's customer and date;
- ``customers.parquet``: customer_id, name, segment (c_mktsegment), nation (nation name);
- ``products.parquet``: product_id, name, category (p_type), brand, manufacturer (p_mfgr).

Everything lands in ``benchmarks/data/sf<N>/`` (git-ignored). A ``prepared.json`` marker is
written last, so an interrupted preparation is redone rather than half-used.

    python -m benchmarks.tpch --sf 1 [--tpch-dir /work/tpch/sf1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data"
TPCH_TABLES = ("nation", "customer", "part", "orders", "lineitem")
# Rows per Parquet row group of the sales file. DuckDB reads a file in parallel by row group; at
# ~1M rows (SF1: 7 groups, SF10: 60) both threads stay busy to the end and the per-group overhead
# is negligible. The same file is read by the engine and by the hand-written query.
SALES_ROW_GROUP = 1_000_000
PREP_VERSION = 1  # bump when the prepared shape changes, so caches are rebuilt


@dataclass(frozen=True)
class Dataset:
    """Paths of one prepared scale factor."""

    sf: float
    directory: Path
    sales: Path
    customers: Path
    products: Path
    lines: int

    @property
    def sales_files(self) -> list[str]:
        return [str(self.sales)]


def sf_label(sf: float) -> str:
    """``1`` -> ``sf1``, ``0.01`` -> ``sf0.01`` (directory names)."""
    return f"sf{int(sf)}" if float(sf).is_integer() else f"sf{sf:g}"


def generate_tpch(sf: float, target: Path) -> Path:
    """Run tpchgen-cli into ``target`` unless its tables are already there."""
    if all((target / f"{table}.parquet").exists() for table in TPCH_TABLES):
        return target
    target.mkdir(parents=True, exist_ok=True)
    # The virtualenv's own copy first: `make bench` need not have the venv on PATH.
    local = Path(sys.executable).parent / "tpchgen-cli"
    cli = str(local) if local.exists() else shutil.which("tpchgen-cli") or "tpchgen-cli"
    print(f"generating TPC-H SF{sf:g} into {target} ...", flush=True)
    started = time.perf_counter()
    subprocess.run(
        [
            cli,
            "parquet",
            "-s",
            f"{sf:g}",
            "-o",
            str(target),
            "--tables",
            ",".join(TPCH_TABLES),
            "--overwrite",
        ],
        check=True,
    )
    print(f"  generated in {time.perf_counter() - started:.1f} s", flush=True)
    return target


def prepare(sf: float, *, tpch_dir: Path | None = None, data_dir: Path | None = None) -> Dataset:
    """Generate (if needed) and prepare the Fanli files of scale factor ``sf``; cached."""
    directory = (data_dir or DATA_DIR) / sf_label(sf)
    marker = directory / "prepared.json"
    sales = directory / "sales.parquet"
    customers = directory / "customers.parquet"
    products = directory / "products.parquet"
    if marker.exists():
        info = json.loads(marker.read_text())
        if info.get("version") == PREP_VERSION:
            return Dataset(sf, directory, sales, customers, products, int(info["lines"]))
    source = tpch_dir if tpch_dir is not None else generate_tpch(sf, directory / "tpch")
    source = source.resolve()
    for table in TPCH_TABLES:
        if not (source / f"{table}.parquet").exists():
            raise FileNotFoundError(f"{source / table}.parquet is missing")
    directory.mkdir(parents=True, exist_ok=True)
    print(f"preparing Fanli facts from {source} into {directory} ...", flush=True)
    started = time.perf_counter()

    def src(table: str) -> str:
        return f"read_parquet('{source / (table + '.parquet')}')"

    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SET memory_limit = '8GB'")
    con.execute(f"SET temp_directory = '{directory / 'tmp'}'")
    # Sales lines keep lineitem's order (by order key): chronologically mixed, as real import
    # batches of many customers are. DECIMAL(18,4) arithmetic is exact: price x (1 - discount)
    # has at most 4 places. A fully fulfilled order ('F') counts as paid on its order date.
    con.execute(
        f"""
        COPY (
            SELECT
                l.l_orderkey * 8 + l.l_linenumber              AS line_id,
                'invoice'                                      AS document_type,
                o.o_custkey                                    AS customer_id,
                l.l_partkey                                    AS product_id,
                o.o_orderdate                                  AS order_date,
                o.o_orderdate                                  AS invoice_date,
                CASE WHEN o.o_orderstatus = 'F' THEN o.o_orderdate END AS paid_date,
                CAST(l.l_quantity AS DECIMAL(18, 4))           AS quantity,
                CAST(l.l_extendedprice * (1 - l.l_discount) AS DECIMAL(18, 4)) AS net_amount,
                CAST(l.l_extendedprice AS DECIMAL(18, 4))      AS gross_amount,
                CAST(NULL AS VARCHAR)                          AS currency
            FROM {src("lineitem")} AS l
            JOIN {src("orders")} AS o ON o.o_orderkey = l.l_orderkey
            ORDER BY l.l_orderkey, l.l_linenumber
        ) TO '{sales}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {SALES_ROW_GROUP})
        """
    )
    con.execute(
        f"""
        COPY (
            SELECT c.c_custkey AS customer_id, c.c_name AS name,
                   c.c_mktsegment AS segment, n.n_name AS nation
            FROM {src("customer")} AS c JOIN {src("nation")} AS n ON n.n_nationkey = c.c_nationkey
            ORDER BY c.c_custkey
        ) TO '{customers}' (FORMAT parquet, COMPRESSION zstd)
        """
    )
    con.execute(
        f"""
        COPY (
            SELECT p_partkey AS product_id, p_name AS name, p_type AS category,
                   p_brand AS brand, p_mfgr AS manufacturer
            FROM {src("part")} ORDER BY p_partkey
        ) TO '{products}' (FORMAT parquet, COMPRESSION zstd)
        """
    )
    row = con.execute(f"SELECT count(*) FROM read_parquet('{sales}')").fetchone()
    assert row is not None
    lines = int(row[0])
    con.close()
    shutil.rmtree(directory / "tmp", ignore_errors=True)
    marker.write_text(
        json.dumps({"version": PREP_VERSION, "sf": sf, "lines": lines, "source": str(source)})
    )
    print(f"  prepared {lines:,} lines in {time.perf_counter() - started:.1f} s", flush=True)
    return Dataset(sf, directory, sales, customers, products, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, default=1.0)
    parser.add_argument("--tpch-dir", type=Path, help="existing tpchgen-cli parquet output")
    args = parser.parse_args()
    dataset = prepare(args.sf, tpch_dir=args.tpch_dir)
    print(f"{dataset.lines:,} lines: {dataset.sales}")


if __name__ == "__main__":
    main()
