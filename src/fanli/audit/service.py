"""Writing audit events. Every service that changes state calls ``record`` in its own
transaction, explicitly (no ORM signals), so the event commits or rolls back with the change.

The chain: ``hash = sha256(canonical JSON of the event's fields and prev_hash)``; the first
event's ``prev_hash`` is 64 zeros. Canonical JSON sorts keys, uses no spaces, keeps non-ASCII
text as UTF-8, and writes Decimals and dates as strings, so the hash does not depend on the
database or the Python version. The definitions live in ``fanli.audit.verifier``, the
standalone file auditors run, so that what is written and what is checked cannot drift.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.audit.models import AuditEvent
from fanli.audit.verifier import GENESIS, canonical
from fanli.audit.verifier import event_hash as verifier_event_hash
from fanli.db.session import Lock, serialize


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(item) for item in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    return value


def canonical_json(value: Any) -> str:
    return canonical(_plain(value))


def event_hash(fields: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``HASHED_FIELDS``, exactly as the verifier computes it."""
    return verifier_event_hash(_plain(dict(fields)))


def record(
    session: Session,
    *,
    type: str,
    actor: str,
    entity_type: str,
    entity_id: str | int,
    inputs: dict[str, Any],
    outcome: dict[str, Any],
    now: dt.datetime,
) -> AuditEvent:
    """Append one event to the chain, in the caller's transaction."""
    return record_all(
        session,
        [
            Change(
                type=type,
                actor=actor,
                entity_type=entity_type,
                entity_id=entity_id,
                inputs=inputs,
                outcome=outcome,
            )
        ],
        now=now,
    )[0]


@dataclass(frozen=True)
class Change:
    """What one audit event says: the fields ``record`` takes, for ``record_all``."""

    type: str
    actor: str
    entity_type: str
    entity_id: str | int
    inputs: dict[str, Any]
    outcome: dict[str, Any]


def record_all(
    session: Session, changes: Sequence[Change], *, now: dt.datetime
) -> list[AuditEvent]:
    """Append one event per change to the chain, in order, in the caller's transaction.

    The same events as one ``record`` call per change, with one read of the chain head and one
    flush: a run that expires a hundred agreements should not read the head a hundred times.
    """
    if not changes:
        return []
    # Writers queue on the chain head; the unique prev_hash would refuse a fork anyway.
    serialize(session, Lock.AUDIT_CHAIN)
    last = session.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS)
    events = []
    for change in changes:
        fields: dict[str, Any] = {
            "seq": seq,
            "occurred_at": now,
            "type": change.type,
            "actor": change.actor,
            "entity_type": change.entity_type,
            "entity_id": str(change.entity_id),
            "inputs": _plain(change.inputs),
            "outcome": _plain(change.outcome),
            "prev_hash": prev_hash,
        }
        event = AuditEvent(**fields, hash=event_hash(fields))
        events.append(event)
        seq, prev_hash = seq + 1, event.hash
    session.add_all(events)
    session.flush()
    return events
