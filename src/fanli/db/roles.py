"""The application's own PostgreSQL role: everything it needs, and no way to rewrite history.

Migrations run as the database's owner. The server and the command line should sign in as a
separate role, prepared by ``fanli db grant ROLE``. That role may read and add rows everywhere,
and change or remove them where the services do. It may not UPDATE, DELETE or TRUNCATE the
append-only tables (``APPEND_ONLY``). Triggers refuse those statements on both databases
whoever runs them (migration 0005). The grants add a second wall that does not depend on the
triggers staying enabled.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

from fanli.kit.errors import InputError

# Once written, never changed: a correction is a new audit event or a reversing entry.
APPEND_ONLY = (
    "audit_event",
    "audit_checkpoint",
    "journal_entry",
    "journal_line",
    "rebate_period",
)


def grant_application_role(engine: Engine, role: str) -> None:
    """Grant ``role`` (an existing PostgreSQL role) the application's privileges."""
    if engine.dialect.name != "postgresql":
        raise InputError("roles and grants are PostgreSQL's; SQLite relies on its triggers")
    with engine.begin() as connection:
        exists = connection.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
        if not exists:
            raise InputError(f"there is no PostgreSQL role {role!r} (CREATE ROLE it first)")
        quoted = connection.dialect.identifier_preparer.quote(role)
        statements = [
            f"GRANT USAGE ON SCHEMA public TO {quoted}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}",
            f"REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {quoted}",
            *(f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM {quoted}" for table in APPEND_ONLY),
        ]
        for statement in statements:
            connection.execute(text(statement))
