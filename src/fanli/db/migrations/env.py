"""Alembic environment: runs migrations on the connection the caller passes, else on the URL
configured (``fanli db upgrade``), else on FANLI_DATABASE_URL / the default SQLite database."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection

from fanli.config import Settings
from fanli.db.base import CHECKED_BY_TRIGGER_ON_POSTGRESQL
from fanli.db.session import make_engine
from fanli.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    def include_object(
        _object: Any, name: str | None, type_: str, _reflected: bool, _compare_to: Any
    ) -> bool:
        # Alembic does not read ``ddl_if``: a foreign key declared for SQLite only would
        # otherwise show as missing on PostgreSQL, where a trigger does its work.
        return not (
            type_ == "foreign_key_constraint"
            and connection.dialect.name == "postgresql"
            and name in CHECKED_BY_TRIGGER_ON_POSTGRESQL
        )

    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = config.get_main_option("sqlalchemy.url") or Settings().resolved_database_url
    engine = make_engine(url)
    with engine.connect() as new_connection:
        _run(new_connection)
    engine.dispose()
