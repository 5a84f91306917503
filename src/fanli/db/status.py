"""Whether a database is at the newest migration, so that commands refuse an old schema."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from fanli.db.migrate import alembic_config
from fanli.kit.errors import FanliError


class DatabaseNotReadyError(FanliError):
    code = "database_not_ready"


def require_current(engine: Engine) -> None:
    script = ScriptDirectory.from_config(alembic_config(str(engine.url)))
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current != script.get_current_head():
        where = engine.url.render_as_string(hide_password=True)
        state = "is not initialised" if current is None else f"is at revision {current}"
        raise DatabaseNotReadyError(f"the database {where} {state}: run `fanli db upgrade`")
