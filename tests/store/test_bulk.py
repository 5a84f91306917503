"""Bulk inserts from Arrow (fanli.db.bulk): every value stored exactly, on both backends; on
SQLite, the multi-row statements at their boundaries and the index rebuild of a large load."""

from __future__ import annotations

import datetime as dt
import gc
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from psycopg.errors import CheckViolation, ForeignKeyViolation
from sqlalchemy import Connection, event, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fanli.db import bulk
from fanli.db.session import make_engine, session_factory
from fanli.ledger.models import Account, EntryKind, JournalEntry, JournalLine
from fanli.ledger.periods import ensure_period
from fanli.sales.store import FactStore

from .conftest import NOW, Store

DAY = dt.date(2026, 11, 27)
CONTRA = Account.CONTRA_REVENUE.value
LIABILITY = Account.LIABILITY.value
JOURNAL_INDEXES = ["ix_journal_line_entry_id", "ix_journal_line_version_id"]


def _entry(session: Session, entry_id: int | None = None) -> int:
    """A journal entry of its own (with ``entry_id`` when given), for lines to name."""
    period = ensure_period(session, DAY)
    entry = JournalEntry(
        id=entry_id,
        accounting_period_id=period.id,
        run_id=None,
        kind=EntryKind.ACCRUAL,
        entry_date=DAY,
        memo="bulk test",
        posted_at=NOW,
    )
    session.add(entry)
    session.flush()
    return entry.id


def _postings(entry_id: int, rows: int, *, first: int = 0) -> pa.Table:
    """``rows`` postings: amounts with four places, accounts of two values (text with few),
    three versions, a distinct beneficiary per row (text with many) and a period per quarter."""
    numbers = range(first, first + rows)
    return pa.table(
        {
            "entry_id": pa.array([entry_id] * rows, pa.int64()),
            "debit_account": pa.array([CONTRA if n % 5 else LIABILITY for n in numbers]),
            "credit_account": pa.array([LIABILITY if n % 5 else CONTRA for n in numbers]),
            "amount": pa.array(
                [Decimal(n + 1) + Decimal("0.0001") * (n % 10_000) for n in numbers],
                pa.decimal128(38, 4),
            ),
            "version_id": pa.array([n % 3 + 1 for n in numbers], pa.int64()),
            "beneficiary": pa.array([f"客户-{n:06d}" for n in numbers]),
            "period_index": pa.array([n % 4 for n in numbers], pa.int32()),
        }
    )


def _one_account_twice(data: pa.Table, row: int) -> pa.Table:
    """``data`` with row ``row`` debiting and crediting the same account: the journal's CHECK
    constraint refuses it."""
    credit = data.column("credit_account").to_pylist()
    credit[row] = data.column("debit_account")[row].as_py()
    return data.set_column(2, "credit_account", pa.array(credit))


def _stored(session: Session) -> list[tuple[Any, ...]]:
    return [
        (
            line.entry_id,
            line.debit_account,
            line.credit_account,
            line.amount,
            line.version_id,
            line.beneficiary,
            line.period_index,
        )
        for line in session.scalars(select(JournalLine).order_by(JournalLine.id))
    ]


def _expected(table: pa.Table) -> list[tuple[Any, ...]]:
    return [tuple(row.values()) for row in table.to_pylist()]


@pytest.mark.parametrize("rows", [1, 165, 166, 167, 332, 333, 400])
def test_every_value_is_stored_exactly_in_order(store: Store, rows: int) -> None:
    # Seven columns, the entry's id shared by every row: (999 - 1) // 6 = 166 rows per SQLite
    # statement, so these counts sit on both sides of one and two whole statements, with and
    # without a remainder.
    with store.work() as session:
        data = _postings(_entry(session), rows)
        assert bulk.insert_arrow(session, JournalLine, data) == rows
    with store.work() as session:
        stored = _stored(session)
    assert stored == _expected(data)
    assert stored[0][3] == Decimal("1.0000")
    assert stored[-1][3] == Decimal(rows) + Decimal("0.0001") * (rows - 1)
    assert sum(row[3] for row in stored) == sum(row[3] for row in _expected(data))


def _one_way(data: pa.Table, *, debit: str, credit: str) -> pa.Table:
    """``data`` with every row debiting ``debit`` and crediting ``credit``."""
    rows = data.num_rows
    return data.set_column(1, "debit_account", pa.array([debit] * rows)).set_column(
        2, "credit_account", pa.array([credit] * rows)
    )


