"""Short-lived DuckDB connections to the process's one in-memory database (fanli.kit.duck):
what one use registers or creates is its own, threads never share a connection, and a forked
process opens a database of its own."""

from __future__ import annotations

import subprocess
import sys
import threading
from decimal import Decimal

import pyarrow as pa
import pytest

from fanli.kit import duck


def test_what_a_use_registers_is_its_own_and_goes_with_it() -> None:
    with duck.connection() as first, duck.connection() as second:
        first.register("amounts", pa.table({"x": pa.array([Decimal("1.25")], pa.decimal128(9, 2))}))
        first.execute("CREATE TEMP TABLE kept AS SELECT x * 2 AS y FROM amounts")
        assert first.execute("SELECT y FROM kept").fetchall() == [(Decimal("2.50"),)]
        with pytest.raises(Exception, match="amounts"):
            second.execute("SELECT * FROM amounts")
        with pytest.raises(Exception, match="kept"):
            second.execute("SELECT * FROM kept")
    with duck.connection() as later, pytest.raises(Exception, match="kept"):
        later.execute("SELECT * FROM kept")


def test_threads_each_get_their_own_connection() -> None:
    sums: dict[int, int] = {}
    errors: list[BaseException] = []

    def work(number: int) -> None:
        try:
            with duck.connection() as connection:
                connection.register("t", pa.table({"n": list(range(number * 1000))}))
                total = connection.execute("SELECT sum(n) FROM t").fetchone()
                assert total is not None
                sums[number] = int(total[0])
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sums == {n: (n * 1000) * (n * 1000 - 1) // 2 for n in range(1, 9)}


# A child forked while the parent's database is idle, or while a connection to it is open,
# uses DuckDB and then leaves through normal interpreter shutdown (sys.exit), which frees
# whatever the module still holds: the parent's database must not be among it.
FORK = """
import os, sys
from fanli.kit import duck

def child():
    with duck.connection() as connection:
        assert connection.execute("SELECT 40 + 2").fetchone() == (42,)
    sys.exit(0)

with duck.connection() as connection:
    connection.execute("CREATE TEMP TABLE t AS SELECT range AS n FROM range(100000)")
    if sys.argv[1] == "in use":
        pid = os.fork()
        if pid == 0:
            child()
    else:
        pid = None
if pid is None:
    pid = os.fork()
    if pid == 0:
        child()
_, status = os.waitpid(pid, 0)
with duck.connection() as connection:  # and the parent carries on
    assert connection.execute("SELECT 1").fetchone() == (1,)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize("parent", ["idle", "in use"])
def test_a_forked_child_uses_its_own_database_and_exits_cleanly(parent: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FORK, parent],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stderr) == (0, "")
