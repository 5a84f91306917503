"""Short-lived DuckDB connections to the process's one in-memory database (fanli.kit.duck):
what one use registers or creates is its own, threads never share a connection, and a forked
process opens a database of its own."""

from __future__ import annotations

import multiprocessing
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


def _in_child(queue: multiprocessing.Queue[object]) -> None:
    with duck.connection() as connection:
        queue.put(connection.execute("SELECT 40 + 2").fetchone())


def test_a_forked_process_opens_its_own_database() -> None:
    with duck.connection() as connection:  # the parent's database is open before the fork
        assert connection.execute("SELECT 1").fetchone() == (1,)
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[object] = context.Queue()
    child = context.Process(target=_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == (42,)
