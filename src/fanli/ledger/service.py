"""Accrual runs: rate the active agreements, store the results, post the delta to the journal.

For every agreement version x beneficiary x rebate period the liability it should hold is the
period's share of the engine's ``accrual`` (the running total to hold). A run posts, per key,
what should be held minus what the journal already holds: debit rebate contra-revenue, credit
the rebate refund liability (reversed for a decrease). Running again with nothing new posts
nothing; a voided batch's effect is reversed exactly by the next run.

A run re-rates only what its new inputs can change (ADR 0004). A version is re-rated whole when
it is new or its counting window changed, when it projects (expected mode) and the as-of date
moved, when it pays without lines (guarantee, fixed amount) or pools a group and its dates saw
a change; otherwise only for the customers with lines in new or voided batches or dated between
the previous as-of date and this one. A change to the customer or product master re-rates
everything. ``inputs`` records all of it, so a run can be reproduced.

A closed period is never rewritten: a run posts in the first open period. The part of a change
that late sales and voids make to closed periods is posted there as an entry of kind
``adjustment``, the rest as an ``accrual`` (``ledger.late``, ADR 0010).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import case, func, literal, select, type_coerce
from sqlalchemy.orm import Session

from fanli.agreements.models import AgreementRecord, AgreementVersion
from fanli.agreements.queries import DEFAULT_CURRENCY, RunVersion, terms_for_run
from fanli.agreements.service import expire_ended
from fanli.agreements.terms import AccrualMode, Agreement
from fanli.audit.service import record
from fanli.customers.models import Customer, GroupMembership
from fanli.db.base import Amount
from fanli.db.bulk import insert_arrow
from fanli.db.session import Lock, serialize
from fanli.engine.columnar import calculate
from fanli.engine.compile import EVENT_COLUMN
from fanli.engine.facts import SALES_SCHEMA
from fanli.engine.results import RESULT_SCHEMA
from fanli.kit import duck
from fanli.kit.errors import FanliError, InputError
from fanli.kit.money import ZERO
from fanli.kit.periods import kept_day
from fanli.kit.progress import ProgressHook, Stage, Stages
from fanli.kit.sql import chunks, sql_list
from fanli.ledger.dimensions import customer_table, product_table
from fanli.ledger.late import (
    ClosedMonth,
    LateChanges,
    SalesBatch,
    as_each_saw_them,
    closed_months,
    covered,
    late_changes,
    lines_as_closed,
    record_first_runs,
    sales_batches,
)
from fanli.ledger.models import (
    Account,
    AccrualRun,
    EntryKind,
    JournalEntry,
    JournalLine,
    RebatePeriod,
)
from fanli.ledger.periods import posting_period
from fanli.ledger.postings import record_periods
from fanli.sales.models import BatchKind, ImportBatch
from fanli.sales.store import FactStore
from fanli.users.actor import Actor, Role, require

_YEAR = dt.timedelta(days=366)
_AMOUNT = pa.decimal128(38, 4)


@dataclass(frozen=True)
class RunSummary:
    run_id: int
    as_of: dt.date
    rerated: tuple[str, ...]  # "<agreement> v<version>"
    results_stored: int
    lines_posted: int
    net_change: Decimal  # change of the total liability this run posted
    entry_ids: tuple[int, ...]
    adjusted: Decimal = ZERO  # the part of ``net_change`` posted as adjustments (ADR 0010)
    # Per currency, (the change, the part of it posted as adjustments). ``net_change`` and
    # ``adjusted`` add every currency up: they mean something for a run in one currency only
    # (the run's audit event and the API give them only then).
    by_currency: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)

    @property
    def currency(self) -> str | None:
        """The run's one currency (the default one for a run that posted nothing), or None for
        a run in several, whose change has no single sum."""
        currencies = list(self.by_currency) or [DEFAULT_CURRENCY]
        return currencies[0] if len(currencies) == 1 else None


def reads_from(version: RunVersion) -> dt.date:
    """The earliest sale date the version's results can depend on."""
    if version.terms.prior_year_baseline:
        assert version.terms.term.start is not None
        return version.terms.term.start - _YEAR
    return version.counts_from


def _window(version: RunVersion) -> list[str]:
    return [version.counts_from.isoformat(), version.counts_until.isoformat()]


def _overlaps(version: RunVersion, first: dt.date | None, last: dt.date | None) -> bool:
    if first is None or last is None:
        return True
    return first < version.counts_until and reads_from(version) <= last


@dataclass(frozen=True)
class _Plan:
    """What a run re-rates: ``full`` versions for every beneficiary, ``partial`` versions only
    for ``customers`` (with lines in new or voided batches, dated between the two as-of dates,
    or regrouped in between), ``dropped`` versions to zero."""

    full: list[RunVersion]
    partial: list[RunVersion]
    customers: list[str]
    dropped: list[int]

    @property
    def rated(self) -> list[RunVersion]:
        return [*self.full, *self.partial]


# Above this many touched customers a partial re-rating costs about what a full one does.
PARTIAL_CUSTOMERS_LIMIT = 50_000


def _files_read_by(sales: list[SalesBatch], versions: list[RunVersion]) -> list[Path]:
    """The batch files whose dates some of these versions can see."""
    return [
        batch.path
        for batch in sales
        if any(_overlaps(version, batch.first, batch.last) for version in versions)
    ]


def _overlaps_dates(batch: SalesBatch, *, after: dt.date, until: dt.date) -> bool:
    if batch.first is None or batch.last is None:
        return True
    return batch.first <= until and after < batch.last


def _customers_in(files: list[Path], where: str = "TRUE") -> set[str]:
    """Customers with a line in these batch files (that meets ``where``)."""
    if not files:
        return set()
    with duck.connection() as connection:
        rows = connection.execute(
            f"SELECT DISTINCT customer_id FROM read_parquet([{sql_list(files)}]) WHERE {where}"
        ).fetchall()
    return {row[0] for row in rows}


