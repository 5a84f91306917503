"""Short-lived DuckDB connections to one in-memory database per process.

Opening a DuckDB database costs 15-20 ms (its catalog, buffer manager and thread pool); opening
another connection to an open database costs 0.2 ms. An incremental accrual run opens several
for small reads and joins, so they share one database. Each use still gets a connection of its
own: DuckDB connections must not be shared between threads, and what a use registers or creates
as a temporary table belongs to its connection and goes away with it.

The engine keeps its own database: it sets a spill directory and database-wide settings that
these short uses must not see.
"""

from __future__ import annotations

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
        # Databases a forked process inherited from its parent: never used, never freed there.
        self.inherited: list[duckdb.DuckDBPyConnection] = []


_shared = _Shared()


@contextmanager
def connection() -> Iterator[duckdb.DuckDBPyConnection]:
    """A new connection to the process's in-memory database, closed when the block ends."""
    with _shared.lock:
        if _shared.database is None:
            _shared.database = duckdb.connect()
        cursor = _shared.database.cursor()
    try:
        yield cursor
    finally:
        cursor.close()


def _after_fork_in_child() -> None:
    """A forked process opens a database of its own. The parent's came along without its
    worker threads: freeing it would wait for them forever, so it is kept and left alone. The
    lock is new too, in case another thread of the parent held it at the fork."""
    if _shared.database is not None:
        _shared.inherited.append(_shared.database)
        _shared.database = None
    _shared.lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
