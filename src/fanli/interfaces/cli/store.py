"""Commands over the relational store: ``db``, ``import``, ``batch``, ``agreement``, ``accrue``,
``period`` and ``gl``. Each opens one unit of work, calls one service, and renders the outcome.

``FANLI_DATABASE_URL`` and ``FANLI_DATA_DIR`` select the store; ``--as`` names the acting user,
whose roles the services check and whose code the audit trail records (sign-in comes with the
API).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from fanli.agreements.files import load_agreements
from fanli.agreements.models import AgreementVersion
from fanli.agreements.queries import DEFAULT_CURRENCY, versions
from fanli.agreements.service import add_versions, discard_draft, draft_of, edit_draft
from fanli.config import Settings, company_now
from fanli.db.migrate import upgrade
from fanli.db.session import make_engine, reachable, session_factory, unit_of_work
from fanli.db.status import require_current
from fanli.interfaces.cli.common import (
    EXIT_INPUT,
    ExitError,
    MappingOption,
    RecordId,
    check_output,
    local_time,
    parse_date,
    progress,
    run,
    stderr,
    stdout,
)
from fanli.kit.errors import InputError
from fanli.ledger.export import csv_amount, export_gl, load_chart
from fanli.ledger.periods import close_period
from fanli.ledger.queries import accounting_periods
from fanli.ledger.service import accrue
from fanli.sales.files import InputFileError, RowIssue
from fanli.sales.mapping import load_mapping
from fanli.sales.models import BatchKind, ImportBatch
from fanli.sales.queries import batches
from fanli.sales.service import (
    ImportOutcome,
    ReturnLeft,
    import_customers,
    import_products,
    import_sales,
    void_batch,
    write_issue_report,
)
from fanli.sales.store import FactStore
from fanli.users.queries import actor as load_actor

T = TypeVar("T")

db_app = typer.Typer(help="Create or migrate the database.", no_args_is_help=True)
batch_app = typer.Typer(help="List or void import batches.", no_args_is_help=True)
agreement_app = typer.Typer(help="Add, submit, approve and list agreements.", no_args_is_help=True)
period_app = typer.Typer(help="List and close accounting periods.", no_args_is_help=True)
gl_app = typer.Typer(help="Export the journal to the general ledger.", no_args_is_help=True)

ActorOption = Annotated[
    str, typer.Option("--as", help="The acting user; the audit trail records who acted.")
]
ReportOption = Annotated[
    Path | None, typer.Option(help="Where to write the report of a refused file (.csv or .xlsx).")
]
KeyOption = Annotated[
    str | None, typer.Option("--idempotency-key", help="Makes a retried import safe.")
]


@dataclass(frozen=True)
class _Store:
    engine: Engine
    sessions: sessionmaker[Session]
    facts: FactStore


def _open(*, migrated: bool = True) -> _Store:
    settings = Settings()
    engine = reachable(make_engine(settings.resolved_database_url))
    if migrated:
        require_current(engine)
    return _Store(engine, session_factory(engine), FactStore(settings.facts_dir))


@contextmanager
def _work() -> Iterator[tuple[Session, FactStore]]:
    store = _open()
    try:
        with unit_of_work(store.sessions) as session:
            yield session, store.facts
    finally:
        store.engine.dispose()


def in_store(step: Callable[[Session, FactStore], T]) -> T:
    def whole() -> T:
        with _work() as (session, facts):
            return step(session, facts)

    return run(whole)


# ---- db ---------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create the database, or migrate it to the newest schema."""

    def step() -> str:
        store = _open(migrated=False)
        try:
            upgrade(store.engine)
            return store.engine.url.render_as_string(hide_password=True)
        finally:
            store.engine.dispose()

    stdout().print(Text(f"database {run(step)} is up to date"))


# ---- import -----------------------------------------------------------------------------------


