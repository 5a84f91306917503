"""Reading the audit trail, and checking that its chain is intact."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fanli.audit.models import AuditEvent
from fanli.audit.service import GENESIS, HASHED_FIELDS, event_hash


def events(session: Session, *, type_prefix: str | None = None) -> Sequence[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.seq)
    if type_prefix:
        query = query.where(AuditEvent.type.startswith(type_prefix))
    return session.scalars(query).all()


def store_version(session: Session) -> int:
    """How many audit events there are: a number that grows with every change to the store.

    Every state change writes an audit event in its own transaction, and events are appended
    one transaction at a time (the chain lock), so two reads that see the same version see the
    same store. Caches of values computed from the store key on it (ADR 0007)."""
    return session.scalar(select(func.coalesce(func.max(AuditEvent.seq), 0))) or 0


def first_broken_event(session: Session) -> int | None:
    """The ``seq`` of the first event whose link or hash does not match, or None."""
    previous = GENESIS
    expected_seq = 1
    for event in session.scalars(select(AuditEvent).order_by(AuditEvent.seq)):
        recomputed = event_hash({name: getattr(event, name) for name in HASHED_FIELDS})
        if event.seq != expected_seq or event.prev_hash != previous or event.hash != recomputed:
            return event.seq
        previous = event.hash
        expected_seq += 1
    return None