def _dated_between(versions: list[RunVersion], *, after: dt.date, until: dt.date) -> str:
    """SQL: a line dated in ``(after, until]`` on one of these versions' event dates."""
    events = sorted({EVENT_COLUMN[version.terms.eligibility.event] for version in versions})
    return " OR ".join(
        f"({column} > DATE '{after}' AND {column} <= DATE '{until}')" for column in events
    )


def _selects_groups(terms: Agreement) -> bool:
    selectors = [terms.eligibility.customers]
    for line_set in (terms.target, terms.gate):
        if line_set is not None:
            selectors.append(line_set.customers)
    return any(
        selector.include.group is not None or selector.exclude.group is not None
        for selector in selectors
    )


def _regrouped(session: Session, *, after: dt.date, until: dt.date) -> set[str]:
    """Customers whose group membership starts or ends in ``(after, until]``."""
    changes = (GroupMembership.valid_from > after) & (GroupMembership.valid_from <= until)
    ends = (GroupMembership.valid_to > after) & (GroupMembership.valid_to <= until)
    return set(
        session.scalars(
            select(Customer.code)
            .join(GroupMembership, GroupMembership.customer_id == Customer.id)
            .where(changes | ends)
        )
    )


def _plan(
    session: Session,
    versions: list[RunVersion],
    *,
    sales: list[SalesBatch],
    all_batches: dict[int, SalesBatch],
    dimension_batches: list[int],
    previous: AccrualRun | None,
    as_of: dt.date,
) -> _Plan:
    if previous is None:
        return _Plan(versions, [], [], [])
    current_ids = {v.version_id for v in versions}
    dropped = [int(i) for i in previous.inputs["versions"] if int(i) not in current_ids]
    if previous.inputs.get("dimension_batches") != dimension_batches:
        return _Plan(versions, [], [], dropped)
    before: dict[str, list[str]] = previous.inputs["versions"]
    previous_sales = set(previous.inputs["sales_batches"])
    current_sales = {batch.id for batch in sales}
    changed = [all_batches[i] for i in sorted(current_sales ^ previous_sales) if i in all_batches]
    previous_as_of = dt.date.fromisoformat(previous.inputs["as_of"])
    low, high = sorted((previous_as_of, as_of))
    moved = low != high
    # A line is judged by the group held on its own date (ADR 0012), and a membership comes
    # with a customers import, which re-rates everything (dimension_batches above). A change
    # dated between the two as-of days re-rates the customers concerned as well.
    regrouped = _regrouped(session, after=low, until=high) if moved else set()
    full: list[RunVersion] = []
    partial: list[RunVersion] = []
    dated_in_move: list[RunVersion] = []
    for version in versions:
        terms = version.terms
        by_date = moved and _overlaps(version, low + dt.timedelta(days=1), high)
        by_batch = any(_overlaps(version, batch.first, batch.last) for batch in changed)
        by_group = bool(regrouped) and _selects_groups(terms)
        # Whole versions: a new window; a projection (it moves with the as-of date); rows that
        # exist without lines (a guarantee or a fixed amount: a new period gives every
        # beneficiary a row); a pool (it pays its counterparty on the members' lines).
        if (
            before.get(str(version.version_id)) != _window(version)
            or (moved and terms.accrual.mode is AccrualMode.EXPECTED)
            # A prior-year baseline is not cut at the as-of date: a new period can open a row
            # for customers with baseline lines only.
            or (by_date and (terms.pays_without_lines or terms.prior_year_baseline))
            or ((by_date or by_batch or by_group) and terms.parties is not None)
        ):
            full.append(version)
        elif by_date or by_batch or by_group:
            # Only customers with lines in a new or voided batch, with lines dated between the
            # two as-of dates, or whose group changed in between, can have different results.
            partial.append(version)
            if by_date:
                dated_in_move.append(version)
    customers: list[str] = []
    if partial:
        touching = [b for b in changed if any(_overlaps(v, b.first, b.last) for v in partial)]
        chosen = _customers_in([batch.path for batch in touching])
        if dated_in_move:
            # batches with a line dated in (low, high]
            dated = [b for b in sales if _overlaps_dates(b, after=low, until=high)]
            chosen |= _customers_in(
                [batch.path for batch in dated],
                _dated_between(dated_in_move, after=low, until=high),
            )
        chosen |= regrouped
        customers = sorted(chosen)
        if not customers:
            partial = []  # no line of theirs changed: nothing to re-rate
        elif len(customers) > PARTIAL_CUSTOMERS_LIMIT:
            full, partial, customers = [*full, *partial], [], []
    return _Plan(full, partial, customers, dropped)


def liability_balance(where: Any = None) -> Any:
    """SQL for what lines hold on the liability account: credited minus debited (of the lines
    that meet ``where`` only, when given)."""
    # The zero is an Amount too: a plain Decimal would reach SQLite as 0.0 and make SUM a float.
    zero = literal(ZERO, Amount())
    credits = JournalLine.credit_account == Account.LIABILITY
    debits = JournalLine.debit_account == Account.LIABILITY
    if where is not None:
        credits, debits = credits & where, debits & where
    credited = func.sum(case((credits, JournalLine.amount), else_=zero))
    debited = func.sum(case((debits, JournalLine.amount), else_=zero))
    # The difference of two sums must keep the column type (scaled integers on SQLite).
    return type_coerce(credited - debited, Amount())


