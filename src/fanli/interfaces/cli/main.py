"""The ``fanli`` command line: parse options, call one domain function per step, render.

Every ``FanliError`` becomes one red line on stderr and an exit code (2 for bad input, 1 for any
other refusal); no traceback reaches the user. Large input files get a Rich progress bar.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from fanli.agreements.files import load_agreements
from fanli.demo import export_demo, run_demo
from fanli.engine.columnar import calculate
from fanli.engine.explain import explain_results, summarize
from fanli.interfaces.cli import access, audit, money, store
from fanli.interfaces.cli.common import (
    MappingOption,
    check_output,
    parse_date,
    progress,
    run,
    stdout,
)
from fanli.interfaces.cli.output import RESULT_SUFFIXES, summary_table, write_results
from fanli.kit.errors import InputError
from fanli.sales.files import Facts, read_facts
from fanli.sales.mapping import load_mapping

app = typer.Typer(
    name="fanli",
    help="Fanli (返利): exact, explainable rebate calculation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

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
    console = stdout()

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
        if out is not None:
            check_output(out, "--out", sales, customers, products, agreements, mapping)
        if (customer or period) and explain is None:
            raise InputError("--customer and --period go with --explain", field="--explain")
        return parse_date(as_of, "--as-of")

    as_of_date = run(check_options)
    terms = run(lambda: load_agreements(agreements))
    column_mapping = run(lambda: load_mapping(mapping) if mapping else None)
    inputs = [path for path in (sales, customers, products) if path is not None]

    def read() -> Facts:
        with progress(inputs, Console(stderr=True)) as hook:
            return read_facts(
                sales, customers=customers, products=products, mapping=column_mapping, progress=hook
            )

    facts = run(read)
    with console.status("calculating", spinner="dots") if console.is_terminal else _nothing():
        results = run(
            lambda: calculate(
                terms,
                sales=facts.sales,
                customers=facts.customers,
                products=facts.products,
                as_of=as_of_date,
            )
        )
    if out is not None:
        run(lambda: write_results(results, out))
    if explain is not None:
        texts = run(
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
    console = stdout()
    as_of_date = run(lambda: parse_date(as_of, "--as-of"))
    outcome = run(lambda: run_demo(as_of=as_of_date))
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
        written = run(lambda: export_demo(export))
        console.print(
            Text(f"demo inputs written to {export}: " + ", ".join(path.name for path in written))
        )


store.register(app)
money.register(app)
access.register(app)
audit.register(app)


def main() -> None:
    app()
