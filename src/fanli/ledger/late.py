"""Late changes to closed periods: the part of a run's change that it posts as an adjustment.

A closed accounting period keeps the results of the run it closed after (its
``closed_after_run_id``): the sales batches that run read, up to that run's as-of day. (The
months before it that have no period of their own closed with it: periods close in order, and
nothing posts before the latest close.)

An agreement counts a line on the date of its eligibility event: the order, invoice or paid
date; so is the line dated, here. A line dated in a closed period is *as closed* when that
period's run counted it: its batch was one of the run's and the line is dated on or before the
run's as-of day. A line dated outside the closed periods is as closed when its batch is
active. The lines that count now but are not as closed are late sales; those as closed that no
longer count (their batch was voided after the close) are late voids (ADR 0010).

A run rates the keys a late change can move twice: on the lines that count now, and on the
lines as closed. The difference is the effect of the late changes, which the run posts as an
adjustment; the rest of its change is an ordinary accrual. Under a tiered rate the late lines'
share is their effect at the margin: what the rebate is with them less what it would be
without them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pyarrow as pa
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from fanli.engine.facts import SALES_SCHEMA
from fanli.kit import duck
from fanli.kit.periods import FIRST_DAY
from fanli.kit.sql import chunks, sql_list
from fanli.ledger.models import AccrualRun, VersionFirstRun
from fanli.ledger.periods import closed_periods
from fanli.sales.models import BatchKind, BatchStatus, ImportBatch
from fanli.sales.store import FactStore


@dataclass(frozen=True)
class ClosedMonth:
    """A closed accounting period and what its frozen results counted."""

    code: str
    start: dt.date  # the previous closed period's end: months without a period closed with it
    end: dt.date  # exclusive
    run_id: int | None  # the run it closed after; None: closed before any run
    as_of: dt.date | None  # that run's as-of day
    batches: frozenset[int]  # that run's sales batches
    # that run's agreement versions: those the period's results held (``as_each_saw_them``)
    versions: frozenset[int] = frozenset()


@dataclass(frozen=True)
class SalesBatch:
    id: int
    path: Path  # the batch's facts file
    first: dt.date | None  # its earliest and latest date of any kind
    last: dt.date | None
    active: bool


@dataclass(frozen=True)
class LateChanges:
    """The batches with a late sale or a late void, and the customers of those lines, per date
    column a line can be dated by (``invoice_date``...)."""

    months: list[ClosedMonth]
    batches: list[SalesBatch]
    customers: dict[str, list[str]]


def sales_batches(session: Session, store: FactStore) -> list[SalesBatch]:
    """Every sales batch with its facts file, voided ones too, by id."""
    return [
        SalesBatch(
            batch.id,
            store.path(batch.facts_file),
            batch.first_date,
            batch.last_date,
            active=batch.status == BatchStatus.ACTIVE,
        )
        for batch in session.scalars(
            select(ImportBatch).where(ImportBatch.kind == BatchKind.SALES).order_by(ImportBatch.id)
        )
        if batch.facts_file
    ]


def closed_months(session: Session) -> list[ClosedMonth]:
    """The closed periods, by start, each with what the run it closed after counted."""
    periods = closed_periods(session)
    run_ids = {p.closed_after_run_id for p in periods if p.closed_after_run_id is not None}
    runs = {
        run.id: run for run in session.scalars(select(AccrualRun).where(AccrualRun.id.in_(run_ids)))
    }
    months = []
    # Periods close in order and nothing posts before the latest close: the months before a
    # closed one with no period of their own (nothing was posted in them) closed with it.
    start = FIRST_DAY
    for period in periods:
        run = runs.get(period.closed_after_run_id) if period.closed_after_run_id else None
        months.append(
            ClosedMonth(
                code=period.code,
                start=start,
                end=period.end,
                run_id=run.id if run else None,
                as_of=run.as_of if run else None,
                batches=frozenset(int(i) for i in run.inputs["sales_batches"])
                if run
                else frozenset(),
                versions=frozenset(int(i) for i in run.inputs["versions"]) if run else frozenset(),
            )
        )
        start = period.end
    return months


def as_each_saw_them(
    session: Session,
    months: Sequence[ClosedMonth],
    windows: Mapping[int, tuple[dt.date, dt.date]],
) -> dict[int, tuple[ClosedMonth, ...]]:
    """Per version (``windows``: the first day a version's results read a sale of, and the
    day it stops counting, by id), the closed months as that version's results first held them.

    A closed month's results are those of the run it closed after, for the versions that run
    held. A version that run did not hold (approved after the close, say) first held the
    month's sales at its first run (``VersionFirstRun``): the lines of the batches that run
    read, whatever their date, are its sales as closed for the month, and only a change after
    that run is late for it. Without a first run yet (the run under way is its first) no
    change to the month is late for it, and the month is left out: its lines are as closed
    when their batch is active. So a programme approved after a month closed accrues the
    month's sales as they stand when it is first rated, never as an adjustment of a closed
    period that held nothing of it (ADR 0010, as amended). Months a version reads no sale of
    stay as they are."""
    pending = {
        (index, version)
        for index, month in enumerate(months)
        for version, (first, until) in windows.items()
        if version not in month.versions and first < month.end and until > month.start
    }
    firsts: dict[int, int] = {}
    runs: dict[int, tuple[dt.date, frozenset[int]]] = {}
    if pending:
        ids = sorted({version for _, version in pending})
        firsts = dict(
            session.execute(
                select(VersionFirstRun.version_id, VersionFirstRun.run_id).where(
                    VersionFirstRun.version_id.in_(ids)
                )
            ).all()
        )
        for run_id, as_of, batches in session.execute(
            select(AccrualRun.id, AccrualRun.as_of, AccrualRun.inputs["sales_batches"]).where(
                AccrualRun.id.in_(sorted(set(firsts.values())))
            )
        ):
            runs[run_id] = (as_of, frozenset(int(i) for i in batches))

    def seen(index: int, month: ClosedMonth, version: int) -> ClosedMonth | None:
        if (index, version) not in pending:
            return month
        first = firsts.get(version)
        if first is None:
            return None  # this run is its first: nothing of the month is late for it
        if first <= (month.run_id or 0):
            return month  # held before the close (cannot happen to a version still rated)
        as_of, batches = runs[first]
        # Its first run's view of the month, whole: a line of that run's batches dated after
        # its as-of day (a run back in time) was there all the same, not late.
        return replace(
            month,
            run_id=first,
            as_of=max(as_of, month.end - dt.timedelta(days=1)),
            batches=batches,
        )

    return {
        version: tuple(
            month
            for month in (seen(index, month, version) for index, month in enumerate(months))
            if month is not None
        )
        for version in windows
    }


def record_first_runs(session: Session, run_id: int, version_ids: Sequence[int]) -> None:
    """Note this run as the first to hold each of these versions that no run held before."""
    held: set[int] = set()
    for chunk in chunks(sorted(version_ids)):
        held.update(
            session.scalars(
                select(VersionFirstRun.version_id).where(VersionFirstRun.version_id.in_(chunk))
            )
        )
    new = [version for version in sorted(version_ids) if version not in held]
    if new:
        session.execute(insert(VersionFirstRun), [{"version_id": v, "run_id": run_id} for v in new])


def covered(months: Sequence[ClosedMonth]) -> list[tuple[dt.date, dt.date]]:
    """The closed days as disjoint spans ``[start, end)``: adjacent closed months join up, so a
    quarter whose three months are closed lies inside one span."""
    spans: list[tuple[dt.date, dt.date]] = []
    for month in sorted(months, key=lambda m: m.start):
        if spans and spans[-1][1] >= month.start:
            spans[-1] = (spans[-1][0], max(spans[-1][1], month.end))
        else:
            spans.append((month.start, month.end))
    return spans


def _may_differ(batch: SalesBatch, month: ClosedMonth) -> bool:
    """Whether the batch can have a line dated in the month that counts now but not as closed,
    or the other way round (from the batch's date range; the lines decide)."""
    first, last = batch.first, batch.last
    if first is not None and last is not None and (last < month.start or first >= month.end):
        return False
    if month.as_of is None or batch.id not in month.batches:
        return batch.active  # the close counted none of its lines
    if not batch.active:
        return True  # voided after the close
    # Counted, unless a line is dated in the month after the day the closing run rated to.
    rated_to_the_end = month.as_of >= month.end - dt.timedelta(days=1)
    return not rated_to_the_end and (batch.last is None or batch.last > month.as_of)


def late_changes(
    months: Sequence[ClosedMonth],
    batches: Sequence[SalesBatch],
    *,
    columns: Sequence[str],
    customers: Sequence[str] | None = None,
) -> LateChanges:
    """The late sales and late voids among these batches (voided ones too), with lines dated
    by each of these ``columns``; of these ``customers`` only, when given."""
    candidates = [b for b in batches if any(_may_differ(b, month) for month in months)]
    if not candidates:
        return LateChanges(list(months), [], {})
    late_ids: set[int] = set()
    found: dict[str, list[str]] = {}
    for column in columns:
        with duck.connection() as connection:
            read = ""
            if customers is not None:
                chosen = pa.table({"customer_id": pa.array(customers, pa.string())})
                connection.register("chosen_customers", chosen)
                read = "SEMI JOIN chosen_customers t ON t.customer_id = s.customer_id"
            relation = _with_as_closed(connection, months, candidates, column, read=read)
            rows = connection.execute(
                f"SELECT DISTINCT batch_id, customer_id FROM ({relation}) WHERE active <> as_closed"
            ).fetchall()
        late_ids |= {row[0] for row in rows}
        if rows:
            found[column] = sorted({row[1] for row in rows})
    return LateChanges(list(months), [b for b in candidates if b.id in late_ids], found)


def lines_as_closed(
    months: Sequence[ClosedMonth],
    batches: Sequence[SalesBatch],
    column: str,
    *,
    customers: pa.Array | None,
    where: str,
    baseline_before: dt.date | None = None,
) -> pa.Table:
    """The lines of these batches (active or voided) that count as closed when dated by
    ``column``, of these customers only when given, that meet ``where`` (SQL over the line
    ``s``, as read from its file).

    Lines dated before ``baseline_before`` are a prior-year baseline: the versions rated
    count them for periods of their own, which no closed month's results held, and the engine
    does not cut them at the as-of day; they are as closed when their batch is active."""
    if not batches:
        return SALES_SCHEMA.empty_table()
    with duck.connection() as connection:
        chosen = ""
        if customers is not None:
            connection.register("late_customers", pa.table({"customer_id": customers}))
            chosen = "SEMI JOIN late_customers t ON t.customer_id = s.customer_id"
        relation = _with_as_closed(
            connection,
            months,
            batches,
            column,
            read=f"{chosen} WHERE {where}",
            baseline_before=baseline_before,
        )
        table = connection.sql(
            f"""SELECT {", ".join(SALES_SCHEMA.names)} FROM ({relation}) WHERE as_closed"""
        ).to_arrow_table()
    return table.cast(SALES_SCHEMA)


def _with_as_closed(
    connection: duckdb.DuckDBPyConnection,
    months: Sequence[ClosedMonth],
    batches: Sequence[SalesBatch],
    column: str,
    *,
    read: str = "",
    baseline_before: dt.date | None = None,
) -> str:
    """SQL for the lines of these batches with ``batch_id``, ``active`` and ``as_closed``, after
    registering the tables it reads on ``connection``. ``read`` joins and filters the files'
    lines (``s``) first: the customers and the dates cut millions of lines to a few thousand,
    and DuckDB skips the files' row groups outside the dates."""
    connection.register(
        "closed_months",
        pa.table(
            {
                "start": pa.array([m.start for m in months], pa.date32()),
                "end": pa.array([m.end for m in months], pa.date32()),
            }
        ),
    )
    ids = {b.id for b in batches}
    counted = [(b, m) for m in months for b in sorted(m.batches & ids) if m.as_of is not None]
    connection.register(
        "counted",
        pa.table(
            {
                "batch_id": pa.array([b for b, _ in counted], pa.int64()),
                "start": pa.array([m.start for _, m in counted], pa.date32()),
                "end": pa.array([m.end for _, m in counted], pa.date32()),
                "as_of": pa.array([m.as_of for _, m in counted], pa.date32()),
            }
        ),
    )
    connection.register(
        "batch_files",
        pa.table(
            {
                "filename": pa.array([str(b.path) for b in batches], pa.string()),
                "batch_id": pa.array([b.id for b in batches], pa.int64()),
                "active": pa.array([b.active for b in batches], pa.bool_()),
            }
        ),
    )
    files = sql_list([b.path for b in batches])
    # A line without this day (not yet paid) is in no closed period: as closed when active.
    dated = f"s.{column}"
    baseline = f"WHEN {dated} < DATE '{baseline_before}' THEN f.active" if baseline_before else ""
    return f"""SELECT s.*, f.batch_id, f.active,
               CASE {baseline}
                    WHEN EXISTS (SELECT 1 FROM closed_months c
                                 WHERE {dated} >= c.start AND {dated} < c."end")
                    THEN EXISTS (SELECT 1 FROM counted z
                                 WHERE z.batch_id = f.batch_id AND {dated} >= z.start
                                   AND {dated} < z."end" AND {dated} <= z.as_of)
                    ELSE f.active END AS as_closed
        FROM (SELECT s.* FROM read_parquet([{files}], filename = true) s {read}) s
        JOIN batch_files f ON f.filename = s.filename"""