def _posted_balances(
    session: Session, version_ids: Sequence[int], *, customers: Sequence[str] | None = None
) -> pa.Table:
    """What accrual runs have posted per key of these versions (of these customers only, when
    given): ``balance`` in all, ``adjusted`` of it by adjustments."""
    rows: list[Any] = []
    # Lists of ids are bound in chunks: SQLite allows some tens of thousands of parameters.
    for chunk in chunks(list(customers)) if customers is not None else [None]:
        if not version_ids:
            break
        grouped = (
            select(
                JournalLine.version_id,
                JournalLine.beneficiary,
                JournalLine.period_index,
                liability_balance().label("balance"),
                liability_balance(JournalEntry.kind == EntryKind.ADJUSTMENT).label("adjusted"),
            )
            # What accrual runs posted: settlements (a later issue) also move the liability,
            # but a run's delta is measured against accruals only.
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .where(JournalLine.version_id.in_(version_ids), JournalEntry.run_id.is_not(None))
            .group_by(JournalLine.version_id, JournalLine.beneficiary, JournalLine.period_index)
        )
        if chunk is not None:
            grouped = grouped.where(JournalLine.beneficiary.in_(chunk))
        keys = grouped.subquery()
        # The period's dates once per key, after the lines are summed, not once per line.
        query = select(
            keys.c.version_id,
            keys.c.beneficiary,
            keys.c.period_index,
            RebatePeriod.period_start,
            RebatePeriod.period_end,
            keys.c.balance,
            keys.c.adjusted,
        ).join(RebatePeriod, RebatePeriod.of(keys.c))
        # Core, not the ORM: tens of thousands of rows come back on a large run.
        rows.extend(session.connection().execute(query).all())
    return pa.table(
        {
            "version_id": pa.array([r[0] for r in rows], pa.int64()),
            "beneficiary": pa.array([r[1] for r in rows], pa.string()),
            "period_index": pa.array([r[2] for r in rows], pa.int32()),
            "period_start": pa.array([r[3] for r in rows], pa.date32()),
            "period_end": pa.array([r[4] for r in rows], pa.date32()),
            "balance": pa.array([r[5] for r in rows], _AMOUNT),
            "adjusted": pa.array([r[6] for r in rows], _AMOUNT),
        }
    )


_KEY = ("agreement_id", "version", "beneficiary_id", "period_index")
_OPERAND = pa.decimal128(37, 4)


def _with_liability(results: pa.Table) -> pa.Table:
    """``results`` with ``liability``: each period's accrual less the previous period's of the
    same agreement version and beneficiary (what the period adds to the liability).

    The engine returns results sorted by key (``calculate(ordered=True)``), so the previous
    period is the previous row: comparing each row with the one before takes 30-40 ms, where a
    window over 594,600 rows took 0.3 s. The order is checked, not assumed; rows out of order
    are sorted first.
    """
    rows = results.num_rows
    for name in _KEY:  # a null would compare as unknown and pass the order check
        if results.column(name).null_count:
            raise ValueError(f"a result without its {name}")
    if rows > 1:
        before = {name: results.column(name).slice(0, rows - 1) for name in _KEY}
        after = {name: results.column(name).slice(1) for name in _KEY}
        # row i + 1 sorts after row i: compare the key from its last column to its first
        ascending = pc.less(before["period_index"], after["period_index"])
        for name in reversed(_KEY[:-1]):
            ascending = pc.or_(
                pc.less(before[name], after[name]),
                pc.and_(pc.equal(before[name], after[name]), ascending),
            )
        if not pc.all(ascending).as_py():
            results = results.sort_by([(name, "ascending") for name in _KEY])
            before = {name: results.column(name).slice(0, rows - 1) for name in _KEY}
            after = {name: results.column(name).slice(1) for name in _KEY}
        same = pc.and_(
            pc.and_(
                pc.equal(before["agreement_id"], after["agreement_id"]),
                pc.equal(before["version"], after["version"]),
            ),
            pc.equal(before["beneficiary_id"], after["beneficiary_id"]),
        )
        # One digit fewer for the operands: Arrow gives their difference one digit more, and
        # 38 is decimal128's most (a safe cast: a value that does not fit raises).
        accrual = pc.cast(results.column("accrual"), _OPERAND)
        earlier = pc.if_else(same, accrual.slice(0, rows - 1), pa.scalar(ZERO, _OPERAND))
        previous = pa.chunked_array([pa.array([ZERO], _OPERAND), *earlier.chunks], _OPERAND)
        liability = pc.cast(pc.subtract(accrual, previous), _AMOUNT)
    else:
        liability = pc.cast(results.column("accrual"), _AMOUNT)
    return results.append_column("liability", liability)


