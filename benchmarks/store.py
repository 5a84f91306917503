"""Store benchmarks: sales imports against DuckDB's raw read, and accrual runs against the engine.

    python -m benchmarks.store --sf 1 [--backends sqlite,postgresql] [--skip-import] [--repeat 5]

Each step is measured ``--repeat`` times from the same saved state (a copy of the store), and
so is its reference, alternating with it; the fastest of each is compared, and every time is
kept in the results.

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
from fanli.agreements.queries import DEFAULT_CURRENCY, terms_for_run
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
        _admin(f"DROP DATABASE IF EXISTS {_BENCH_DB} WITH (FORCE)", f"CREATE DATABASE {_BENCH_DB}")
        engine = make_engine(_postgres(_BENCH_DB))
    upgrade(engine)
    try:
        yield engine, FactStore(scratch / "facts")
    finally:
        engine.dispose()


_BENCH_DB = "fanli_bench"
_PRISTINE_DB = "fanli_bench_pristine"


def _postgres(database: str) -> str:
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + database


def _admin(*statements: str) -> None:
    admin = make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for statement in statements:
            connection.execute(text(statement))
    admin.dispose()


class _Snapshot:
    """A store as it was when saved, to measure one step several times from the same state:
    a copy of the SQLite file or a PostgreSQL template database, and the fact store's files
    (hard links: they are immutable, and new ones are written beside them). Any engine on the
    store must be disposed first: SQLite has then checkpointed its WAL into the file, and
    PostgreSQL copies only a database nobody is connected to."""

    def __init__(self, backend: str, scratch: Path) -> None:
        self.backend = backend
        self.scratch = scratch
        self.saved = Path(tempfile.mkdtemp(prefix="saved-", dir=scratch))
        if backend == "sqlite":
            shutil.copy2(scratch / "fanli.db", self.saved / "fanli.db")
        else:
            _admin(
                f"DROP DATABASE IF EXISTS {_PRISTINE_DB} WITH (FORCE)",
                f"CREATE DATABASE {_PRISTINE_DB} TEMPLATE {_BENCH_DB}",
            )
        shutil.copytree(scratch / "facts", self.saved / "facts", copy_function=os.link)

    def restore(self) -> Engine:
        """The store as saved, and an engine on it."""
        shutil.rmtree(self.scratch / "facts")
        shutil.copytree(self.saved / "facts", self.scratch / "facts", copy_function=os.link)
        if self.backend == "sqlite":
            for leftover in ("fanli.db-wal", "fanli.db-shm"):
                (self.scratch / leftover).unlink(missing_ok=True)
            shutil.copy2(self.saved / "fanli.db", self.scratch / "fanli.db")
            return make_engine(f"sqlite:///{self.scratch / 'fanli.db'}")
        _admin(
            f"DROP DATABASE IF EXISTS {_BENCH_DB} WITH (FORCE)",
            f"CREATE DATABASE {_BENCH_DB} TEMPLATE {_PRISTINE_DB}",
        )
        return make_engine(_postgres(_BENCH_DB))

    def drop(self) -> None:
        shutil.rmtree(self.saved, ignore_errors=True)
        if self.backend == "postgresql":
            _admin(f"DROP DATABASE IF EXISTS {_PRISTINE_DB} WITH (FORCE)")


def _trials(
    snapshot: _Snapshot, repeat: int, step: Callable[[Any], Any]
) -> tuple[list[float], Any, Engine]:
    """``step(sessions)`` timed ``repeat`` times, each from the saved state: the times, the
    last value, and the engine on the store the last trial left (the caller disposes it)."""
    samples: list[float] = []
    engine: Engine | None = None
    value: Any = None
    for _ in range(repeat):
        if engine is not None:
            engine.dispose()
        engine = snapshot.restore()
        seconds, value = _timed(lambda: step(session_factory(engine)))  # noqa: B023
        samples.append(seconds)
    assert engine is not None
    return samples, value, engine


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


def _import(path: Path, facts: FactStore) -> Callable[[Any], Any]:
    def step(sessions: Any) -> Any:
        with unit_of_work(sessions) as session:
            return import_sales(session, facts, path, actor=BENCH, now=NOW)

    return step


def bench_imports(dataset: Dataset, scratch_root: Path, repeat: int) -> dict[str, Any]:
    """Each import ``repeat`` times into the same store with its masters, alternating with the
    raw read and the plain rewrite: the fastest of each is compared."""
    figures: dict[str, Any] = {}
    for label, path in (("parquet", dataset.sales), ("csv", _csv_copy(dataset))):
        scratch = Path(tempfile.mkdtemp(dir=scratch_root))
        facts = FactStore(scratch / "facts")
        with _store("sqlite", scratch) as (engine, _):
            masters = _masters(session_factory(engine), facts, dataset)
        snapshot = _Snapshot("sqlite", scratch)
        raw, floor, imports = [], [], []
        outcome: Any = None
        for _ in range(repeat):
            raw.append(_raw_read(path))
            floor.append(_rewrite_floor(path, scratch))
            samples, outcome, engine = _trials(snapshot, 1, _import(path, facts))
            engine.dispose()
            imports.extend(samples)
        snapshot.drop()
        shutil.rmtree(scratch, ignore_errors=True)
        import_s, raw_s, floor_s = min(imports), min(raw), min(floor)
        figures[label] = {
            "file_mb": round(path.stat().st_size / 2**20, 1),
            "lines": outcome.rows,
            "import_s": round(import_s, 3),
            "lines_per_s": round(outcome.rows / import_s),
            "duckdb_raw_read_s": round(raw_s, 3),
            "ratio": round(import_s / raw_s, 2),
            "duckdb_plain_rewrite_s": round(floor_s, 3),
            "plain_rewrite_ratio": round(floor_s / raw_s, 2),
            "samples": {"import_s": _rounded(imports), "raw_read_s": _rounded(raw)},
            **masters,
        }
        print(
            f"import {label:7} {outcome.rows:,} lines, fastest of {repeat}: {import_s:6.2f} s "
            f"({outcome.rows / import_s:,.0f} lines/s; all {_listed(imports)}); DuckDB raw "
            f"read {raw_s:5.2f} s (all {_listed(raw)}); ratio {import_s / raw_s:.2f} "
            f"(target <= 2); DuckDB plain rewrite to Parquet {floor_s:5.2f} s = "
            f"{floor_s / raw_s:.2f}x the raw read",
            flush=True,
        )
    return figures


def _rounded(samples: list[float]) -> list[float]:
    return [round(sample, 3) for sample in samples]


def _listed(samples: list[float]) -> str:
    return " / ".join(f"{sample:.2f}" for sample in samples)


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


def _run(facts: FactStore) -> Callable[[Any], Any]:
    return lambda sessions: _accrue(sessions, facts)


def bench_accrual(
    dataset: Dataset, backend: str, scratch_root: Path, repeat: int
) -> dict[str, Any]:
    """Each run ``repeat`` times from the same saved store; the full run alternates with the
    pure engine. The fastest of each is compared."""
    scratch = Path(tempfile.mkdtemp(dir=scratch_root))
    facts = FactStore(scratch / "facts")
    agreements = benchmark_agreements()
    with _store(backend, scratch) as (engine, _):
        sessions = session_factory(engine)
        setup_s, _ = _timed(lambda: _load(sessions, facts, dataset, agreements))
        with unit_of_work(sessions) as session:
            customers = customer_table(session, facts)
            products = product_table(session, facts)
            terms = [version.terms for version in terms_for_run(session)]
            files = [str(path) for _, path in active_sales_files(session, facts)]
    snapshot = _Snapshot(backend, scratch)
    engine_samples, full_samples = [], []
    for _ in range(repeat):
        seconds, results = _timed(
            lambda: calculate(
                terms,
                sales=files,
                customers=customers,
                products=products,
                as_of=AS_OF,
                unstated_currency=DEFAULT_CURRENCY,  # as the store's runs read the lines
            )
        )
        engine_samples.append(seconds)
        samples, full, engine = _trials(snapshot, 1, _run(facts))
        full_samples.extend(samples)
        engine.dispose()
    with unit_of_work(session_factory(engine)) as session:
        import_sales(
            session, facts, _increment(dataset, scratch / "increment.parquet"), actor=BENCH, now=NOW
        )
    engine.dispose()
    snapshot.drop()
    snapshot = _Snapshot(backend, scratch)
    incremental_samples, incremental, engine = _trials(snapshot, repeat, _run(facts))
    rerun_s, rerun = _timed(lambda: _accrue(session_factory(engine), facts))
    # July closes; then 10,000 lines dated in it arrive: the next run posts their effect as
    # an adjustment, rating the keys they touch a second time on the sales as closed.
    with unit_of_work(session_factory(engine)) as session:
        close_period(session, "1998-07", actor=BENCH, now=NOW)
    late_batch = _increment(
        dataset, scratch / "late.parquet", prefix="LATE-", first=dt.date(1998, 7, 15)
    )
    with unit_of_work(session_factory(engine)) as session:
        import_sales(session, facts, late_batch, actor=BENCH, now=NOW)
    engine.dispose()
    snapshot.drop()
    snapshot = _Snapshot(backend, scratch)
    late_samples, late, engine = _trials(snapshot, repeat, _run(facts))
    with unit_of_work(session_factory(engine)) as session:
        adjusted = session.scalar(
            select(func.count())
            .select_from(JournalLine)
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .where(JournalEntry.run_id == late.run_id, JournalEntry.kind == "adjustment")
        )
    engine.dispose()
    snapshot.drop()
    shutil.rmtree(scratch, ignore_errors=True)
    engine_s, full_s = min(engine_samples), min(full_samples)
    incremental_s, late_s = min(incremental_samples), min(late_samples)
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
        "samples": {
            "engine_s": _rounded(engine_samples),
            "full_run_s": _rounded(full_samples),
            "incremental_run_s": _rounded(incremental_samples),
            "late_run_s": _rounded(late_samples),
        },
    }
    print(
        f"accrual {backend}, fastest of {repeat}: engine {engine_s:5.2f} s "
        f"({results.num_rows:,} rows; all {_listed(engine_samples)}); full run {full_s:6.2f} s "
        f"= {full_s / engine_s:.2f}x (target <= 2; all {_listed(full_samples)}; "
        f"{full.results_stored:,} results, {full.lines_posted:,} lines); incremental "
        f"{incremental_s:5.2f} s = {100 * incremental_s / full_s:.1f}% of full (target < 10%; "
        f"all {_listed(incremental_samples)}; {len(incremental.rerated)} versions, "
        f"{incremental.lines_posted:,} lines); re-run {rerun_s:.2f} s, {rerun.lines_posted} "
        f"lines; after a late batch in a closed month {late_s:5.2f} s = "
        f"{100 * late_s / full_s:.1f}% of full (all {_listed(late_samples)}; "
        f"{late.lines_posted:,} lines, {adjusted:,} of them adjustments)",
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
    parser.add_argument(
        "--repeat", type=int, default=5, help="measure each step this many times (fastest kept)"
    )
    args = parser.parse_args()
    dataset = prepare(args.sf)
    report: dict[str, Any] = {
        "sf": args.sf,
        "lines": dataset.lines,
        "as_of": str(AS_OF),
        "repeat": args.repeat,
    }
    scratch_root = Path(tempfile.mkdtemp(prefix="fanli-bench-store-"))
    try:
        if not args.skip_import:
            report["import"] = bench_imports(dataset, scratch_root, args.repeat)
        if not args.skip_accrual:
            backends = args.backends.split(",")
            if "postgresql" in backends and not _postgres_reachable():
                print(f"PostgreSQL is not reachable at {POSTGRES_URL}: its figures are skipped")
                backends.remove("postgresql")
            report["accrual"] = {
                backend: bench_accrual(dataset, backend, scratch_root, args.repeat)
                for backend in backends
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