@pytest.mark.parametrize(("first", "second"), [(249, 1), (250, 249), (498, 2), (1, 1), (2, 0)])
def test_parts_go_in_one_after_the_other_with_their_shared_values(
    store: Store, first: int, second: int
) -> None:
    # Entry and accounts are the same on every row of a part: SQLite binds them once per
    # statement, which leaves (999 - 3) // 4 = 249 rows per statement. The counts sit on
    # both sides of one and two whole statements; a part of one row shares nothing.
    with store.work() as session:
        entry_id = _entry(session)
        increases = _one_way(_postings(entry_id, first), debit=CONTRA, credit=LIABILITY)
        decreases = _one_way(
            _postings(entry_id, second, first=first), debit=LIABILITY, credit=CONTRA
        )
        assert bulk.insert_arrow(session, JournalLine, increases, decreases) == first + second
    with store.work() as session:
        stored = _stored(session)
    assert stored == _expected(increases) + _expected(decreases)
    assert {row[1:3] for row in stored[:first]} == {(CONTRA, LIABILITY)}
    assert {row[1:3] for row in stored[first:]} == ({(LIABILITY, CONTRA)} if second else set())


def test_rows_alike_in_every_column_are_each_stored(store: Store) -> None:
    # every column shares its value: one column is still bound per row, so there are rows
    with store.work() as session:
        entry_id = _entry(session)
        one = _postings(entry_id, 1)
        data = pa.concat_tables([one] * 300)
        assert bulk.insert_arrow(session, JournalLine, data) == 300
    with store.work() as session:
        assert _stored(session) == _expected(one) * 300


def test_parts_of_different_columns_are_refused(store: Store) -> None:
    with store.work() as session:
        entry_id = _entry(session)
        with pytest.raises(ValueError, match="same columns"):
            bulk.insert_arrow(
                session,
                JournalLine,
                _postings(entry_id, 2),
                _postings(entry_id, 2).drop(["amount"]),
            )
        assert session.scalar(select(func.count()).select_from(JournalLine)) == 0


def test_an_empty_table_inserts_nothing(store: Store) -> None:
    with store.work() as session:
        data = _postings(_entry(session), 0)
        assert bulk.insert_arrow(session, JournalLine, data) == 0
        assert session.scalar(select(func.count()).select_from(JournalLine)) == 0


def _indexes(connection: Connection) -> list[tuple[str, str]]:
    return [
        (name, sql)
        for name, sql in connection.execute(
            text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                "AND tbl_name = 'journal_line' ORDER BY name"
            )
        )
    ]


@pytest.fixture
def sqlite_store(
    sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Store]:
    """A SQLite store (the index rebuild is SQLite's: PostgreSQL loads by COPY with its
    indexes), with the rebuild starting at 100 rows instead of 50,000."""
    database = tmp_path / "fanli.db"
    shutil.copy(sqlite_template, database)
    engine = make_engine(f"sqlite:///{database}")
    monkeypatch.setattr(bulk, "REBUILD_INDEXES_FROM", 100)
    yield Store(engine, session_factory(engine), FactStore(tmp_path / "facts"), "sqlite")
    engine.dispose()


def _statements(store: Store) -> list[str]:
    seen: list[str] = []
    event.listen(
        store.engine,
        "before_cursor_execute",
        lambda _c, _cursor, statement, *_rest: seen.append(statement),
    )
    return seen


def test_a_load_larger_than_the_table_rebuilds_its_indexes_as_they_were(
    sqlite_store: Store,
) -> None:
    with sqlite_store.engine.connect() as connection:
        before = _indexes(connection)
    assert [name for name, _ in before] == JOURNAL_INDEXES
    seen = _statements(sqlite_store)
    with sqlite_store.work() as session:
        data = _postings(_entry(session), 150)
        bulk.insert_arrow(session, JournalLine, data)
    assert [s for s in seen if s.startswith("DROP INDEX")] == [
        f'DROP INDEX "{name}"' for name in JOURNAL_INDEXES
    ]
    with sqlite_store.engine.connect() as connection:
        assert _indexes(connection) == before
        plan = " ".join(
            str(row[-1])
            for row in connection.execute(
                text("EXPLAIN QUERY PLAN SELECT id FROM journal_line WHERE version_id = 2")
            )
        )
        assert "ix_journal_line_version_id" in plan
        assert (
            connection.execute(
                text("SELECT count(*) FROM journal_line WHERE version_id = 2")
            ).scalar()
            == 50
        )
    with sqlite_store.work() as session:
        assert _stored(session) == _expected(data)