def _deltas(
    results: pa.Table,
    versions: list[RunVersion],
    posted: pa.Table,
    closed: list[tuple[dt.date, dt.date]],
    as_closed: _AsClosed | None,
) -> tuple[pa.Table, pa.Table]:
    """(the results with their version id and period liability, the changed keys).

    Each changed key's ``delta`` (what it should hold less what it holds) is split in two
    (ADR 0010): ``adjustment``, the change in the effect of late sales and voids on closed
    periods (the results on the sales as they are less those on the sales as closed, less what
    adjustments already hold), and ``accrual``, the rest. A rebate period that lies wholly in
    closed periods takes all of its change as an adjustment."""
    rated = _rated(results, versions)
    with duck.connection() as connection:
        connection.register("posted", posted)
        connection.register(
            "closed",
            pa.table(
                {
                    "start": pa.array([c[0] for c in closed], pa.date32()),
                    "end": pa.array([c[1] for c in closed], pa.date32()),
                }
            ),
        )
        connection.register("rated", rated)
        # The keys: those the results hold, and those posted before. With late changes, also
        # those only the results as closed hold: a late void can take a key's every line
        # away (a guarantee then pays it nothing), and the adjustment that says so belongs to
        # a key neither the results nor the journal hold.
        keyed = "rated"
        if as_closed is None:
            as_closed_liability = "k.target"
        else:
            connection.register("rated_as_closed", _rated(as_closed.results, versions))
            connection.register(
                "moved",
                pa.table(
                    {
                        "version_id": pa.array([v for v, _ in as_closed.scope], pa.int64()),
                        "customer_id": pa.array([c for _, c in as_closed.scope], pa.string()),
                    }
                ),
            )
            # A key a late line can move takes the results as closed (none: nothing); any
            # other key is as closed what it is.
            as_closed_liability = """CASE
                WHEN EXISTS (SELECT 1 FROM moved m WHERE m.version_id = k.version_id
                               AND (m.customer_id IS NULL OR m.customer_id = k.beneficiary))
                THEN coalesce((SELECT q.liability FROM rated_as_closed q
                               WHERE q.version_id = k.version_id
                                 AND q.beneficiary = k.beneficiary
                                 AND q.period_index = k.period_index), 0)
                ELSE k.target END"""
            keyed = """(SELECT version_id, beneficiary, period_index, period_start, period_end,
                           liability FROM rated
                    UNION ALL
                    SELECT q.version_id, q.beneficiary, q.period_index, q.period_start,
                           q.period_end, NULL FROM rated_as_closed q
                    WHERE NOT EXISTS (SELECT 1 FROM rated r WHERE r.version_id = q.version_id
                                        AND r.beneficiary = q.beneficiary
                                        AND r.period_index = q.period_index))"""
        deltas = connection.sql(
            f"""WITH keys AS (
              SELECT coalesce(r.version_id, p.version_id) AS version_id,
                     coalesce(r.beneficiary, p.beneficiary) AS beneficiary,
                     coalesce(r.period_index, p.period_index) AS period_index,
                     coalesce(r.period_start, p.period_start) AS period_start,
                     coalesce(r.period_end, p.period_end) AS period_end,
                     coalesce(r.liability, 0) AS target,
                     coalesce(p.balance, 0) AS balance,
                     coalesce(p.adjusted, 0) AS adjusted
              FROM {keyed} r FULL OUTER JOIN posted p
                ON r.version_id = p.version_id AND r.beneficiary = p.beneficiary
               AND r.period_index = p.period_index
            ), split AS (
              SELECT k.*,
                     CASE WHEN EXISTS (SELECT 1 FROM closed c
                                       WHERE c.start <= k.period_start AND k.period_end <= c."end")
                          THEN 0
                          ELSE ({as_closed_liability}) - (k.balance - k.adjusted) END AS accrual
              FROM keys k
            )
            SELECT version_id, beneficiary, period_index, period_start, period_end,
                   target - balance AS delta, accrual, target - balance - accrual AS adjustment,
                   target
            FROM split
            WHERE accrual <> 0 OR target - balance - accrual <> 0
            ORDER BY version_id, beneficiary, period_index"""
        ).to_arrow_table()
    return rated, deltas


def _rated(results: pa.Table, versions: list[RunVersion]) -> pa.Table:
    """The results a run keeps: each row with its version id first and ``beneficiary_id`` named
    ``beneficiary``, of the periods that overlap the version's own dates (a guarantee or a fixed
    amount would otherwise pay for periods another version, or nobody, covers). The period's
    share is taken first, so running totals stay consistent.

    ``results`` come sorted by key (``_with_liability``), so each version's rows are one run of
    rows: the version is looked up once per run, and the other columns are not copied (a join
    copied all 21 of them, 0.05-0.09 s of a full run at SF1). Rows of a version the run does not
    rate are not kept.
    """
    names = ["version_id", *(_RENAMED.get(name, name) for name in _KEPT)]
    rows = results.num_rows
    if rows == 0 or not versions:
        return pa.table(
            [pa.array([], pa.int64()), *(results.column(name).slice(0, 0) for name in _KEPT)],
            names=names,
        )
    codes, numbers = results.column("agreement_id"), results.column("version")
    # Each row's run: a run begins at the first row and wherever the version changes.
    begins = pa.concat_arrays(
        [
            pa.array([True]),
            pc.or_(
                pc.not_equal(codes.slice(1), codes.slice(0, rows - 1)),
                pc.not_equal(numbers.slice(1), numbers.slice(0, rows - 1)),
            ).combine_chunks(),
        ]
    )
    run = pc.subtract(pc.cumulative_sum(pc.cast(begins, pa.int64())), 1)
    position = {(v.code, v.version): i for i, v in enumerate(versions)}
    unknown = len(versions)  # a version the run does not rate: no dates, never kept
    at_run = pa.array(
        [
            position.get((codes[i].as_py(), numbers[i].as_py()), unknown)
            for i in pc.indices_nonzero(begins).to_pylist()
        ],
        pa.int64(),
    )
    which = at_run.take(run)
    ids = pa.array([*(v.version_id for v in versions), None], pa.int64())
    starts = pa.array([*(v.counts_from for v in versions), None], pa.date32())
    ends = pa.array([*(v.counts_until for v in versions), None], pa.date32())
    rated = pa.table([ids.take(which), *(results.column(name) for name in _KEPT)], names=names)
    kept = pc.and_(
        pc.greater(results.column("period_end"), starts.take(which)),
        pc.less(results.column("period_start"), ends.take(which)),
    )
    # an unknown version's rows compare as null, which fill_null makes false
    kept = pc.fill_null(kept, False)
    return rated if pc.all(kept).as_py() else rated.filter(kept)


# The results' columns a run keeps, in order, and those it names otherwise.
_KEPT = [*RESULT_SCHEMA.names, "liability"]
_RENAMED = {"beneficiary_id": "beneficiary"}


def _sales_input(files: list[Path]) -> pa.Table | list[str]:
    return [str(path) for path in files] if files else SALES_SCHEMA.empty_table()


