"""Store benchmarks: sales imports against DuckDB's raw read, and accrual runs against the engine.

    python -m benchmarks.store --sf 1 [--backends sqlite,postgresql] [--skip-import]

1. **Import** of the TPC-H sales (SF1: 6,001,215 lines) from CSV and from Parquet through
   ``fanli.sales.service.import_sales``, into a fresh SQLite store each time. This is everything
   an import does: read, validate every row (known customers and products, decimals, dates),
   write the immutable Parquet batch, and register it. The reference, in the same run, is DuckDB
   reading the same file raw into a table (``CREATE TABLE AS SELECT * FROM read_csv/parquet``).
   Target: the import takes at most 2x the raw read.
2. **Full accrual run** on each backend, end to end: ``fanli.ledger.service.accrue`` over the 200
   benchmark agreements (activated versions in the store), as of the last order date. It reads
   the dimensions from the store, runs the engine, stores every result row, posts every
   journal line and commits (each run is timed with its commit). The reference, in the same
   run, is the pure engine on the same inputs (``calculate``, dimensions already in memory).
   Target: at most 2x.
3. **Incremental run** after a 10,000-line batch dated in the current month (copies of July 1998
   lines with new line ids and dates in the as-of month). Target: under 10% of the full run.
4. **Run after a late batch**: July 1998 closes, then 10,000 lines dated in it arrive; the next
   run posts their effect as adjustments, rating the keys they touch a second time on the sales
   as closed (ADR 0010). Measured against the full run; no target.

Results go to ``benchmarks/results/store.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import Engine, func, select, text

from benchmarks.agreements import benchmark_agreements
from benchmarks.tpch import Dataset, prepare
from fanli.agreements.queries import terms_for_run
from fanli.agreements.service import add_version
from fanli.agreements.terms import Contract
from fanli.compliance import review
from fanli.compliance.policy import Policy
from fanli.compliance.service import publish
from fanli.db.migrate import upgrade
from fanli.db.session import make_engine, session_factory, unit_of_work
from fanli.engine.columnar import calculate
from fanli.ledger.dimensions import customer_table, product_table
from fanli.ledger.models import JournalEntry, JournalLine
from fanli.ledger.periods import close_period
from fanli.ledger.service import accrue
from fanli.sales.service import active_sales_files, import_customers, import_products, import_sales
from fanli.sales.store import FactStore
from fanli.users.actor import Actor, Role
from fanli.users.queries import as_actor
from fanli.users.service import create_user

RESULTS = Path(__file__).parent / "results"
POSTGRES_URL = os.environ.get("FANLI_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
NOW = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
AS_OF = dt.date(1998, 8, 2)  # TPC-H's last order date: "the current month" is August 1998
INCREMENT_LINES = 10_000

# The benchmark's actor: finance and sales, which is all its imports, drafts and runs need.
BENCH = Actor(id=0, code="bench", roles=frozenset({Role.FINANCE, Role.SALES}))


def _timed(step: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = step()
    return time.perf_counter() - started, value


@contextmanager
def _store(backend: str, scratch: Path) -> Iterator[tuple[Engine, FactStore]]:
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{scratch / 'fanli.db'}")
    else:
        admin = make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text("DROP DATABASE IF EXISTS fanli_bench WITH (FORCE)"))
            connection.execute(text("CREATE DATABASE fanli_bench"))
        admin.dispose()
        engine = make_engine(POSTGRES_URL.rsplit("/", 1)[0] + "/fanli_bench")
    upgrade(engine)
    try:
        yield engine, FactStore(scratch / "facts")
    finally:
        engine.dispose()


def _postgres_reachable() -> bool:
    engine = make_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return True
    except Exception:  # any failure means: not reachable
        return False
    finally:
        engine.dispose()


def _csv_copy(dataset: Dataset) -> Path:
    path = dataset.directory / "sales.csv"
    if not path.exists():
        print(f"writing {path} ...", flush=True)
        duckdb.sql(f"COPY (SELECT * FROM read_parquet('{dataset.sales}')) TO '{path}' (HEADER)")
    return path


def _raw_read(path: Path) -> float:
    reader = "read_csv" if path.suffix == ".csv" else "read_parquet"
    connection = duckdb.connect()
    connection.execute("SET threads = 2")
    seconds, _ = _timed(
        lambda: connection.execute(f"CREATE TABLE raw AS SELECT * FROM {reader}('{path}')")
    )
    rows = connection.execute("SELECT count(*) FROM raw").fetchone()
    connection.close()
    assert rows is not None
    return seconds


def _rewrite_floor(path: Path, scratch: Path) -> float:
    """DuckDB copying the same file into one zstd Parquet file, unsorted and unchecked: the least
    an import costs that keeps its own immutable Parquet copy of the lines (DESIGN.md)."""
    reader = "read_csv" if path.suffix == ".csv" else "read_parquet"
    connection = duckdb.connect()
    connection.execute("SET threads = 2")
    target = scratch / "floor.parquet"
    seconds, _ = _timed(
        lambda: connection.execute(
            f"COPY (SELECT * FROM {reader}('{path}')) TO '{target}' "
            "(FORMAT parquet, COMPRESSION zstd)"
        )
    )
    connection.close()
    target.unlink()
    return seconds


def _masters(sessions: Any, facts: FactStore, dataset: Dataset) -> dict[str, float]:
    with unit_of_work(sessions) as session:
        customers_s, _ = _timed(
            lambda: import_customers(session, facts, dataset.customers, actor=BENCH, now=NOW)
        )
        products_s, _ = _timed(
            lambda: import_products(session, facts, dataset.products, actor=BENCH, now=NOW)
        )
    return {"customers_s": round(customers_s, 3), "products_s": round(products_s, 3)}


def bench_imports(dataset: Dataset, scratch_root: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for label, path in (("parquet", dataset.sales), ("csv", _csv_copy(dataset))):
        raw_s = _raw_read(path)
        scratch = Path(tempfile.mkdtemp(dir=scratch_root))
        floor_s = _rewrite_floor(path, scratch)
        with _store("sqlite", scratch) as (engine, facts):
            sessions = session_factory(engine)
            masters = _masters(sessions, facts, dataset)
            with unit_of_work(sessions) as session:
                import_s, outcome = _timed(
                    lambda: import_sales(session, facts, path, actor=BENCH, now=NOW)  # noqa: B023
                )
        shutil.rmtree(scratch, ignore_errors=True)
        figures[label] = {
            "file_mb": round(path.stat().st_size / 2**20, 1),
            "lines": outcome.rows,
            "import_s": round(import_s, 3),
            "lines_per_s": round(outcome.rows / import_s),
            "duckdb_raw_read_s": round(raw_s, 3),
            "ratio": round(import_s / raw_s, 2),
            "duckdb_plain_rewrite_s": round(floor_s, 3),
            "plain_rewrite_ratio": round(floor_s / raw_s, 2),
            **masters,
        }
        print(
            f"import {label:7} {outcome.rows:,} lines: {import_s:6.2f} s "
            f"({outcome.rows / import_s:,.0f} lines/s); DuckDB raw read {raw_s:5.2f} s; "
            f"ratio {import_s / raw_s:.2f} (target <= 2); DuckDB plain rewrite to Parquet "
            f"{floor_s:5.2f} s = {floor_s / raw_s:.2f}x the raw read",
            flush=True,
        )
    return figures


def _increment(
    dataset: Dataset, out: Path, *, prefix: str = "INC-", first: dt.date = dt.date(1998, 8, 1)
) -> Path:
    """10,000 lines: July 1998 lines with new ids, dated on ``first`` and the day after (by
    default in August 1998, up to the as-of day)."""
    duckdb.sql(
        f"""COPY (
            SELECT '{prefix}' || row_number() OVER () AS line_id, document_type, customer_id,
                   product_id, DATE '{first}' + CAST(row_number() OVER () % 2 AS INTEGER)
                     AS order_date,
                   DATE '{first}' + CAST(row_number() OVER () % 2 AS INTEGER)
                     AS invoice_date,
                   NULL::DATE AS paid_date, quantity, net_amount, gross_amount, currency
            FROM read_parquet('{dataset.sales}')
            WHERE invoice_date >= DATE '1998-07-01'
            ORDER BY line_id LIMIT {INCREMENT_LINES}
        ) TO '{out}' (FORMAT parquet)"""
    )
    return out


def _accrue(sessions: Any, facts: FactStore) -> Any:
    """One accrual run end to end: its own transaction, committed (the commit writes and syncs
    the WAL on SQLite, so it belongs to the run's time)."""
    with unit_of_work(sessions) as session:
        return accrue(session, facts, as_of=AS_OF, actor=BENCH, now=NOW)


def bench_accrual(dataset: Dataset, backend: str, scratch_root: Path) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(dir=scratch_root))
    agreements = benchmark_agreements()
    with _store(backend, scratch) as (engine, facts):
        sessions = session_factory(engine)
        setup_s, _ = _timed(lambda: _load(sessions, facts, dataset, agreements))
        with unit_of_work(sessions) as session:
            customers = customer_table(session, facts, on=AS_OF)
            products = product_table(session, facts)
            terms = [version.terms for version in terms_for_run(session)]
            files = [str(path) for _, path in active_sales_files(session, facts)]
        engine_s, results = _timed(
            lambda: calculate(
                terms, sales=files, customers=customers, products=products, as_of=AS_OF
            )
        )
        full_s, full = _timed(lambda: _accrue(sessions, facts))
        increment = _increment(dataset, scratch / "increment.parquet")
        with unit_of_work(sessions) as session:
            import_sales(session, facts, increment, actor=BENCH, now=NOW)
        incremental_s, incremental = _timed(lambda: _accrue(sessions, facts))
        rerun_s, rerun = _timed(lambda: _accrue(sessions, facts))
        # July closes; then 10,000 lines dated in it arrive: the next run posts their effect as
        # an adjustment, rating the keys they touch a second time on the sales as closed.
        with unit_of_work(sessions) as session:
            close_period(session, "1998-07", actor=BENCH, now=NOW)
        late_batch = _increment(
            dataset, scratch / "late.parquet", prefix="LATE-", first=dt.date(1998, 7, 15)
        )
        with unit_of_work(sessions) as session:
            import_sales(session, facts, late_batch, actor=BENCH, now=NOW)
        late_s, late = _timed(lambda: _accrue(sessions, facts))
        with unit_of_work(sessions) as session:
            adjusted = session.scalar(
                select(func.count())
                .select_from(JournalLine)
                .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
                .where(JournalEntry.run_id == late.run_id, JournalEntry.kind == "adjustment")
            )
    shutil.rmtree(scratch, ignore_errors=True)
    figures = {
        "setup_s": round(setup_s, 2),
        "engine_s": round(engine_s, 3),
        "engine_rows": results.num_rows,
        "full_run_s": round(full_s, 3),
        "full_ratio": round(full_s / engine_s, 2),
        "full_results_stored": full.results_stored,
        "full_lines_posted": full.lines_posted,
        "incremental_run_s": round(incremental_s, 3),
        "incremental_share": round(incremental_s / full_s, 3),
        "incremental_rerated_versions": len(incremental.rerated),
        "incremental_lines_posted": incremental.lines_posted,
        "rerun_s": round(rerun_s, 3),
        "rerun_lines_posted": rerun.lines_posted,
        "late_run_s": round(late_s, 3),
        "late_share": round(late_s / full_s, 3),
        "late_lines_posted": late.lines_posted,
        "late_adjustment_lines": adjusted,
    }
    print(
        f"accrual {backend:10}: engine {engine_s:5.2f} s ({results.num_rows:,} rows); full run "
        f"{full_s:6.2f} s = {full_s / engine_s:.2f}x (target <= 2; {full.results_stored:,} "
        f"results, {full.lines_posted:,} lines); incremental {incremental_s:5.2f} s = "
        f"{100 * incremental_s / full_s:.1f}% of full (target < 10%; "
        f"{len(incremental.rerated)} versions, {incremental.lines_posted:,} lines); "
        f"re-run {rerun_s:.2f} s, {rerun.lines_posted} lines; after a late batch in a closed "
        f"month {late_s:5.2f} s = {100 * late_s / full_s:.1f}% of full ({late.lines_posted:,} "
        f"lines, {adjusted:,} of them adjustments)",
        flush=True,
    )
    return figures


