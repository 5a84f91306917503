"""Reading the audit trail, and checking that its chain is intact."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fanli.audit.models import AuditEvent
from fanli.audit.trail import plain_events
from fanli.audit.verifier import first_break


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
    """The ``seq`` of the first event that does not match the chain, or None (the whole check,
    with checkpoints, is ``fanli.audit.trail.verify``)."""
    broken = first_break(plain_events(session))
    return broken.seq if broken else None
