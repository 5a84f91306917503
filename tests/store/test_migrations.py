"""Models and migrations never drift, and the schema migrates up and down on both backends."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import IntegrityError

from fanli.agreements.service import add_version
from fanli.db.migrate import alembic_config, check, upgrade
from fanli.db.status import DatabaseNotReadyError, require_current
from fanli.ledger.service import accrue
from fanli.models import Base
from fanli.sales.service import import_customers, import_products
from store.builders import activate, customers_file, percent_agreement, products_file, staff
from store.conftest import NOW, Store


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


def _journal_at_0013(store: Store, *, second_end: str = "2026-04-01") -> None:
    """The schema as migration 0013 left it, with one version's lines: two of its first
    rebate period (the second ending on ``second_end``) and one of its second."""
    config = alembic_config(store.engine.url.render_as_string(hide_password=False))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0013")
    with store.engine.begin() as connection:
        for statement in (
            "INSERT INTO agreement (id, code, name, status, created_at) "
            "VALUES (1, 'A1', 'a', 'active', '2026-01-01 00:00:00')",
            "INSERT INTO agreement_version (id, agreement_id, version, effective_from, terms, "
            "terms_hash, status, created_at) VALUES (7, 1, 1, '2026-01-01', '{}', 'h', "
            "'active', '2026-01-01 00:00:00')",
            'INSERT INTO accounting_period (id, code, start, "end", status) '
            "VALUES (1, '2026-01', '2026-01-01', '2026-02-01', 'open')",
            "INSERT INTO journal_entry (id, accounting_period_id, kind, entry_date, memo, "
            "posted_at) VALUES (1, 1, 'accrual', '2026-01-31', 'm', '2026-01-31 00:00:00')",
        ):
            connection.execute(text(statement))
        for line_id, beneficiary, index, start, end in (
            (1, "C1", 0, "2026-01-01", "2026-04-01"),
            (2, "C2", 0, "2026-01-01", second_end),
            (3, "C1", 1, "2026-04-01", "2026-07-01"),
        ):
            connection.execute(
                text(
                    "INSERT INTO journal_line (id, entry_id, debit_account, credit_account, "
                    "amount, agreement_code, version_id, beneficiary, period_index, "
                    "period_start, period_end) VALUES (:id, 1, 'rebate_contra_revenue', "
                    "'rebate_liability', :amount, 'A1', 7, :beneficiary, :index, :start, :end)"
                ),
                {
                    "id": line_id,
                    "amount": 10_000 * line_id + 5,
                    "beneficiary": beneficiary,
                    "index": index,
                    "start": start,
                    "end": end,
                },
            )


_LINES = "SELECT id, amount, version_id, beneficiary, period_index FROM journal_line ORDER BY id"


def test_the_journals_rebate_periods_move_to_their_own_table_and_back(store: Store) -> None:
    _journal_at_0013(store)
    with store.engine.connect() as connection:
        lines = [tuple(row) for row in connection.execute(text(_LINES))]
    upgrade(store.engine)
    check(store.engine)
    with store.engine.connect() as connection:
        periods = connection.execute(
            text(
                "SELECT version_id, period_index, agreement_code, period_start, period_end "
                "FROM rebate_period ORDER BY period_index"
            )
        ).all()
        assert [tuple(row) for row in connection.execute(text(_LINES))] == lines
        assert {column["name"] for column in inspect(connection).get_columns("journal_line")} == {
            "id", "entry_id", "debit_account", "credit_account", "amount", "version_id",
            "beneficiary", "period_index",
        }  # fmt: skip
    assert [(v, i, code, str(start), str(end)) for v, i, code, start, end in periods] == [
        (7, 0, "A1", "2026-01-01", "2026-04-01"),
        (7, 1, "A1", "2026-04-01", "2026-07-01"),
    ]
    # append-only, as the journal is
    with pytest.raises(Exception, match="append-only"), store.engine.begin() as connection:
        connection.execute(text("UPDATE rebate_period SET agreement_code = 'X'"))
    # and back: every line gets its agreement and dates again
    config = alembic_config(store.engine.url.render_as_string(hide_password=False))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0013")
    with store.engine.connect() as connection:
        restored = connection.execute(
            text(
                "SELECT id, agreement_code, period_start, period_end FROM journal_line ORDER BY id"
            )
        ).all()
        assert [tuple(row) for row in connection.execute(text(_LINES))] == lines
    assert [(i, code, str(start), str(end)) for i, code, start, end in restored] == [
        (1, "A1", "2026-01-01", "2026-04-01"),
        (2, "A1", "2026-01-01", "2026-04-01"),
        (3, "A1", "2026-04-01", "2026-07-01"),
    ]
    with pytest.raises(Exception, match="append-only"), store.engine.begin() as connection:
        connection.execute(text("UPDATE journal_line SET amount = 1"))
    upgrade(store.engine)
    check(store.engine)


def test_lines_that_disagree_on_a_period_are_not_migrated(store: Store) -> None:
    _journal_at_0013(store, second_end="2026-03-31")
    try:
        with pytest.raises(Exception, match="disagree on the period's agreement or dates"):
            upgrade(store.engine)
        with store.engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version"))
            assert version.scalar() == "0013"
            assert "rebate_period" not in inspect(connection).get_table_names()
            assert connection.execute(text("SELECT count(*) FROM journal_line")).scalar() == 3
    finally:
        # PostgreSQL's test database serves the tests after this one (SQLite's file is this
        # test's own): down to nothing (the journal's lines cannot be deleted) and up again.
        if store.backend == "postgresql":
            config = alembic_config(store.engine.url.render_as_string(hide_password=False))
            with store.engine.begin() as connection:
                config.attributes["connection"] = connection
                command.downgrade(config, "base")
            upgrade(store.engine)


def _batch(connection: Connection, kind: str, content_hash: str) -> None:
    connection.execute(
        text(
            "INSERT INTO import_batch (kind, source_name, content_hash, rows, status, "
            "imported_at, imported_by) VALUES (:kind, 'f.csv', :hash, 1, 'active', "
            "'2026-11-29 00:00:00', 'ann')"
        ),
        {"kind": kind, "hash": content_hash},
    )


def test_a_master_file_twice_migrates_down_only_when_held_once(store: Store) -> None:
    """Migration 0015 lets a master file come again; going back to 0014 is refused while one
    has, and a sales file is held once either way."""
    config = alembic_config(store.engine.url.render_as_string(hide_password=False))
    with store.engine.begin() as connection:
        _batch(connection, "customers", "a" * 64)
        _batch(connection, "products", "b" * 64)
        _batch(connection, "customers", "a" * 64)  # the same file again, after a later one
        _batch(connection, "sales", "c" * 64)
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        _batch(connection, "sales", "c" * 64)
    refused = "a customers file was imported more than once"
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        with pytest.raises(RuntimeError, match=refused):
            command.downgrade(config, "0014")
    with store.engine.begin() as connection:
        connection.execute(text("DELETE FROM import_batch WHERE id = 3"))
        config.attributes["connection"] = connection
        command.downgrade(config, "0014")
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        _batch(connection, "customers", "a" * 64)  # the older schema: once per kind
    upgrade(store.engine)
    check(store.engine)


def test_each_versions_first_run_is_filled_in_from_the_runs_stored(
    store: Store, tmp_path: Path
) -> None:
    """Migration 0016 names the first run that held each version, from the runs' inputs: the
    same rows the runs write themselves."""
    with store.work() as session:
        import_customers(session, store.facts, customers_file(tmp_path), actor=staff("a"), now=NOW)
        import_products(session, store.facts, products_file(tmp_path), actor=staff("a"), now=NOW)
        activate(
            session,
            add_version(session, percent_agreement(), actor=staff("a"), now=NOW).id,
            now=NOW,
        )
    for day, code in (("2026-01-31", None), ("2026-02-28", "B1"), ("2026-03-31", None)):
        if code:
            with store.work() as session:
                version = add_version(session, percent_agreement(code), actor=staff("a"), now=NOW)
                activate(session, version.id, now=NOW)
        with store.work() as session:
            accrue(
                session, store.facts, as_of=dt.date.fromisoformat(day), actor=staff("f"), now=NOW
            )
    query = text("SELECT version_id, run_id FROM version_first_run ORDER BY version_id")
    with store.engine.connect() as connection:
        written = [tuple(row) for row in connection.execute(query)]
    assert written == [(1, 1), (2, 2)]
    config = alembic_config(store.engine.url.render_as_string(hide_password=False))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0015")
    upgrade(store.engine)
    with store.engine.connect() as connection:
        assert [tuple(row) for row in connection.execute(query)] == written
    check(store.engine)