def _dated_for(versions: list[RunVersion], as_of: dt.date) -> str:
    """SQL: a line ``s`` dated where one of these versions can read it, up to ``as_of``. Batch
    files are sorted by invoice date, so the bounds let DuckDB skip row groups."""
    first = min(reads_from(version) for version in versions)
    until = min(max(version.counts_until for version in versions), as_of + dt.timedelta(days=1))
    events = sorted({EVENT_COLUMN[version.terms.eligibility.event] for version in versions})
    return " OR ".join(
        f"(s.{column} >= DATE '{first}' AND s.{column} < DATE '{until}')" for column in events
    )


# What the engine reads of a line: all but its id, the longest text of the line, which only
# explanations show (reading it took a sixth of the time of reading the lines).
_RATED_SALES = pa.schema([column for column in SALES_SCHEMA if column.name != "line_id"])


def _lines_of(
    files: list[Path], customers: pa.Array, versions: list[RunVersion], as_of: dt.date
) -> pa.Table:
    """The lines of these customers in these batch files that these versions can read, without
    their ids."""
    if not files:
        return _RATED_SALES.empty_table()
    with duck.connection() as connection:
        connection.register("touched", pa.table({"customer_id": customers}))
        listed = sql_list(files)
        table = connection.sql(
            f"""SELECT {", ".join(f"s.{name}" for name in _RATED_SALES.names)}
            FROM read_parquet([{listed}]) s
            SEMI JOIN touched t ON t.customer_id = s.customer_id
            WHERE {_dated_for(versions, as_of)}"""
        ).to_arrow_table()
    return table.cast(_RATED_SALES)


@dataclass(frozen=True)
class _Rerating:
    """Versions to rate again on the sales as closed, dated by one column, for these
    customers (None: every beneficiary, for a pool)."""

    versions: list[RunVersion]
    column: str
    customers: list[str] | None
    baseline_before: dt.date | None  # where a prior-year baseline's lines end
    late: LateChanges  # the closed months as these versions saw them, and their late batches


@dataclass(frozen=True)
class _AsClosed:
    """The results on the sales as closed, and which keys they are for: (version id, customer;
    None for every beneficiary)."""

    results: pa.Table
    scope: list[tuple[int, str | None]]


def _moved_by_late(plan: _Plan, late: LateChanges, rated: list[RunVersion]) -> list[_Rerating]:
    """What of these versions of this run a late line can move, grouped for the engine: a
    pool whose dates overlap a late batch, for every beneficiary (it pays its counterparty on
    its members' lines); a single customer's version for the customers with a late line that
    the run rates."""
    partial = {version.version_id for version in plan.partial}
    rated_customers = set(plan.customers)
    groups: dict[tuple[str, bool, bool, dt.date | None], list[RunVersion]] = {}
    for version in rated:
        column = EVENT_COLUMN[version.terms.eligibility.event]
        if not late.customers.get(column) or not any(
            _overlaps(version, batch.first, batch.last) for batch in late.batches
        ):
            continue
        baseline = version.counts_from if version.terms.prior_year_baseline else None
        key = (column, version.terms.parties is not None, version.version_id in partial, baseline)
        groups.setdefault(key, []).append(version)
    reratings = []
    for (column, pooled, only_rated, baseline), versions in sorted(
        groups.items(), key=lambda item: (*item[0][:3], item[0][3] or dt.date.min)
    ):
        if pooled:
            reratings.append(_Rerating(versions, column, None, baseline, late))
            continue
        who = late.customers[column]
        if only_rated:  # its keys exist for the customers the run rates it for
            who = sorted(rated_customers.intersection(who))
        if who:
            reratings.append(_Rerating(versions, column, who, baseline, late))
    return reratings


def _rate_as_closed(
    sales: list[SalesBatch],
    reratings: list[_Rerating],
    *,
    customers: pa.Table,
    products: pa.Table,
    as_of: dt.date,
) -> _AsClosed:
    """Rate these versions on the sales as closed (as each saw its closed months)."""
    parts = []
    scope: list[tuple[int, str | None]] = []
    for rerating in reratings:
        versions = rerating.versions
        voided = [b for b in rerating.late.batches if not b.active]
        who = None if rerating.customers is None else pa.array(rerating.customers, pa.string())
        read = [
            batch
            for batch in [*sales, *voided]
            if any(_overlaps(version, batch.first, batch.last) for version in versions)
        ]
        lines = lines_as_closed(
            rerating.late.months,
            read,
            rerating.column,
            customers=who,
            where=_dated_for(versions, as_of),
            baseline_before=rerating.baseline_before,
        )
        sold = pc.unique(lines.column("product_id"))
        parts.append(
            _with_liability(
                calculate(
                    [version.terms for version in versions],
                    sales=lines,
                    customers=(
                        customers
                        if who is None
                        else customers.filter(pc.is_in(customers.column("customer_id"), who))
                    ),
                    products=products.filter(pc.is_in(products.column("product_id"), sold)),
                    as_of=as_of,
                    unstated_currency=DEFAULT_CURRENCY,
                )
            )
        )
        chosen: list[str | None] = [None] if rerating.customers is None else [*rerating.customers]
        scope += [(version.version_id, customer) for version in versions for customer in chosen]
    return _AsClosed(pa.concat_tables(parts), scope)


def _refuse_day_to_come(as_of: dt.date, today: dt.date) -> None:
    """A day still to come would accrue sales not yet made (and end agreements early)."""
    if as_of > today:
        raise InputError.said_at(
            "{day} has not come yet; an accrual runs as of today or earlier.",
            field="as_of",
            day=as_of,
        )


def check_routine_day(session: Session, as_of: dt.date, *, today: dt.date) -> None:
    """Refuse an as-of day the routine run must not take: a day still to come would accrue
    sales not yet made, and a day before the last run would reverse what that run accrued.
    The pages check this first; ``accrue`` checks it again under the run's lock."""
    _refuse_day_to_come(as_of, today)
    _refuse_going_back(session, as_of, routine=True)