def _import(
    kind: BatchKind,
    path: Path,
    *,
    mapping: Path | None,
    report: Path | None,
    key: str | None,
    actor: str,
) -> None:
    console = stdout()
    if report is not None:
        run(lambda: _check_report(report, path, mapping))
    column_mapping = run(lambda: load_mapping(mapping)) if mapping else None

    def step() -> ImportOutcome:
        try:
            with progress([path], console) as hook, _work() as (session, facts):
                now = company_now()
                options = {
                    "actor": load_actor(session, actor),
                    "now": now,
                    "mapping": column_mapping,
                    "idempotency_key": key,
                    "progress": hook,
                }
                if kind is BatchKind.CUSTOMERS:
                    return import_customers(session, facts, path, **options)  # type: ignore[arg-type]
                if kind is BatchKind.PRODUCTS:
                    return import_products(session, facts, path, **options)  # type: ignore[arg-type]
                return import_sales(session, facts, path, **options)  # type: ignore[arg-type]
        except InputFileError as error:
            _show_issues(error, report)
            raise ExitError(EXIT_INPUT) from None
        except InputError as error:
            # A problem with the whole file (empty, not text, a column missing): the report
            # still says it, as its one row, where the user was told to look.
            if report is not None:
                whole = RowIssue(error.row, error.field, error.detail)
                write_issue_report(InputFileError([whole], file=error.file or str(path)), report)
                stderr().print(Text(f"report written to {report}"))
            raise

    outcome = run(step)
    if outcome.already_imported:
        console.print(
            Text(f"{path.name}: already imported as batch {outcome.batch_id}; nothing added")
        )
    else:
        console.print(
            Text(
                f"{path.name}: batch {outcome.batch_id}, {_count(outcome.rows, 'row')} of "
                f"{kind.value} ({outcome.inserted:,} new, {outcome.updated:,} updated)"
            )
        )
    if outcome.dated_ahead:
        lines, them = ("line is", "it") if outcome.dated_ahead == 1 else ("lines are", "them")
        console.print(
            Text(
                f"note: {outcome.dated_ahead:,} {lines} dated after today (the latest "
                f"{outcome.latest}); accrual runs count {them} as of their day",
                style="yellow",
            )
        )


def _check_report(report: Path, *inputs: Path | None) -> None:
    """Before the import: a report path it could not write, or that would overwrite an input,
    is refused while nothing has been done."""
    if report.suffix.lower() not in (".csv", ".xlsx"):
        raise InputError(
            "the report is written as .csv or .xlsx", field="--report", file=str(report)
        )
    check_output(report, "--report", *inputs)


def _show_issues(error: InputFileError, report: Path | None) -> None:
    console = stderr()
    console.print(
        Text(
            f"error: {error.file}: {_count(error.total, 'problem')}; nothing was stored",
            style="bold red",
        )
    )
    table = Table("row", "field", "reason")
    for issue in error.issues[:50]:
        table.add_row(str(issue.row or ""), issue.field or "", issue.message)
    console.print(table)
    if len(error.issues) > 50:
        console.print(Text(f"... {len(error.issues) - 50:,} more in the report"))
    if report is not None:
        write_issue_report(error, report)
        console.print(Text(f"report written to {report}"))
    else:
        console.print(Text("write every problem to a file with --report problems.csv (or .xlsx)"))


def import_command(  # noqa: PLR0917 - Typer maps parameters to arguments and options
    kind: Annotated[
        BatchKind,
        typer.Argument(
            help="customers (code, legal name, 统一社会信用代码, tax number, segment, region, "
            "group, ...), products (code, name, category, brand, ...) or sales (returns: "
            "negative quantity and amounts)."
        ),
    ],
    path: Path,
    actor: ActorOption,
    mapping: MappingOption = None,
    report: ReportOption = None,
    idempotency_key: KeyOption = None,
) -> None:
    """Import customers, products or sales lines from CSV, Excel or Parquet: all rows or none."""
    _import(kind, path, mapping=mapping, report=report, key=idempotency_key, actor=actor)


# ---- batch ------------------------------------------------------------------------------------


@batch_app.command("list")
def batch_list() -> None:
    """Every import batch, newest last."""

    def step(session: Session, _facts: FactStore) -> Table:
        table = Table("batch", "kind", "file", "rows", "dates", "status", "imported", "voided")
        for batch in batches(session):
            dates = f"{batch.first_date} .. {batch.last_date}" if batch.first_date else ""
            # a voided batch says when, by whom and why, as its audit event does
            voided = (
                f"{local_time(batch.voided_at)} {batch.voided_by}: {batch.void_reason}"
                if batch.voided_at is not None
                else ""
            )
            table.add_row(
                str(batch.id),
                batch.kind,
                batch.source_name,
                f"{batch.rows:,}",
                dates,
                batch.status,
                f"{local_time(batch.imported_at)} {batch.imported_by}",
                voided,
            )
        return table

    stdout().print(in_store(step))


