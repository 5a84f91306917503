"""Short-lived DuckDB connections to one in-memory database per process.

Opening a DuckDB database costs 15-20 ms (its catalog, buffer manager and thread pool); opening
another connection to an open database costs 0.2 ms. An incremental accrual run opens several
for small reads and joins, so they share one database. Each use still gets a connection of its
own: DuckDB connections must not be shared between threads, and what a use registers or creates
as a temporary table belongs to its connection and goes away with it.

What these uses may do: register tables, create temporary tables, read and copy files. What
they must not: ``SET`` anything or create lasting objects (tables, macros), which every later
use would see. Large engine runs and the sales imports keep databases of their own: the engine
sets a spill directory and database-wide settings for millions of lines, and an import sorts
millions of lines, whose peak memory a shared database would keep for the rest of the process.
The engine rates a small Arrow input (an incremental run's touched customers) here. (After a
full accrual run at SF1, the shared database holds about 125 MB it no longer uses; later uses
reuse it.)
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb


class _Shared:
    """The process's database, opened on first use, and the lock that opens it once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.database: duckdb.DuckDBPyConnection | None = None
        self.in_use = 0  # connections open now


_shared = _Shared()


@contextmanager
def connection() -> Iterator[duckdb.DuckDBPyConnection]:
    """A new connection to the process's in-memory database, closed when the block ends."""
    with _shared.lock:
        if _shared.database is None:
            _shared.database = duckdb.connect()
        cursor = _shared.database.cursor()
        _shared.in_use += 1
    try:
        yield cursor
    finally:
        cursor.close()
        with _shared.lock:
            _shared.in_use -= 1


def _before_fork() -> None:
    """An idle database is closed before a fork, so that the child inherits none."""
    _shared.lock.acquire()
    if _shared.database is not None and _shared.in_use == 0:
        _shared.database.close()
        _shared.database = None


def _after_fork_in_parent() -> None:
    _shared.lock.release()


def _after_fork_in_child() -> None:
    """A forked process opens a database of its own. One in use at the fork came along without
    its worker threads: freeing it, even at the child's exit, would wait for them forever or
    crash, so it is kept alive for good (one reference more that nothing gives back)."""
    if _shared.database is not None:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(_shared.database))
        _shared.database = None
    _shared.in_use = 0
    _shared.lock = threading.Lock()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)
