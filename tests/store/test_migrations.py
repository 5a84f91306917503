"""Models and migrations never drift, and the schema migrates up and down on both backends."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect, text

from fanli.db.migrate import alembic_config, check, upgrade
from fanli.db.status import DatabaseNotReadyError, require_current
from fanli.models import Base
from store.conftest import Store


def test_models_match_migrations(store: Store) -> None:
    check(store.engine)  # raises if ``alembic check`` would find a difference


def test_every_table_exists(store: Store) -> None:
    tables = set(inspect(store.engine).get_table_names())
    assert {table.name for table in Base.metadata.sorted_tables} <= tables


def test_down_to_nothing_and_up_again(store: Store) -> None:
    config = alembic_config(store.engine.url.render_as_string(hide_password=False))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    with pytest.raises(DatabaseNotReadyError, match="is not initialised: run `fanli db upgrade`"):
        require_current(store.engine)
    upgrade(store.engine)
    require_current(store.engine)
    check(store.engine)


def test_an_older_database_keeps_its_rows(store: Store) -> None:
    config = alembic_config(store.engine.url.render_as_string(hide_password=False))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    with store.engine.begin() as connection:
        connection.execute(
            text(
                'INSERT INTO accounting_period (code, start, "end", status) '
                "VALUES ('2026-01', '2026-01-01', '2026-02-01', 'closed')"
            )
        )
    upgrade(store.engine)
    with store.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT code, status, closed_after_run_id FROM accounting_period")
        ).all()
    assert [tuple(row) for row in rows] == [("2026-01", "closed", None)]
