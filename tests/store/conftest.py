"""The store under test: real SQLite and real PostgreSQL, every integration test on both.

PostgreSQL is the one at ``FANLI_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/
test``, trust auth). The suite creates its own database there, migrates it once, and empties
every table before each test. Without a reachable server the PostgreSQL cases are skipped with
the reason printed by ``-ra``; under CI (``CI`` set) an unreachable server fails the run instead,
so a missing database can never pass as green.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from fanli.db.migrate import upgrade
from fanli.db.session import make_engine, session_factory, unit_of_work
from fanli.models import Base
from fanli.sales.store import FactStore

POSTGRES_URL = os.environ.get("FANLI_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
NOW = dt.datetime(2026, 11, 27, 9, 30, tzinfo=dt.UTC)


@dataclass
class Store:
    """One migrated database and a fact store directory, for one test."""

    engine: Engine
    sessions: sessionmaker[Session]
    facts: FactStore
    backend: str

    def work(self) -> AbstractContextManager[Session]:
        return unit_of_work(self.sessions)


def _postgres_admin() -> tuple[Engine | None, str]:
    url = make_url(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    engine = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        engine.dispose()
        first_line = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        return None, f"PostgreSQL not reachable at {url.render_as_string()}: {first_line}"
    return engine, ""


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    admin, problem = _postgres_admin()
    if admin is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL: {problem}")
        pytest.skip(problem)
    name = f"fanli_test_{os.getpid()}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "fanli.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # closing the last connection checkpoints the WAL into the file
    assert not path.with_name("fanli.db-wal").exists()
    return path


def _empty_postgres(engine: Engine) -> None:
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated, empty database on each backend, and an empty fact store."""
    if request.param == "sqlite":
        database = tmp_path / "fanli.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), database)
        engine = make_engine(f"sqlite:///{database}")
    else:
        engine = make_engine(request.getfixturevalue("postgres_url"))
        _empty_postgres(engine)
    yield Store(engine, session_factory(engine), FactStore(tmp_path / "facts"), request.param)
    engine.dispose()
