"""Engines and units of work. Services take a ``Session`` and only flush; the edge (a CLI command,
an API request) opens one unit of work and commits once, so an operation is all or nothing.

SQLite runs in WAL mode with ``synchronous=FULL`` and enforced foreign keys; its transactions
begin IMMEDIATE, so two writers queue instead of one failing half-way on a lock upgrade. Read
transactions (``read_session_factory``) begin DEFERRED and take no lock; on PostgreSQL they are
READ ONLY and REPEATABLE READ. Either way a read transaction sees one snapshot from its first
query to its end, which the API's read cache relies on (ADR 0007).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from fanli.kit.errors import FanliError, InputError

READ_ONLY = "fanli_read_only"  # the execution option that marks a read transaction


# The setting that names the database, for messages about it.
DATABASE_SETTING = "FANLI_DATABASE_URL"


def database_url(url: str) -> str:
    """``url`` if it names a database Fanli stores in (SQLite or PostgreSQL), else a refusal
    naming the setting; a password in it is never repeated."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # not a URL; a port that is not a number
        raise InputError(
            "is not a database URL: use sqlite:///path/to/fanli.db or "
            "postgresql://user@host/database",
            field=DATABASE_SETTING,
        ) from None
    # The drivers Fanli is installed with: sqlite3, and psycopg (3) for PostgreSQL.
    if parsed.drivername not in {"sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg"}:
        raise InputError(
            f"{parsed.render_as_string(hide_password=True)}: Fanli stores in SQLite "
            "(sqlite:///path/to/fanli.db) or PostgreSQL (postgresql://user@host/database)",
            field=DATABASE_SETTING,
        )
    return url


def _created(url: str, options: dict[str, Any]) -> Engine:
    try:
        return create_engine(url, **options)
    except (ValueError, TypeError) as error:  # a query option SQLAlchemy cannot read
        raise InputError(
            f"{make_url(url).render_as_string(hide_password=True)}: {error}",
            field=DATABASE_SETTING,
        ) from None


class DatabaseUnavailableError(FanliError):
    code = "database_unavailable"


def reachable(engine: Engine) -> Engine:
    """``engine`` once a connection to its database has been opened: one that cannot be (no
    server, no such host or database, no right to it, a file that is not a database) is
    refused in one line, with the driver's reason, before anything is begun."""
    try:
        with engine.connect():
            pass
    except DBAPIError as error:
        reason = str(error.orig or error).strip()
        raise DatabaseUnavailableError(
            f"the database ({DATABASE_SETTING}) could not be used: "
            f"{reason.splitlines()[0] if reason else type(error.orig).__name__}"
        ) from None
    return engine


def make_engine(url: str, **options: Any) -> Engine:
    """An engine for ``url`` with Fanli's connection settings."""
    database_url(url)
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = _created(url, options)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the driver, decide where transactions begin (see below).
            connection.isolation_level = None
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection: Any) -> None:
            # Readers take no lock (WAL lets them run beside the writer); writers queue.
            read_only = connection.get_execution_options().get(READ_ONLY, False)
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = _created(url, options)

    @event.listens_for(engine, "begin")
    def _read_only(connection: Any) -> None:
        # A read transaction that tries to write fails at once instead of changing anything,
        # and sees one snapshot throughout (as SQLite's WAL readers do), not each statement's own.
        if connection.get_execution_options().get(READ_ONLY, False):
            connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    return engine


def read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for transactions that only read: no write lock on SQLite, READ ONLY on
    PostgreSQL."""
    return sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


class Lock(IntEnum):
    """Transaction-scoped locks for operations that must not run side by side."""

    ACCRUAL = 7301
    # Any import: two at once could each find the other's sales lines not yet stored, or
    # build the next master snapshot from the same previous one.
    IMPORT = 7302
    AUDIT_CHAIN = 7305
    SETTLEMENT = 7306
    AUDIT_SCHEDULE = 7307
    ADMINISTRATORS = 7308  # disabling users: the last active administrator must stay
    # Accounting periods: closing one takes it alone; posting an entry, or reading which
    # periods are closed to decide where and how to post, takes it shared. So no period closes
    # between a run's reading of the closed periods and its commit.
    PERIODS = 7309


class LockOrderError(RuntimeError):
    """A lock asked for after the audit chain's: a transaction that writes audit events takes
    the chain's lock last (it is held to the commit), or two transactions could each hold the
    lock the other waits for."""


_HELD = "fanli.locks"  # Session.info key: the locks this transaction holds


@event.listens_for(Session, "after_transaction_end")
def _forget_locks(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the outermost transaction: its locks are gone
        session.info.pop(_HELD, None)


def serialize(session: Session, lock: Lock, *, shared: bool = False) -> None:
    """Wait for, then hold until commit or rollback, the lock of one kind of operation;
    ``shared`` holders wait only for, and only hold off, those who take it alone.

    PostgreSQL takes an advisory transaction lock. SQLite needs nothing: every transaction
    begins IMMEDIATE, so writers already run one at a time. On both, the order is checked:
    the audit chain's lock comes last (``LockOrderError``), so the tests on SQLite find an
    order that would deadlock on PostgreSQL.
    """
    held: set[Lock] = session.info.setdefault(_HELD, set())
    if lock in held:
        return
    if Lock.AUDIT_CHAIN in held:
        raise LockOrderError(f"{lock.name} asked for after the audit chain's lock")
    if session.get_bind().dialect.name == "postgresql":
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        session.execute(text(f"SELECT {function}(:key)"), {"key": int(lock)})
    held.add(lock)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    with factory() as session, session.begin():
        yield session