@batch_app.command("void")
def batch_void(
    batch_id: RecordId,
    reason: Annotated[str, typer.Option(help="Why.")],
    actor: ActorOption,
) -> None:
    """Void a sales batch: its lines stop counting from the next accrual run."""

    def step(session: Session, facts: FactStore) -> tuple[ImportBatch, list[ReturnLeft]]:
        voided = void_batch(
            session,
            facts,
            batch_id,
            reason=reason,
            actor=load_actor(session, actor),
            now=company_now(),
        )
        return voided.batch, voided.returns_left

    batch, left = in_store(step)
    lines = "line" if batch.rows == 1 else "lines"
    stdout().print(Text(f"batch {batch.id} voided ({batch.rows:,} {lines}); run `fanli accrue`"))
    if left:
        named = "; ".join(
            f"batch {other}: {', '.join(r.line_id for r in left if r.batch_id == other)}"
            for other in sorted({r.batch_id for r in left})
        )
        stderr().print(
            Text(
                f"note: {_count(len(left), 'return')} in other batches "
                f"{'names' if len(left) == 1 else 'name'} lines of batch {batch.id} "
                f"({named}); they keep reducing rebates until those sales are imported again "
                "or the returns are voided too",
                style="yellow",
            )
        )


# ---- agreement --------------------------------------------------------------------------------


def _version_line(code: str, version: AgreementVersion) -> str:
    return (
        f"{code} v{version.version} ({version.status}, from {version.effective_from}, "
        f"terms {version.terms_hash})"
    )


@agreement_app.command("add")
def agreement_add(path: Path, actor: ActorOption) -> None:
    """Add a new version of each agreement in a terms file (YAML or JSON), as a draft.
    It becomes active once submitted (`fanli agreement submit`) and approved."""
    agreements = run(lambda: load_agreements(path))

    def step(session: Session, _facts: FactStore) -> list[str]:
        added = add_versions(
            session, agreements, actor=load_actor(session, actor), now=company_now()
        )
        return [
            _version_line(terms.id, version)
            for terms, version in zip(agreements, added, strict=True)
        ]

    for line in in_store(step):
        stdout().print(Text(line))


@agreement_app.command("edit")
def agreement_edit(path: Path, actor: ActorOption) -> None:
    """Replace the draft of each agreement in a terms file with the file's terms (a draft
    that submission refused, say). A submitted version goes back to draft first
    (`fanli agreement reject`)."""
    agreements = run(lambda: load_agreements(path))

    def step(session: Session, _facts: FactStore) -> list[str]:
        who = load_actor(session, actor)
        return [
            _version_line(
                terms.id,
                edit_draft(
                    session, draft_of(session, terms.id).id, terms, actor=who, now=company_now()
                ),
            )
            for terms in agreements
        ]

    for line in in_store(step):
        stdout().print(Text(line))


@agreement_app.command("discard")
def agreement_discard(
    code: str,
    reason: Annotated[str, typer.Option(help="Why the draft is given up.")],
    actor: ActorOption,
) -> None:
    """Give up an agreement's draft (withdraw a submitted one first: ``agreement withdraw``).
    It is kept, marked discarded; a new version can then be added."""

    def step(session: Session, _facts: FactStore) -> str:
        version = discard_draft(
            session,
            draft_of(session, code).id,
            reason=reason,
            actor=load_actor(session, actor),
            now=company_now(),
        )
        return f"{code} v{version.version}: {version.status}"

    stdout().print(Text(in_store(step)))


@agreement_app.command("list")
def agreement_list() -> None:
    """Agreements and their versions."""

    def step(session: Session, _facts: FactStore) -> Table:
        table = Table("agreement", "status", "version", "effective from", "version status")
        for agreement, version in versions(session):
            table.add_row(
                agreement.code,
                agreement.status,
                str(version.version),
                str(version.effective_from),
                version.status,
            )
        return table

    stdout().print(in_store(step))


# ---- accrue, period, gl -----------------------------------------------------------------------


def accrue_command(
    as_of: Annotated[str, typer.Option("--as-of", help="The accrual date (2026-06-30).")],
    actor: ActorOption,
    rewind: Annotated[
        bool,
        typer.Option(
            "--rewind",
            help="Run as of a day before the last run's, reversing what was accrued since.",
        ),
    ] = False,
) -> None:
    """Run the accruals as of a date and post the change to the journal."""
    day = run(lambda: parse_date(as_of, "--as-of"))
    assert day is not None
    summary = in_store(
        lambda s, f: accrue(
            s, f, as_of=day, actor=load_actor(s, actor), now=company_now(), rewind=rewind
        )
    )
    console = stdout()
    console.print(
        Text(
            f"accrual run {summary.run_id} as of {summary.as_of}: re-rated "
            f"{_count(len(summary.rerated), 'agreement version')}, stored "
            f"{_count(summary.results_stored, 'result')}, posted "
            f"{_count(summary.lines_posted, 'journal line')}, "
            + _changes(summary.by_currency, summary.net_change, summary.adjusted)
        )
    )
    if not summary.lines_posted:
        console.print(Text("nothing changed since the last run; nothing was posted"))


