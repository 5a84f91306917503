"""Engine benchmark: the columnar engine against the hand-written DuckDB query, on TPC-H facts.

    python -m benchmarks.engine --sf 1 [--sf 10] [--repeat N] [--tpch-root /work/tpch]

For each scale factor, in the same run:

- **engine**: ``fanli.engine.columnar.calculate`` from reading the Parquet facts (and the two
  dimension files) to holding the results as an Arrow table;
- **reference**: the hand-written query of ``benchmarks/handwritten.py`` (the yardstick), likewise.

Every measured run is a fresh child process (``--child``), so each engine's peak RSS is its own
(``ru_maxrss`` of that process, read right after the calculation) and no cache or allocator state
leaks from one engine into the other. The best of ``--repeat`` runs counts. The first run of each
writes its result to Parquet (untimed), and the two results must be identical, row for row, every
column to the cent; the process exits non-zero if they are not.

Writes ``benchmarks/results/engine.json`` (SF1) or ``engine_sf<N>.json`` and prints PASS/FAIL
against the targets (a missed speed target is reported, not fatal). A side that raises
``NotImplementedError`` (the hand-written query refuses terms it does not implement) is reported
as not available instead of failing the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.agreements import SEED, benchmark_agreements, summary
from benchmarks.compare import compare
from benchmarks.handwritten import calculate as calculate_handwritten
from benchmarks.tpch import BENCH_DIR, Dataset, prepare, sf_label
from fanli.engine.columnar import calculate

RESULTS_DIR = BENCH_DIR / "results"
THREADS = 2
NOT_IMPLEMENTED = 3  # child exit code: the engine raised NotImplementedError
MB = 1024 * 1024
# Targets (docs/benchmarks.md). GB here are GiB: 1.5 GB = 1536 MB of 2**20 bytes.
TARGETS: dict[float, dict[str, float]] = {
    1.0: {"ratio_max": 1.3, "lines_per_s_min": 4_000_000, "peak_rss_mb_max": 1.5 * 1024},
    10.0: {"engine_s_max": 25.0, "peak_rss_mb_max": 5 * 1024},
}


# ---- child: one measured calculation ------------------------------------------------------------


def _peak_rss_mb() -> float:
    """This process's own resident high-water mark, in MB.

    ``ru_maxrss`` is not used: Linux carries the parent's high-water mark into a forked child
    (and keeps it across exec), so a driver that had just generated the data made every child
    report the driver's peak. ``VmHWM`` belongs to the address space, which exec replaces.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # reported in kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def _child(kind: str, dataset: Dataset, out: Path | None) -> int:
    """Run one calculation in this (fresh) process and print its measurements as JSON."""
    agreements = benchmark_agreements()  # building the terms is not part of the calculation
    started = time.perf_counter()
    try:
        if kind == "engine":
            # Like the hand-written query, the engine leaves the rows unsorted here: the
            # comparison is of the calculation, and the results are compared as sets.
            table = calculate(
                agreements,
                sales=dataset.sales_files,
                customers=pq.read_table(dataset.customers),
                products=pq.read_table(dataset.products),
                ordered=False,
            )
        else:
            table = calculate_handwritten(
                agreements,
                sales=dataset.sales_files,
                customers=dataset.customers,
                products=dataset.products,
                threads=THREADS,
            )
    except NotImplementedError as error:
        print(json.dumps({"error": f"NotImplementedError: {error}"}))
        return NOT_IMPLEMENTED
    seconds = time.perf_counter() - started
    peak_mb = _peak_rss_mb()
    rows = table.num_rows
    if out is not None:
        pq.write_table(table, out)
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, "rows": rows}))
    return 0


# ---- parent ----------------------------------------------------------------------------------


@dataclass
class Measured:
    kind: str
    available: bool = True
    error: str | None = None
    times: list[float] | None = None
    peak_rss_mb: float = 0.0
    rows: int = 0
    result: Path | None = None

    @property
    def best(self) -> float:
        assert self.times
        return min(self.times)