def _refuse_going_back(session: Session, as_of: dt.date, *, routine: bool) -> None:
    """A run before the latest run's day reverses what was accrued since: the routine run
    never takes one; any other only when asked for as a rewind (``fanli accrue --rewind``,
    ``"rewind": true``), never by a mistyped day or a retried request of long ago. After a
    rewind the latest run's day is the one it went back to: going forward reverses nothing."""
    latest = session.scalar(select(AccrualRun.as_of).order_by(AccrualRun.id.desc()).limit(1))
    if latest is None or as_of >= latest:
        return
    # Two literal templates, so that the catalogs' test finds both.
    if routine:
        raise InputError.said_at(
            "The last run was as of {last}; a run as of {day} would reverse what it accrued since.",
            field="as_of",
            last=latest,
            day=as_of,
        )
    raise InputError.said_at(
        "the last run was as of {last}; a run as of {day} would reverse what was accrued "
        'since: ask for it as a rewind (fanli accrue --rewind, or "rewind": true) if that is '
        "what you mean",
        field="as_of",
        last=latest,
        day=as_of,
    )


def accrue(
    session: Session,
    store: FactStore,
    *,
    as_of: dt.date,
    actor: Actor,
    now: dt.datetime,
    progress: ProgressHook | None = None,
    routine: bool = False,
    rewind: bool = False,
) -> RunSummary:
    """One accrual run as of ``as_of`` over every active agreement version. Any day up to
    today: a day still to come would accrue sales not yet made and end agreements early. A
    day before the last run's reverses what was accrued since, so it is taken only when
    asked for (``rewind``); the check runs under the run's lock, so two runs queued one
    after the other cannot reverse each other. ``routine`` is the pages' run, which never
    rewinds."""
    require(actor, Role.FINANCE, to="run accruals")
    kept_day(as_of, field="as_of")
    stages = Stages(progress, Stage.EXPIRING, Stage.PLANNING, Stage.RATING, Stage.POSTING)
    # Two runs at once would both post the same delta: they queue (SQLite's writers always do).
    serialize(session, Lock.ACCRUAL)
    # Before any audit event (the chain's lock comes last): no period closes during the run.
    serialize(session, Lock.PERIODS, shared=True)
    if routine:
        check_routine_day(session, as_of, today=now.date())
    else:
        _refuse_day_to_come(as_of, now.date())
        if not rewind:
            _refuse_going_back(session, as_of, routine=False)
    # The month the run posts in is opened now, before the run's first audit event (an
    # expired agreement's): opening it may wait for a payout opening it too, and that payout
    # waits for the audit chain's lock, which the run would otherwise hold by then.
    posting_period(session, as_of)
    stages.begin(Stage.EXPIRING)
    expire_ended(session, as_of=as_of, actor=actor, now=now)
    stages.begin(Stage.PLANNING)
    versions = terms_for_run(session)
    every_file = sales_batches(session, store)  # voided ones too: a late void is read
    batches = {batch.id: batch for batch in every_file}
    sales = [batch for batch in every_file if batch.active]
    months = closed_months(session)
    dimension_batches = sorted(
        session.scalars(
            select(ImportBatch.id).where(
                ImportBatch.kind.in_([BatchKind.CUSTOMERS, BatchKind.PRODUCTS])
            )
        )
    )
    previous = session.scalar(select(AccrualRun).order_by(AccrualRun.id.desc()).limit(1))
    plan = _plan(
        session,
        versions,
        sales=sales,
        all_batches=batches,
        dimension_batches=dimension_batches,
        previous=previous,
        as_of=as_of,
    )
    # Only lines the run's versions can read: a late batch of long ago is not read again
    # once every version that counts it has stopped being rated.
    # Each version's closed months as its results first held them: the versions that saw the
    # same closes share one search for late changes (one, unless a version came after a close).
    seen = (
        as_each_saw_them(
            session,
            months,
            {v.version_id: (reads_from(v), v.counts_until) for v in plan.rated},
        )
        if months and plan.rated
        else {}
    )
    alike: dict[tuple[ClosedMonth, ...], list[RunVersion]] = {}
    for version in plan.rated:
        if seen.get(version.version_id):
            alike.setdefault(seen[version.version_id], []).append(version)
    lates = [
        (
            rated,
            late_changes(
                variant,
                [b for b in every_file if any(_overlaps(v, b.first, b.last) for v in rated)],
                columns=sorted({EVENT_COLUMN[v.terms.eligibility.event] for v in rated}),
                customers=None if plan.full else plan.customers,
            ),
        )
        for variant, rated in alike.items()
    ]
    inputs: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "sales_batches": sorted(b.id for b in sales),
        "dimension_batches": dimension_batches,
        "versions": {str(v.version_id): _window(v) for v in versions},
        "rerated": sorted([*(v.version_id for v in plan.full), *plan.dropped]),
    }
    if plan.partial:
        inputs["rerated_for_customers"] = sorted(v.version_id for v in plan.partial)
        inputs["customers"] = plan.customers
    if months:
        # what each closed period counted: the sales as closed (ADR 0010)
        inputs["closed_periods"] = {month.code: month.run_id for month in months}
    reratings = [
        rerating for rated, late in lates for rerating in _moved_by_late(plan, late, rated)
    ]
    if reratings:
        inputs["late"] = {
            "batches": sorted({b.id for _, late in lates for b in late.batches}),
            "customers": sorted(
                {
                    customer
                    for _, late in lates
                    for customers in late.customers.values()
                    for customer in customers
                }
            ),
            "versions": sorted(v.version_id for r in reratings for v in r.versions),
        }
    run = AccrualRun(as_of=as_of, started_at=now, actor=actor.code, inputs=inputs)
    session.add(run)
    session.flush()
    record_first_runs(session, run.id, [v.version_id for v in versions])

    stages.begin(Stage.RATING)
    customers = customer_table(session, store) if plan.rated else None
    products = product_table(session, store) if plan.rated else None
    parts = []
    if plan.full:
        files = _files_read_by(sales, plan.full)
        parts.append(
            calculate(
                [version.terms for version in plan.full],
                sales=_sales_input(files),
                customers=customers,
                products=products,
                as_of=as_of,
                unstated_currency=DEFAULT_CURRENCY,
            )
        )
    if plan.partial:
        assert customers is not None
        files = _files_read_by(sales, plan.partial)
        touched = pa.array(plan.customers, pa.string())
        lines = _lines_of(files, touched, plan.partial, as_of)
        assert products is not None
        # Only the masters' rows these lines use: classifying them is the engine's fixed cost.
        sold = pc.unique(lines.column("product_id"))
        parts.append(
            calculate(
                [version.terms for version in plan.partial],
                sales=lines,
                customers=customers.filter(pc.is_in(customers.column("customer_id"), touched)),
                products=products.filter(pc.is_in(products.column("product_id"), sold)),
                as_of=as_of,
                unstated_currency=DEFAULT_CURRENCY,
            )
        )
    results = pa.concat_tables(
        [_with_liability(part) for part in parts] or [_with_liability(RESULT_SCHEMA.empty_table())]
    )
    as_closed = None
    if reratings:
        assert customers is not None
        assert products is not None
        as_closed = _rate_as_closed(
            sales,
            reratings,
            customers=customers,
            products=products,
            as_of=as_of,
        )
    stages.begin(Stage.POSTING)
    posted = _posted_balances(session, [*(v.version_id for v in plan.full), *plan.dropped])
    if plan.partial:
        posted = pa.concat_tables(
            [
                posted,
                _posted_balances(
                    session, [v.version_id for v in plan.partial], customers=plan.customers
                ),
            ]
        )
    rated, deltas = _deltas(results, plan.rated, posted, covered(months), as_closed)

    stored = rated.num_rows
    # The results file is written on a worker thread while the postings are inserted: DuckDB
    # encodes on other cores without the GIL, and the insert spends its time in the database.
    # Leaving the block waits for the file, also when posting fails (the rolled-back run's
    # file then names no run and is never read).
    with ThreadPoolExecutor(max_workers=1) as writer:
        written = writer.submit(store.write_results, rated, run.id) if stored else None
        try:
            entry_ids, lines, net, adjusted = _post(session, run, deltas, as_of=as_of, now=now)
            by_currency = _by_currency(
                session, deltas, {v.version_id: v.terms.currency for v in plan.rated}
            )
        except BaseException:
            if written is not None:  # a refused run leaves no results file behind
                with contextlib.suppress(Exception):
                    store.path(written.result()[0]).unlink(missing_ok=True)
            raise
    if written is not None:
        run.results_file, run.results_sha256 = written.result()
    run.results_stored = stored
    run.lines_posted = lines
    session.flush()
    labels = tuple(sorted(f"{v.code} v{v.version}" for v in plan.rated))
    summary = RunSummary(
        run.id, as_of, labels, stored, lines, net, entry_ids, adjusted, by_currency
    )
    record(
        session,
        type="ledger.accrual.run",
        actor=actor.code,
        entity_type="accrual_run",
        entity_id=run.id,
        inputs=run.inputs,
        outcome={
            "results_stored": stored,
            "lines_posted": lines,
            # Amounts in two currencies never add up: a run in several has its change
            # per currency only.
            "net_change": net if summary.currency else None,
            "adjusted": adjusted if summary.currency else None,
            "by_currency": {
                currency: {"net_change": change, "adjusted": part}
                for currency, (change, part) in by_currency.items()
            },
            "entries": list(entry_ids),
        },
        now=now,
    )
    return summary