def test_a_load_smaller_than_the_table_keeps_its_indexes(sqlite_store: Store) -> None:
    with sqlite_store.work() as session:
        entry_id = _entry(session)
        bulk.insert_arrow(session, JournalLine, _postings(entry_id, 150))
    seen = _statements(sqlite_store)
    with sqlite_store.work() as session:
        bulk.insert_arrow(session, JournalLine, _postings(entry_id, 120, first=150))
        # below the threshold: never even asks how large the table is
        bulk.insert_arrow(session, JournalLine, _postings(entry_id, 99, first=270))
    # the 120 rows ask the table's size (150 rows: no rebuild); the 99 never ask
    assert [s for s in seen if "max(rowid)" in s] == ['SELECT max(rowid) FROM "journal_line"']
    assert [s for s in seen if "INDEX" in s] == []
    with sqlite_store.work() as session:
        assert session.scalar(select(func.count()).select_from(JournalLine)) == 369


def test_a_failed_load_leaves_no_row_and_the_indexes_in_place(sqlite_store: Store) -> None:
    with sqlite_store.engine.connect() as connection:
        before = _indexes(connection)
    with sqlite_store.work() as session:
        entry_id = _entry(session)
    bad = _one_account_twice(_postings(entry_id, 200), 180)
    with pytest.raises(IntegrityError, match="two_accounts"), sqlite_store.work() as session:
        bulk.insert_arrow(session, JournalLine, bad)
    assert gc.isenabled()
    with sqlite_store.engine.connect() as connection:
        assert _indexes(connection) == before
        assert connection.execute(text("SELECT count(*) FROM journal_line")).scalar() == 0


def test_the_cycle_collector_resumes_as_it_was(store: Store) -> None:
    with store.work() as session:
        entry_id = _entry(session)
        assert gc.isenabled()
        bulk.insert_arrow(session, JournalLine, _postings(entry_id, 10))
        assert gc.isenabled()
        gc.disable()
        try:
            bulk.insert_arrow(session, JournalLine, _postings(entry_id, 10, first=10))
            assert not gc.isenabled()  # a caller's choice is left alone
        finally:
            gc.enable()