@period_app.command("close")
def period_close(code: str, actor: ActorOption) -> None:
    """Close an accounting period (YYYY-MM); later changes post as adjustments."""
    period = in_store(
        lambda s, _f: close_period(s, code, actor=load_actor(s, actor), now=company_now())
    )
    stdout().print(Text(f"accounting period {period.code} is closed"))


@period_app.command("list")
def period_list() -> None:
    """Accounting periods and their status."""

    def step(session: Session, _facts: FactStore) -> Table:
        table = Table("period", "status", "closed")
        for period in accounting_periods(session):
            closed = (
                f"{local_time(period.closed_at)} {period.closed_by}" if period.closed_at else ""
            )
            table.add_row(period.code, period.status, closed)
        return table

    stdout().print(in_store(step))


@gl_app.command("export")
def gl_export(
    period: Annotated[str, typer.Option(help="Accounting period, YYYY-MM.")],
    out: Annotated[Path, typer.Option(help="The file to write: .csv or .xlsx.")],
    actor: ActorOption,
    chart: Annotated[Path | None, typer.Option(help="Chart of accounts, YAML or JSON.")] = None,
) -> None:
    """Export one accounting period's journal lines with the company's account codes."""
    if out.suffix.lower() not in (".csv", ".xlsx"):
        raise run(lambda: _bad_suffix(out))
    run(lambda: check_output(out, "--out", chart))
    chart_of_accounts = run(lambda: load_chart(chart)) if chart else None
    # Written beside ``out`` and moved there once the export's audit event has committed: a
    # failed commit leaves no file that the audit trail does not know of (and an older file
    # at ``out`` as it was).
    staged = out.with_name(f".{out.stem}.{os.getpid()}.partial{out.suffix}")
    try:
        result = in_store(
            lambda s, f: export_gl(
                s,
                f,
                period,
                staged,
                chart=chart_of_accounts,
                actor=load_actor(s, actor),
                now=company_now(),
            )
        )
        staged.replace(out)
    finally:
        staged.unlink(missing_ok=True)
    # one total per currency: amounts in two currencies never add up
    totals = "; ".join(
        f"{currency} debit {_grouped(debit, currency)} = credit {_grouped(credit, currency)}"
        for currency, (debit, credit) in sorted(result.totals.items())
    )
    stdout().print(
        Text(
            f"{result.rows:,} rows (each journal line of {period} as its debit and its credit) "
            f"written to {out}: {totals or 'no journal lines'}"
        )
    )


def _changes(
    by_currency: dict[str, tuple[Decimal, Decimal]], net: Decimal, adjusted: Decimal
) -> str:
    """A run's liability change: as one amount when the run is in the default currency alone
    (or posted nothing), else per currency, which never add up."""
    if set(by_currency) <= {DEFAULT_CURRENCY}:
        # shown as the export writes amounts: the currency's places, never rounded
        return f"liability change {_grouped(net, DEFAULT_CURRENCY)}" + (
            f", of which {_grouped(adjusted, DEFAULT_CURRENCY)} adjusts closed periods"
            if adjusted
            else ""
        )
    return "liability change " + "; ".join(
        f"{currency} {_grouped(change, currency)}"
        + (f", of which {_grouped(part, currency)} adjusts closed periods" if part else "")
        for currency, (change, part) in by_currency.items()
    )


def _count(number: int, noun: str) -> str:
    """``number`` of ``noun``, in the singular for one: "1 row", "3 rows"."""
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"


def _grouped(amount: Decimal, currency: str) -> str:
    """An amount with its currency's places, as the export writes it, in groups of three."""
    return format(Decimal(csv_amount(amount, currency)), ",f")


def _bad_suffix(out: Path) -> typer.Exit:
    raise InputError("the GL export is written as .csv or .xlsx", field="--out", file=str(out))


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.command("import")(import_command)
    app.add_typer(batch_app, name="batch")
    app.add_typer(agreement_app, name="agreement")
    app.command("accrue")(accrue_command)
    app.add_typer(period_app, name="period")
    app.add_typer(gl_app, name="gl")
