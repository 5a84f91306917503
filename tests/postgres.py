"""The test suite's PostgreSQL: one database per test session, created, migrated and dropped
here, and shared by every test that uses the ``postgres_url`` fixture (tests/conftest.py).

The server is the one at ``FANLI_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:
5432/test``, trust auth). Without a reachable server the PostgreSQL cases are skipped with the
reason printed by ``-ra``; under CI (``CI`` set) an unreachable server fails the run instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from fanli.db.migrate import upgrade
from fanli.db.session import make_engine
from fanli.models import Base

POSTGRES_URL = os.environ.get("FANLI_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


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


def postgres_database() -> Iterator[str]:
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


def empty_postgres(engine: Engine) -> None:
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        # The append-only tables refuse TRUNCATE by trigger; a test reset is the superuser's
        # deliberate act, done with triggers off for this transaction only.
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
