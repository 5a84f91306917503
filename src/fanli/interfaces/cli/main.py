"""The ``fanli`` command line: parse options, call one domain function per step, render.

Every ``FanliError`` becomes one red line on stderr and an exit code (2 for bad input, 1 for any
other refusal); no traceback reaches the user. Large input files get a Rich progress bar.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from fanli.agreements.files import load_agreements
from fanli.demo import export_demo, run_demo
from fanli.engine.columnar import calculate
from fanli.engine.explain import explain_results, summarize
from fanli.interfaces.cli.output import RESULT_SUFFIXES, summary_table, write_results
from fanli.kit.errors import FanliError, InputError
from fanli.sales.files import Facts, ProgressHook, read_facts
from fanli.sales.mapping import load_mapping

app = typer.Typer(
    name="fanli",
    help="Fanli (返利): exact, explainable rebate calculation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_INPUT = 2  # bad input: a file, a field, an option
EXIT_REFUSED = 1  # any other FanliError
PROGRESS_THRESHOLD_BYTES = 8 << 20  # inputs below this are read before a bar would show

T = TypeVar("T")


class _ExitError(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _stdout() -> Console:
    """Standard output; wide enough for the summary table when it is not a terminal."""
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=True, width=160)
    return console


def _fail(message: str, code: int) -> _ExitError:
    Console(stderr=True, soft_wrap=True, highlight=False).print(
        Text(f"error: {message}", style="bold red")
    )
    return _ExitError(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn expected failures into one line and an exit code."""
    try:
        yield
    except InputError as error:
        raise _fail(str(error), EXIT_INPUT) from None
    except FanliError as error:
        raise _fail(str(error), EXIT_REFUSED) from None
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        raise _fail(f"{where}{error.strerror or error}", EXIT_INPUT) from None


def _run(step: Callable[[], T]) -> T:
    try:
        with _errors():
            return step()
    except _ExitError as failure:
        raise typer.Exit(failure.code) from None


def _parse_date(text: str | None, option: str) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{text!r} is not a date (use 2026-03-31)", field=option) from None


@contextmanager
def _progress(paths: list[Path], console: Console) -> Iterator[ProgressHook | None]:
    """A progress bar over the reading of large inputs; None (no bar) for small ones."""
    sizes = [path.stat().st_size for path in paths if path.is_file()]
    if not sizes or max(sizes) < PROGRESS_THRESHOLD_BYTES:
        yield None
        return
    bar = Progress(
        TextColumn("[bold]reading[/] {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def hook(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(Path(label).name, total=total or None)
        bar.update(tasks[label], completed=done, total=total or None)

    with bar:
        yield hook


AgreementsOption = Annotated[
    Path, typer.Option("--agreements", "-a", help="Agreement terms, YAML or JSON.")
]
SalesOption = Annotated[
    Path, typer.Option("--sales", "-s", help="Sales lines: .csv (UTF-8 or GBK), .xlsx, .parquet.")
]
CustomersOption = Annotated[
    Path | None, typer.Option(help="Customers file (id, name, group, ...).")
]
ProductsOption = Annotated[
    Path | None, typer.Option(help="Products file (id, category, brand, ...).")
]
MappingOption = Annotated[
    Path | None, typer.Option(help="Column mapping, YAML: {fanli_field: 'your header'}.")
]
AsOfOption = Annotated[
    str | None, typer.Option("--as-of", help="Count lines dated up to this day (2026-06-30).")
]


@app.command()
def calc(  # noqa: PLR0917 - Typer maps parameters to options
    agreements: AgreementsOption,
    sales: SalesOption,
    customers: CustomersOption = None,
    products: ProductsOption = None,
    mapping: MappingOption = None,
    as_of: AsOfOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Results: .csv, .xlsx or .parquet.")
    ] = None,
    explain: Annotated[
        str | None, typer.Option(help="Explain this agreement's results instead of a summary.")
    ] = None,
    customer: Annotated[
        str | None, typer.Option(help="With --explain: only this beneficiary.")
    ] = None,
    period: Annotated[
        str | None, typer.Option(help="With --explain: period number or a date inside it.")
    ] = None,
    language: Annotated[str, typer.Option(help="Explanation language: en or zh.")] = "en",
) -> None:
    """Calculate rebates from files and write the results."""
    console = _stdout()

    def check_options() -> dt.date | None:
        if out is None and explain is None:
            raise InputError("give --out for a result file, or --explain AGREEMENT", field="--out")
        if out is not None and out.suffix.lower() not in RESULT_SUFFIXES:
            raise InputError(
                f"unsupported result file type {out.suffix or '(none)'!r}; "
                "use .csv, .xlsx or .parquet",
                file=str(out),
                field="--out",
            )
        if (customer or period) and explain is None:
            raise InputError("--customer and --period go with --explain", field="--explain")
        return _parse_date(as_of, "--as-of")

    as_of_date = _run(check_options)
    terms = _run(lambda: load_agreements(agreements))
    column_mapping = _run(lambda: load_mapping(mapping) if mapping else None)
    inputs = [path for path in (sales, customers, products) if path is not None]

    def read() -> Facts:
        with _progress(inputs, Console(stderr=True)) as hook:
            return read_facts(
                sales, customers=customers, products=products, mapping=column_mapping, progress=hook
            )

    facts = _run(read)
    with console.status("calculating", spinner="dots") if console.is_terminal else _nothing():
        results = _run(
            lambda: calculate(
                terms,
                sales=facts.sales,
                customers=facts.customers,
                products=facts.products,
                as_of=as_of_date,
            )
        )
    if out is not None:
        _run(lambda: write_results(results, out))
    if explain is not None:
        texts = _run(
            lambda: explain_results(
                terms,
                results,
                agreement_id=explain,
                beneficiary_id=customer,
                period=period,
                sales=facts.sales,
                customers=facts.customers,
                products=facts.products,
                as_of=as_of_date,
                language=language,
            )
        )
        for text in texts:
            console.print(Text(text))
            console.print()
        return
    console.print(summary_table(summarize(terms, results), title="Rebates"))
    if out is not None:
        console.print(Text(f"{results.num_rows} result rows written to {out}"))


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@app.command()
def demo(
    as_of: AsOfOption = None,
    export: Annotated[
        Path | None,
        typer.Option(help="Also write the demo's input files to this directory."),
    ] = None,
) -> None:
    """Run the bundled demo (a distributor's 2026 rebate programmes) end to end."""
    console = _stdout()
    as_of_date = _run(lambda: _parse_date(as_of, "--as-of"))
    outcome = _run(lambda: run_demo(as_of=as_of_date))
    facts = outcome.facts
    customers = facts.customers.num_rows if facts.customers is not None else 0
    products = facts.products.num_rows if facts.products is not None else 0
    console.print(
        Text(
            f"Demo: {facts.sales.num_rows:,} sales lines, {customers} customers, "
            f"{products} products, "
            f"{len(outcome.agreements)} agreements"
            + (f", as of {as_of_date}" if as_of_date else "")
        )
    )
    console.print(
        summary_table(summarize(outcome.agreements, outcome.results), title="Demo rebates 2026")
    )
    if export is not None:
        written = _run(lambda: export_demo(export))
        console.print(
            Text(f"demo inputs written to {export}: " + ", ".join(path.name for path in written))
        )


def main() -> None:
    app()
