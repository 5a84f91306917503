"""The store under test: real SQLite and real PostgreSQL, every integration test on both.

PostgreSQL is the one at ``FANLI_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/
test``, trust auth). The suite creates its own database there, migrates it once, and empties
every table before each test. Without a reachable server the PostgreSQL cases are skipped with
the reason printed by ``-ra``; under CI (``CI`` set) an unreachable server fails the run instead,
so a missing database can never pass as green.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from fanli.db.migrate import upgrade
from fanli.db.session import make_engine, session_factory, unit_of_work
from fanli.sales.store import FactStore
from postgres import empty_postgres

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


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "fanli.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # closing the last connection checkpoints the WAL into the file
    assert not path.with_name("fanli.db-wal").exists()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated, empty database on each backend, and an empty fact store."""
    if request.param == "sqlite":
        database = tmp_path / "fanli.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), database)
        engine = make_engine(f"sqlite:///{database}")
    else:
        engine = make_engine(request.getfixturevalue("postgres_url"))
        empty_postgres(engine)
    yield Store(engine, session_factory(engine), FactStore(tmp_path / "facts"), request.param)
    engine.dispose()
