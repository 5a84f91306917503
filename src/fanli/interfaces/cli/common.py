"""What every ``fanli`` command shares: exit codes, the one-line error, dates, progress bars."""

from __future__ import annotations

import datetime as dt
import os
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
from sqlalchemy.exc import OperationalError

from fanli.config import company_zone
from fanli.kit.errors import FanliError, InputError
from fanli.kit.periods import LAST_DAY, kept_day
from fanli.kit.progress import ProgressHook

EXIT_INPUT = 2  # bad input: a file, a field, an option
EXIT_REFUSED = 1  # any other FanliError
PROGRESS_THRESHOLD_BYTES = 8 << 20  # inputs below this are read before a bar would show

T = TypeVar("T")


class ExitError(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def local_time(moment: dt.datetime, form: str = "%Y-%m-%d %H:%M") -> str:
    """A stored moment (UTC) as the company's clock shows it: the business day is the
    company's (``FANLI_TIMEZONE``), so its times are too."""
    return moment.astimezone(company_zone()).strftime(form)


def stdout() -> Console:
    """Standard output; wide enough for the summary table when it is not a terminal."""
    console = Console(highlight=False, soft_wrap=True, markup=False)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=True, markup=False, width=160)
    return console


def stderr() -> Console:
    """Standard error, for notes, problems and refusals."""
    return Console(stderr=True, soft_wrap=True, highlight=False, markup=False)


# Both consoles print text as it is: what the tables and notes show comes from users (a void
# reason, a file's cells, a policy's title), and Rich would read "[...]" in it as markup,
# dropping text or failing on a closing tag it did not open.


def fail(message: str, code: int) -> ExitError:
    stderr().print(Text(f"error: {message}", style="bold red"))
    return ExitError(code)


@contextmanager
def errors() -> Iterator[None]:
    """Turn expected failures into one line and an exit code."""
    try:
        yield
    except InputError as error:
        raise fail(str(error), EXIT_INPUT) from None
    except FanliError as error:
        raise fail(str(error), EXIT_REFUSED) from None
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        raise fail(f"{where}{error.strerror or error}", EXIT_INPUT) from None
    except OperationalError as error:
        if "database is locked" in str(error.orig):
            # SQLite's writers queue for 30 s (busy_timeout); the transaction rolled back.
            raise fail(
                "the database is busy: another Fanli process kept it for over 30 seconds; "
                "nothing was changed, try again",
                EXIT_REFUSED,
            ) from None
        raise  # not a queue: a fault, left to the log


def run(step: Callable[[], T]) -> T:
    try:
        with errors():
            return step()
    except ExitError as failure:
        raise typer.Exit(failure.code) from None


# A record's id on the command line: the API's bound too, so an id neither database can hold
# is refused by the argument parser instead of failing in the driver.
MAX_ID = 2_147_483_647
RecordId = Annotated[int, typer.Argument(min=1, max=MAX_ID, show_default=False)]


def check_output(out: Path, option: str, *inputs: Path | None) -> None:
    """Refuse an output path that is one of the command's input files (writing it would
    destroy the input), or whose folder does not exist (a mistyped folder would otherwise be
    created, and the file written where nobody looks for it)."""
    if not out.parent.is_dir():
        raise InputError(
            f"there is no folder {out.parent}; create it first or name another",
            field=option,
            file=str(out),
        )
    for given in inputs:
        if given is None:
            continue
        same = (
            os.path.samefile(out, given)
            if out.exists() and given.exists()
            else out.resolve() == given.resolve()
        )
        if same:
            raise InputError(
                f"{option} names the input file {given}: write to another file",
                field=option,
                file=str(out),
            )


def parse_date(text: str | None, option: str, *, last: dt.date = LAST_DAY) -> dt.date | None:
    """A day typed as 2026-03-31, within the days Fanli keeps; ``last`` may be the
    calendar's last day for an end that only means "never" (a validity, an expiry)."""
    if text is None:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{text!r} is not a date (use 2026-03-31)", field=option) from None
    return kept_day(day, field=option, last=last)


@contextmanager
def progress(paths: list[Path], console: Console) -> Iterator[ProgressHook | None]:
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


MappingOption = Annotated[
    Path | None, typer.Option(help="Column mapping, YAML: {fanli_field: 'your header'}.")
]