def _by_currency(
    session: Session, deltas: pa.Table, known: dict[int, str]
) -> dict[str, tuple[Decimal, Decimal]]:
    """The change a run posts per currency, and of it the adjustments: each key is in its
    agreement's currency, and amounts in two currencies never add up. ``known``: the
    currencies of the versions rated (a version no longer rated is read from the store)."""
    if deltas.num_rows == 0:
        return {}
    sums = (
        pa.table(
            {
                "version_id": deltas.column("version_id"),
                "delta": pc.cast(deltas.column("delta"), _AMOUNT),
                "adjustment": pc.cast(deltas.column("adjustment"), _AMOUNT),
            }
        )
        .group_by("version_id")
        .aggregate([("delta", "sum"), ("adjustment", "sum")])
    )
    ids = sums.column("version_id").to_pylist()
    currency_of = dict(known)
    for chunk in chunks([version_id for version_id in ids if version_id not in known]):
        currency_of.update(
            (version_id, (terms or {}).get("currency", DEFAULT_CURRENCY))
            for version_id, terms in session.execute(
                select(AgreementVersion.id, AgreementVersion.terms).where(
                    AgreementVersion.id.in_(chunk)
                )
            )
        )
    changes: dict[str, tuple[Decimal, Decimal]] = {}
    for version_id, change, part in zip(
        ids,
        sums.column("delta_sum").to_pylist(),
        sums.column("adjustment_sum").to_pylist(),
        strict=True,
    ):
        currency = currency_of.get(version_id, DEFAULT_CURRENCY)
        held, held_part = changes.get(currency, (ZERO, ZERO))
        changes[currency] = (held + Decimal(change), held_part + Decimal(part))
    return dict(sorted(changes.items()))