def test_a_caught_failure_leaves_nothing_behind_and_the_transaction_usable(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the rebuild path on SQLite too; on PostgreSQL a failed COPY would abort the transaction
    monkeypatch.setattr(bulk, "REBUILD_INDEXES_FROM", 100)
    with store.work() as session:
        entry_id = _entry(session)
        bad = _one_account_twice(_postings(entry_id, 200), 150)
        # PostgreSQL's COPY goes through the driver, whose own error comes up
        with pytest.raises((IntegrityError, CheckViolation), match="two_accounts"):
            bulk.insert_arrow(session, JournalLine, bad)
        assert session.scalar(select(func.count()).select_from(JournalLine)) == 0
        good = _postings(entry_id, 120, first=500)
        assert bulk.insert_arrow(session, JournalLine, good) == 120
    with store.work() as session:
        assert _stored(session) == _expected(good)
    if store.backend == "sqlite":
        with store.engine.connect() as connection:
            assert [name for name, _ in _indexes(connection)] == JOURNAL_INDEXES


def test_a_unique_index_is_kept_through_the_load(sqlite_store: Store) -> None:
    with sqlite_store.engine.begin() as connection:
        connection.execute(
            text(
                "CREATE UNIQUE INDEX ux_line_key ON journal_line "
                "(version_id, beneficiary, period_index, entry_id)"
            )
        )
    seen = _statements(sqlite_store)
    with sqlite_store.work() as session:
        entry_id = _entry(session)
        bulk.insert_arrow(session, JournalLine, _postings(entry_id, 150))
    assert [s for s in seen if "DROP INDEX" in s] == [
        f'DROP INDEX "{name}"' for name in JOURNAL_INDEXES
    ]
    # still enforced: the same key again is refused
    with pytest.raises(IntegrityError, match="UNIQUE"), sqlite_store.work() as session:
        bulk.insert_arrow(session, JournalLine, _postings(entry_id, 1))
    with sqlite_store.engine.connect() as connection:
        assert "ux_line_key" in [name for name, _ in _indexes(connection)]


def test_a_large_load_works_in_a_larger_page_cache_then_puts_it_back(
    sqlite_store: Store,
) -> None:
    seen = _statements(sqlite_store)
    with sqlite_store.work() as session:
        entry_id = _entry(session)
        connection = session.connection()
        connection.exec_driver_sql("PRAGMA cache_size = 500")  # in pages: 2 MB at 4 KiB
        bulk.insert_arrow(session, JournalLine, _postings(entry_id, 150))
        # back as it was, in the same units, for the rest of the transaction
        assert connection.exec_driver_sql("PRAGMA cache_size").scalar() == 500
        # a small load never touches it
        bulk.insert_arrow(session, JournalLine, _postings(entry_id, 99, first=150))
    with sqlite_store.work() as session:
        connection = session.connection()
        connection.exec_driver_sql("PRAGMA cache_size = -262144")
        # a cache already larger is left alone
        bulk.insert_arrow(session, JournalLine, _postings(entry_id, 400, first=300))
        assert connection.exec_driver_sql("PRAGMA cache_size").scalar() == -262144
    assert [s for s in seen if s.startswith("PRAGMA cache_size =")] == [
        "PRAGMA cache_size = 500",
        "PRAGMA cache_size = -131072",
        "PRAGMA cache_size = 500",
        "PRAGMA cache_size = -262144",
    ]
    with sqlite_store.work() as session:
        assert session.scalar(select(func.count()).select_from(JournalLine)) == 649


def test_a_failed_large_load_puts_the_page_cache_back(sqlite_store: Store) -> None:
    with sqlite_store.work() as session:
        entry_id = _entry(session)
    with sqlite_store.work() as session:
        connection = session.connection()
        before = connection.exec_driver_sql("PRAGMA cache_size").scalar()
        bad = _one_account_twice(_postings(entry_id, 200), 180)
        with pytest.raises(IntegrityError, match="two_accounts"):
            bulk.insert_arrow(session, JournalLine, bad)
        assert connection.exec_driver_sql("PRAGMA cache_size").scalar() == before


def test_planner_statistics_are_taken_again_after_a_rebuild(sqlite_store: Store) -> None:
    with sqlite_store.engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    with sqlite_store.work() as session:
        bulk.insert_arrow(session, JournalLine, _postings(_entry(session), 150))
    with sqlite_store.engine.connect() as connection:
        stats = dict(
            connection.execute(
                text("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'journal_line'")
            ).all()
        )
    # 150 rows; 50 per version, all of one entry
    assert stats["ix_journal_line_version_id"] == "150 50"
    assert stats["ix_journal_line_entry_id"] == "150 150"


# ---- a line names an entry that exists: SQLite's foreign key, PostgreSQL's statement trigger


def _line(entry_id: int) -> JournalLine:
    return JournalLine(
        entry_id=entry_id,
        debit_account=CONTRA,
        credit_account=LIABILITY,
        amount=Decimal("1.0000"),
        version_id=1,
        beneficiary="客户-000001",
        period_index=0,
    )


@pytest.mark.parametrize(
    ("rows", "where", "absent"),
    [
        (1, 0, 31),  # one line, its entry not there
        (500, 499, 31),  # the last of many, an id above every entry
        (500, 0, 0),  # the first, an id below every entry
        (500, 250, 20),  # one in the middle, an id between the two entries
    ],
)
def test_a_load_naming_a_missing_entry_stores_no_line(
    store: Store, rows: int, where: int, absent: int
) -> None:
    # Entries 10 and 30 exist; one row names ``absent``, the others 10 or 30.
    with store.work() as session:
        assert [_entry(session, 10), _entry(session, 30)] == [10, 30]
        entries = [10 if n % 2 else 30 for n in range(rows)]
        entries[where] = absent
        data = _postings(10, rows).set_column(0, "entry_id", pa.array(entries, pa.int64()))
        with pytest.raises((IntegrityError, ForeignKeyViolation)) as refused:
            bulk.insert_arrow(session, JournalLine, data)
        if store.backend == "postgresql":
            assert f"journal_line names journal_entry {absent}, which does not exist" in (
                str(refused.value)
            )
            assert refused.value.diag.sqlstate == "23503"
            assert refused.value.diag.constraint_name == "fk_journal_line_entry_id_journal_entry"
        else:
            assert "FOREIGN KEY constraint failed" in str(refused.value)
        assert session.scalar(select(func.count()).select_from(JournalLine)) == 0
        # the savepoint took the load back; lines naming the entry that exists still go in
        assert bulk.insert_arrow(session, JournalLine, _postings(30, 3)) == 3
    with store.work() as session:
        assert [row[0] for row in _stored(session)] == [30] * 3


def test_one_line_naming_a_missing_entry_is_refused(store: Store) -> None:
    with store.work() as session:
        entry_id = _entry(session)
        session.add(_line(entry_id))
        session.flush()
    with store.work() as session:
        session.add(_line(entry_id + 7))
        with pytest.raises(
            IntegrityError, match=r"FOREIGN KEY constraint failed|does not exist"
        ) as refused:
            session.flush()
        if store.backend == "postgresql":
            assert refused.value.orig.diag.sqlstate == "23503"  # type: ignore[union-attr]
    with store.work() as session:
        assert [row[0] for row in _stored(session)] == [entry_id]


def test_the_entry_is_checked_by_sqlites_key_and_by_a_postgresql_statement_trigger(
    store: Store,
) -> None:
    """The schema as migration 0012 left it: SQLite keeps its foreign key; PostgreSQL has no
    per-row foreign key on the line's entry, and the statement trigger in its place."""
    with store.engine.connect() as connection:
        if store.backend == "sqlite":
            keys = connection.execute(text("PRAGMA foreign_key_list(journal_line)")).all()
            # columns: id, seq, table, from, to, ...
            assert [(key[2], key[3], key[4]) for key in keys] == [
                ("journal_entry", "entry_id", "id")
            ]
            return
        keys = connection.execute(
            text(
                "SELECT conname FROM pg_constraint "
                "WHERE conrelid = 'journal_line'::regclass AND contype = 'f'"
            )
        ).scalars()
        assert list(keys) == []
        triggers = {
            row[0]: row[1]
            for row in connection.execute(
                text(
                    "SELECT tgname, tgtype FROM pg_trigger "
                    "WHERE tgrelid = 'journal_line'::regclass AND NOT tgisinternal"
                )
            )
        }
    # tgtype bits: 1 = row-level (unset: once per statement), 4 = on INSERT
    assert triggers["journal_line_entry_exists"] & 0b101 == 0b100


def test_a_temporary_journal_entry_cannot_stand_in_for_the_real_one(store: Store) -> None:
    """A session's temporary tables come first in its search path, and any role may create
    one: the check must read the real journal_entry, as the foreign key did."""
    with store.work() as session:
        entry_id = _entry(session)
        session.execute(text("CREATE TEMPORARY TABLE journal_entry (id integer)"))
        session.execute(text("INSERT INTO journal_entry (id) VALUES (:id)"), {"id": entry_id + 5})
        # the session's own name now means the temporary table
        assert session.execute(text("SELECT id FROM journal_entry")).scalars().all() == [
            entry_id + 5
        ]
        with pytest.raises((IntegrityError, ForeignKeyViolation)):
            bulk.insert_arrow(session, JournalLine, _postings(entry_id + 5, 2))
        assert session.scalar(select(func.count()).select_from(JournalLine)) == 0


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("version_id", pa.array([Decimal(1)] * 3, pa.decimal128(10, 0)), "not an Amount"),
        ("beneficiary", pa.array([dt.date(2026, 1, 1)] * 3, pa.date32()), "not loaded in bulk"),
    ],
)
def test_sqlite_refuses_what_it_would_store_in_another_form(
    sqlite_store: Store, column: str, values: pa.Array, message: str
) -> None:
    # SQLAlchemy would have stored these as text of its own making: a bulk load must not
    # store them otherwise, so it takes none.
    with sqlite_store.work() as session:
        data = _postings(_entry(session), 3)
        data = data.set_column(data.column_names.index(column), column, values)
        with pytest.raises(TypeError, match=message):
            bulk.insert_arrow(session, JournalLine, data)
        assert session.scalar(select(func.count()).select_from(JournalLine)) == 0