def _run_child(kind: str, args: argparse.Namespace, sf: float, out: Path | None) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.engine", "--child", kind, "--sf", f"{sf:g}"]
    if args.tpch_root:
        command += ["--tpch-root", str(args.tpch_root)]
    if out is not None:
        command += ["--out", str(out)]
    completed = subprocess.run(
        command, capture_output=True, text=True, cwd=BENCH_DIR.parent, check=False
    )
    last = completed.stdout.strip().splitlines()[-1:] or ["{}"]
    try:
        report: dict[str, Any] = json.loads(last[0])
    except json.JSONDecodeError:
        report = {}
    if completed.returncode == NOT_IMPLEMENTED:
        report["not_implemented"] = True
    elif completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-15:]
        report["error"] = "\n".join(tail)
    return report


def _measure(kind: str, args: argparse.Namespace, sf: float, workdir: Path) -> Measured:
    measured = Measured(kind, times=[])
    for attempt in range(args.repeat):
        out = workdir / f"{kind}.parquet" if attempt == 0 else None
        report = _run_child(kind, args, sf, out)
        if report.get("not_implemented"):
            return Measured(kind, available=False, error=report.get("error", "not implemented"))
        if "error" in report:
            return Measured(kind, available=False, error=report["error"])
        assert measured.times is not None
        measured.times.append(float(report["seconds"]))
        measured.peak_rss_mb = max(measured.peak_rss_mb, float(report["peak_rss_mb"]))
        measured.rows = int(report["rows"])
        measured.result = measured.result or out
        print(
            f"  {kind:<10} run {attempt + 1}/{args.repeat}: {report['seconds']:.2f} s, "
            f"peak RSS {report['peak_rss_mb']:.0f} MB, {report['rows']:,} rows",
            flush=True,
        )
    return measured


def _compare_files(left: Path, right: Path, workdir: Path) -> tuple[bool, str]:
    """Compare two result files; at SF10 they hold ~65M rows, so DuckDB reads and may spill."""
    if pq.ParquetFile(left).metadata.num_rows <= 20_000_000:
        outcome = compare(pq.read_table(left), pq.read_table(right))
        return outcome.identical, outcome.describe()
    con = duckdb.connect()
    con.execute(f"SET threads = {THREADS}")
    con.execute("SET memory_limit = '12GB'")
    con.execute(f"SET temp_directory = '{workdir / 'spill'}'")
    con.execute("SET preserve_insertion_order = false")
    counts = []
    for a, b in ((left, right), (right, left)):
        row = con.execute(
            f"SELECT count(*) FROM (SELECT * FROM read_parquet('{a}') "
            f"EXCEPT ALL SELECT * FROM read_parquet('{b}'))"
        ).fetchone()
        assert row is not None
        counts.append(int(row[0]))
    rows = [pq.ParquetFile(path).metadata.num_rows for path in (left, right)]
    con.close()
    identical = counts == [0, 0] and rows[0] == rows[1]
    if identical:
        return True, f"identical: {rows[0]:,} rows, every column equal"
    return False, (
        f"DIFFERENT: {rows[0]:,} vs {rows[1]:,} rows; {counts[0]:,} only in the engine's, "
        f"{counts[1]:,} only in the reference's (run benchmarks.compare on smaller data for "
        "examples)"
    )


def _machine() -> dict[str, Any]:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_gb, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pa.__version__,
    }


def _targets(sf: float, report: dict[str, Any]) -> list[tuple[str, bool]]:
    checks: list[tuple[str, bool]] = []
    target = TARGETS.get(sf)
    if not target or report.get("engine_s") is None:
        return checks
    if "ratio_max" in target:
        checks.append((f"ratio <= {target['ratio_max']}", report["ratio"] <= target["ratio_max"]))
    if "lines_per_s_min" in target:
        checks.append(
            (
                f"lines/s >= {target['lines_per_s_min']:,.0f}",
                report["lines_per_s"] >= target["lines_per_s_min"],
            )
        )
    if "engine_s_max" in target:
        checks.append(
            (
                f"engine <= {target['engine_s_max']:g} s",
                report["engine_s"] <= target["engine_s_max"],
            )
        )
    if "peak_rss_mb_max" in target:
        checks.append(
            (
                f"peak RSS <= {target['peak_rss_mb_max']:,.0f} MB",
                report["peak_rss_mb"] <= target["peak_rss_mb_max"],
            )
        )
    return checks