def _post(
    session: Session, run: AccrualRun, deltas: pa.Table, *, as_of: dt.date, now: dt.datetime
) -> tuple[tuple[int, ...], int, Decimal, Decimal]:
    """One entry per kind (accrual, adjustment), one posting line per key whose part of that
    kind is not zero."""
    if deltas.num_rows == 0:
        return (), 0, ZERO, ZERO
    period = posting_period(session, as_of)
    entry_date = as_of if period.start <= as_of < period.end else period.start
    versions, codes = zip(*_version_codes(session, deltas), strict=True)
    version_ids = pa.array(versions, pa.int64())
    code_values = pa.array(codes, pa.string())
    zero = pa.scalar(Decimal(0), _AMOUNT)
    entry_ids = []
    lines = 0
    _refuse_beyond_the_ledger(deltas, code_values, version_ids)
    code_of = dict(zip(versions, codes, strict=True))
    record_periods(
        session,
        [
            (
                (row["version_id"], row["period_index"]),
                (code_of[row["version_id"]], row["period_start"], row["period_end"]),
            )
            for row in deltas.group_by(["version_id", "period_index", "period_start", "period_end"])
            .aggregate([])
            .to_pylist()
        ],
    )
    for kind in (EntryKind.ACCRUAL, EntryKind.ADJUSTMENT):
        part = pc.cast(deltas.column(kind.value), _AMOUNT)
        chosen = deltas.filter(pc.not_equal(part, zero))
        if chosen.num_rows == 0:
            continue
        entry = JournalEntry(
            accounting_period_id=period.id,
            run_id=run.id,
            kind=kind,
            entry_date=entry_date,
            memo=(
                f"rebate accrual as of {as_of} (run {run.id})"
                if kind is EntryKind.ACCRUAL
                else f"rebate accrual adjustment for closed periods, as of {as_of} (run {run.id})"
            ),
            posted_at=now,
        )
        session.add(entry)
        session.flush()
        entry_ids.append(entry.id)
        delta = pc.cast(chosen.column(kind.value), _AMOUNT)
        postings = pa.table(
            {
                "entry_id": pa.repeat(pa.scalar(entry.id, pa.int64()), chosen.num_rows),
                "amount": pc.abs(delta),
                "version_id": chosen.column("version_id"),
                "beneficiary": chosen.column("beneficiary"),
                "period_index": chosen.column("period_index"),
            }
        )
        # An increase debits contra-revenue and credits the liability; a decrease reverses it.
        # The increases go in first, then the decreases: each part's accounts are the same on
        # every line, which the bulk insert binds once per statement.
        increase = pc.greater(delta, zero)
        lines += insert_arrow(
            session,
            JournalLine,
            *(
                _with_accounts(postings.filter(rows), debit=debit, credit=credit)
                for rows, debit, credit in (
                    (increase, Account.CONTRA_REVENUE, Account.LIABILITY),
                    (pc.invert(increase), Account.LIABILITY, Account.CONTRA_REVENUE),
                )
            ),
        )
    net = pc.sum(pc.cast(deltas.column("delta"), _AMOUNT)).as_py() or ZERO
    adjusted = pc.sum(pc.cast(deltas.column("adjustment"), _AMOUNT)).as_py() or ZERO
    return tuple(entry_ids), lines, Decimal(net), Decimal(adjusted)


def _with_accounts(postings: pa.Table, *, debit: Account, credit: Account) -> pa.Table:
    """``postings`` debiting ``debit`` and crediting ``credit``, the columns in the journal's
    order."""
    rows = postings.num_rows
    return postings.add_column(1, "debit_account", pa.repeat(debit.value, rows)).add_column(
        2, "credit_account", pa.repeat(credit.value, rows)
    )


# The largest liability the ledger holds for one key: 14 digits before the point, as a sales
# line's amounts have. SQLite keeps amounts as scaled 64-bit integers, so any sum of them (a
# period's movements, a key's balance) must stay under about 9.2 x 10^14; PostgreSQL keeps
# NUMERIC(22, 4). Keys within this bound keep the sums the pages and the GL export take within
# it, short of absurd volumes over many keys and runs.
LARGEST_LIABILITY = Decimal("99999999999999.9999")


class LedgerError(FanliError):
    code = "ledger_error"


def _refuse_beyond_the_ledger(deltas: pa.Table, codes: pa.Array, version_ids: pa.Array) -> None:
    """Refuse, naming its key, a liability too large for the ledger (sales of absurd size): it
    would fail half-way through the write, or leave sums the ledger cannot take. Only what a
    key would hold is bounded, never a change: a run that reverses a wrong import, however
    large, must always be possible (each posting is then at most twice the bound)."""
    most = pa.scalar(LARGEST_LIABILITY, _AMOUNT)
    values = pc.cast(deltas.column("target"), _AMOUNT)
    beyond = pc.greater(pc.abs(values), most)
    if not pc.any(beyond).as_py():
        return
    first = pc.index(beyond, True).as_py()
    row = deltas.slice(first, 1).to_pylist()[0]
    raise LedgerError.said(
        "the liability for agreement {code}, customer {customer}, rebate period from {start} "
        "would be {amount}, more than the ledger holds for one ({most}): check the sales "
        "behind it",
        code=codes[pc.index(version_ids, row["version_id"]).as_py()].as_py(),
        customer=row["beneficiary"],
        start=row["period_start"],
        amount=values[first].as_py(),
        most=LARGEST_LIABILITY,
    )


def _version_codes(session: Session, deltas: pa.Table) -> list[tuple[int, str]]:
    ids = sorted(set(deltas.column("version_id").to_pylist()))
    return [
        (int(version_id), code)
        for version_id, code in session.execute(
            select(AgreementVersion.id, AgreementRecord.code)
            .join(AgreementRecord, AgreementRecord.id == AgreementVersion.agreement_id)
            .where(AgreementVersion.id.in_(ids))
        )
    ]