def _approval_path(session: Any) -> tuple[Any, Any]:
    """The people and the policy that let the benchmark's programmes be approved: every
    version goes through submission and approval, as in production."""
    admin = as_actor(
        create_user(session, "admin", name="Admin", roles=[Role.ADMINISTRATOR], actor=None, now=NOW)
    )
    people = {
        code: as_actor(create_user(session, code, name=code, roles=[role], actor=admin, now=NOW))
        for code, role in (
            ("sales", Role.SALES),
            ("approver", Role.APPROVER),
            ("compliance", Role.COMPLIANCE),
        )
    }
    policy = Policy.model_validate(
        {
            "title": "benchmark policy",
            "text": "No rate limits: the benchmark measures the calculation, not the policy.",
            "settlement_forms": ["credit_note"],
            "agreement_approval": [{"role": "approver"}],
            "settlement_approval": [{"from": "0", "steps": [{"role": "approver"}]}],
        }
    )
    publish(session, policy, actor=people["compliance"], now=NOW)
    return people["sales"], people["approver"]


def _load(sessions: Any, facts: FactStore, dataset: Dataset, agreements: list[Any]) -> None:
    _masters(sessions, facts, dataset)
    with unit_of_work(sessions) as session:
        sales, approver = _approval_path(session)
        contract = Contract(reference="BENCH", document_sha256="0" * 64)
        for terms in agreements:
            version = add_version(
                session, terms.model_copy(update={"contract": contract}), actor=BENCH, now=NOW
            )
            review.submit(session, version.id, actor=sales, now=NOW)
            review.approve(
                session, version.id, terms_hash=version.terms_hash, actor=approver, now=NOW
            )
    with unit_of_work(sessions) as session:
        import_sales(session, facts, dataset.sales, actor=BENCH, now=NOW)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, default=1.0)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--skip-accrual", action="store_true")
    args = parser.parse_args()
    dataset = prepare(args.sf)
    report: dict[str, Any] = {"sf": args.sf, "lines": dataset.lines, "as_of": str(AS_OF)}
    scratch_root = Path(tempfile.mkdtemp(prefix="fanli-bench-store-"))
    try:
        if not args.skip_import:
            report["import"] = bench_imports(dataset, scratch_root)
        if not args.skip_accrual:
            backends = args.backends.split(",")
            if "postgresql" in backends and not _postgres_reachable():
                print(f"PostgreSQL is not reachable at {POSTGRES_URL}: its figures are skipped")
                backends.remove("postgresql")
            report["accrual"] = {
                backend: bench_accrual(dataset, backend, scratch_root) for backend in backends
            }
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)
    report["measured_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"store{'' if args.sf == 1 else '_sf' + str(args.sf)}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