def _benchmark(sf: float, args: argparse.Namespace) -> int:
    dataset = _dataset(sf, args.tpch_root)
    agreements = benchmark_agreements()
    print(f"\n== SF {sf:g}: {dataset.lines:,} lines; {summary(agreements)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fanli-bench-") as temp:
        workdir = Path(temp)
        engine = _measure("engine", args, sf, workdir) if not args.skip_engine else None
        hand = _measure("reference", args, sf, workdir)
        if not hand.available:
            print(f"hand-written query failed:\n{hand.error}")
            return 2
        identical: bool | None = None
        comparison = "engine not available"
        if engine is not None and engine.available:
            assert engine.result is not None
            assert hand.result is not None
            identical, comparison = _compare_files(engine.result, hand.result, workdir)
    report: dict[str, Any] = {
        "sf": sf,
        "lines": dataset.lines,
        "agreements": len(agreements),
        "agreement_seed": SEED,
        "threads": THREADS,
        "repeat": args.repeat,
        "reference": "hand-written DuckDB query, eligibility-map plan (benchmarks/handwritten.py)",
        "reference_s": round(hand.best, 3),
        "reference_runs_s": [round(t, 3) for t in hand.times or []],
        "reference_peak_rss_mb": round(hand.peak_rss_mb),
        "reference_lines_per_s": round(dataset.lines / hand.best),
        "result_rows": hand.rows,
        "engine_available": bool(engine and engine.available),
        "engine_s": None,
        "ratio": None,
        "lines_per_s": None,
        "peak_rss_mb": None,
        "identical": identical,
        "comparison": comparison,
        "machine": _machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if engine is not None and engine.available:
        report.update(
            engine_s=round(engine.best, 3),
            engine_runs_s=[round(t, 3) for t in engine.times or []],
            ratio=round(engine.best / hand.best, 3),
            lines_per_s=round(dataset.lines / engine.best),
            peak_rss_mb=round(engine.peak_rss_mb),
            engine_result_rows=engine.rows,
        )
    elif engine is not None:
        report["engine_error"] = engine.error
    checks = _targets(sf, report)
    report["targets"] = {name: ("PASS" if ok else "FAIL") for name, ok in checks}
    _print(report)
    RESULTS_DIR.mkdir(exist_ok=True)
    name = "engine.json" if sf == 1 else f"engine_{sf_label(sf)}.json"
    (RESULTS_DIR / name).write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {RESULTS_DIR / name}")
    if engine is not None and engine.available and not identical:
        return 1
    return 0


def _print(report: dict[str, Any]) -> None:
    lines = report["lines"]
    print(
        f"\nSF {report['sf']:g}: {lines:,} lines, {report['agreements']} agreements, "
        f"{report['result_rows']:,} result rows, {report['threads']} threads"
    )
    print(
        f"  reference (hand-written): {report['reference_s']:7.2f} s  "
        f"{report['reference_lines_per_s']:>12,} lines/s  "
        f"peak RSS {report['reference_peak_rss_mb']:,} MB"
    )
    if report["engine_available"]:
        print(
            f"  engine:                   {report['engine_s']:7.2f} s  "
            f"{report['lines_per_s']:>12,} lines/s  peak RSS {report['peak_rss_mb']:,} MB"
        )
        print(f"  ratio engine/reference:   {report['ratio']:.2f}")
    else:
        error = (report.get("engine_error") or "skipped").splitlines()[-1]
        print(f"  engine: not available ({error})")
    print(f"  results: {report['comparison']}")
    for name, verdict in report["targets"].items():
        print(f"  {verdict}  {name}")


def _dataset(sf: float, tpch_root: Path | None) -> Dataset:
    tpch_dir = None
    if tpch_root is not None and (tpch_root / sf_label(sf) / "lineitem.parquet").exists():
        tpch_dir = tpch_root / sf_label(sf)
    return prepare(sf, tpch_dir=tpch_dir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, action="append", help="scale factor (repeatable)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per engine; the best counts")
    parser.add_argument(
        "--tpch-root",
        type=Path,
        help="directory with already generated tpchgen-cli output in sf<N>/ (else generated)",
    )
    parser.add_argument("--skip-engine", action="store_true", help="measure the reference only")
    parser.add_argument("--child", choices=("engine", "reference"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    scale_factors = args.sf or [1.0]
    if args.child:
        return _child(args.child, _dataset(scale_factors[0], args.tpch_root), args.out)
    status = 0
    for sf in scale_factors:
        status = max(status, _benchmark(sf, args))
    return status


if __name__ == "__main__":
    sys.exit(main())
