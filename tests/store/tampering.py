"""What someone with write access to the database (its files, or its superuser) can do to the
audit trail, as test helpers. Each works inside the caller's transaction, so a test can tamper,
verify and roll back."""

from __future__ import annotations

import json
import random
import secrets
from typing import Any

from sqlalchemy import Connection, text

from fanli.audit.verifier import event_hash
from fanli.db.roles import APPEND_ONLY

COLUMNS = ("seq", "occurred_at", "type", "actor", "entity_type", "entity_id", "inputs",
           "outcome", "prev_hash", "hash")  # fmt: skip
HEX = "0123456789abcdef"


def unprotect(connection: Connection) -> None:
    """Switch the append-only triggers off for this transaction, as a superuser could."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        return
    for table in APPEND_ONLY:
        for action in ("update", "delete"):
            connection.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{action}"))


def count(connection: Connection) -> int:
    return int(connection.scalar(text("SELECT count(*) FROM audit_event")) or 0)


def _row(connection: Connection, seq: int) -> dict[str, Any]:
    row = connection.execute(
        text(
            "SELECT seq, CAST(occurred_at AS VARCHAR) AS occurred_at, type, actor, entity_type,"
            " entity_id, CAST(inputs AS VARCHAR) AS inputs, CAST(outcome AS VARCHAR) AS outcome,"
            " prev_hash, hash FROM audit_event WHERE seq = :seq"
        ),
        {"seq": seq},
    ).one()
    return dict(row._mapping)


def _set(connection: Connection, seq: int, values: dict[str, Any]) -> None:
    assignments = ", ".join(f"{name} = :{name}" for name in values)
    connection.execute(
        text(f"UPDATE audit_event SET {assignments} WHERE seq = :where_seq"),
        {**values, "where_seq": seq},
    )


def _flip_char(value: str, rng: random.Random, alphabet: str) -> str:
    position = rng.randrange(len(value))
    replacement = rng.choice([c for c in alphabet if c != value[position]])
    return value[:position] + replacement + value[position + 1 :]


def _flip_json(value: Any, rng: random.Random) -> Any:
    """One character of one string (or one digit of one number) inside a JSON value changed,
    so that the result is still JSON (PostgreSQL's json type would refuse anything else)."""
    if isinstance(value, dict) and value:
        key = rng.choice(sorted(value))
        return {**value, key: _flip_json(value[key], rng)}
    if isinstance(value, list) and value:
        index = rng.randrange(len(value))
        return [*value[:index], _flip_json(value[index], rng), *value[index + 1 :]]
    if isinstance(value, str) and value:
        return _flip_char(value, rng, "abcdefghijklmnopqrstuvwxyz0123456789")
    if isinstance(value, bool) or value is None:
        return "changed"
    if isinstance(value, int | float):
        return value + 1
    return {"added": "x"}  # an empty object or list gains a member


def flip(connection: Connection, seq: int, column: str, rng: random.Random) -> None:
    """Change one character of one stored field of event ``seq``."""
    row = _row(connection, seq)
    postgres = connection.dialect.name == "postgresql"
    if column in {"prev_hash", "hash"}:
        new: Any = _flip_char(row[column], rng, HEX)
    elif column in {"inputs", "outcome"} and postgres:
        new = json.dumps(_flip_json(json.loads(row[column]), rng), ensure_ascii=False)
    elif column == "occurred_at" and postgres:
        connection.execute(
            text("UPDATE audit_event SET occurred_at = occurred_at + interval '1 second' "
                 "WHERE seq = :seq"),
            {"seq": seq},
        )  # fmt: skip
        return
    else:
        new = _flip_char(row[column], rng, 'abcdefghijklmnopqrstuvwxyz0123456789-: {}"')
    _set(connection, seq, {column: new})


def delete(connection: Connection, seq: int, *, renumber: bool) -> None:
    last = count(connection)
    connection.execute(text("DELETE FROM audit_event WHERE seq = :seq"), {"seq": seq})
    if renumber:
        for moved in range(seq + 1, last + 1):
            _set(connection, moved, {"seq": moved - 1})


def swap(connection: Connection, first: int, second: int) -> None:
    """Exchange the contents of two events (their positions stay)."""
    a, b = _row(connection, first), _row(connection, second)
    # The hashes are unique: park one row's on placeholders first.
    _set(connection, first, {"hash": secrets.token_hex(32), "prev_hash": secrets.token_hex(32)})
    _set(connection, second, {k: a[k] for k in COLUMNS if k != "seq"})
    _set(connection, first, {k: b[k] for k in COLUMNS if k != "seq"})


def insert(connection: Connection, seq: int, *, valid_hash: bool) -> None:
    """Put a new event in at ``seq``, renumbering the later ones. Its ``prev_hash`` cannot be
    its predecessor's (that one is taken, and prev_hash is unique), so it is made up."""
    for moved in range(count(connection), seq - 1, -1):
        _set(connection, moved, {"seq": moved + 1})
    fields = {
        "seq": seq,
        "occurred_at": "2026-11-27T09:30:00+00:00",
        "type": "settlement.paid",
        "actor": "mallory",
        "entity_type": "settlement",
        "entity_id": "999",
        "inputs": {},
        "outcome": {"amount": "1000000.00"},
        "prev_hash": secrets.token_hex(32),
    }
    fields["hash"] = event_hash(fields) if valid_hash else secrets.token_hex(32)
    connection.execute(
        text(
            "INSERT INTO audit_event (seq, occurred_at, type, actor, entity_type, entity_id,"
            " inputs, outcome, prev_hash, hash) VALUES (:seq, :occurred_at, :type, :actor,"
            " :entity_type, :entity_id, :inputs, :outcome, :prev_hash, :hash)"
        ),
        {**fields, "inputs": "{}", "outcome": json.dumps(fields["outcome"])},
    )


def truncate(connection: Connection, keep: int) -> None:
    connection.execute(text("DELETE FROM audit_event WHERE seq > :keep"), {"keep": keep})


def rewrite(connection: Connection, seq: int, plain_events: list[dict[str, Any]]) -> None:
    """Change event ``seq``'s actor and recompute every hash from it on: what a superuser who
    knows the scheme would do. ``plain_events`` is the trail as the verifier reads it."""
    previous = plain_events[seq - 2]["hash"] if seq > 1 else "0" * 64
    for event in plain_events[seq - 1 :]:
        changed = {**event, "prev_hash": previous}
        if event["seq"] == seq:
            changed["actor"] = "mallory"
        changed["hash"] = event_hash(changed)
        _set(
            connection,
            event["seq"],
            {"actor": changed["actor"], "prev_hash": previous, "hash": changed["hash"]},
        )
        previous = changed["hash"]
