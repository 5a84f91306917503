"""Reading the audit trail as the verifier sees it, and verifying it in the database.

The events are read column by column as stored text, not through the ORM's types. An event whose
JSON or timestamp was damaged is then a finding ("event 12: changed"), not a crash half-way
through the check. ``verify`` runs the standalone verifier's checks (``fanli.audit.verifier``)
over the database, optionally against a checkpoint file kept outside it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import ColumnElement, String, Text, cast, select
from sqlalchemy.orm import Session

from fanli.audit.models import AuditEvent
from fanli.audit.verifier import Break, check_checkpoints, first_break

# How the databases write a timestamp as text: SQLite "2026-11-27 09:30:00.000000", PostgreSQL
# "2026-11-27 09:30:00+00". Python's fromisoformat alone would also take any character between
# the date and the time, so a changed separator would read as the same instant and go unseen.
_STORED_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([+-]\d{2}(:\d{2})?)?"
)


def _timestamp(raw: str) -> str:
    """The stored timestamp as the hash saw it: ISO 8601 in UTC."""
    if not isinstance(raw, str) or not _STORED_TIMESTAMP.fullmatch(raw):
        raise ValueError(f"{raw!r} is not a timestamp as the database writes one")
    stamp = dt.datetime.fromisoformat(raw)
    if stamp.tzinfo is None:  # SQLite keeps UTC without a zone
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.astimezone(dt.UTC).isoformat()


def plain_events(
    session: Session, *, where: ColumnElement[bool] | None = None
) -> Iterator[dict[str, Any]]:
    """Every event (or those ``where`` selects) in ``seq`` order, as the plain fields its hash
    covers plus ``hash``. An event that cannot be read carries the reason in ``unreadable``."""
    table = AuditEvent.__table__
    query = select(
        table.c.seq,
        cast(table.c.occurred_at, String).label("occurred_at"),
        table.c.type,
        table.c.actor,
        table.c.entity_type,
        table.c.entity_id,
        cast(table.c.inputs, Text).label("inputs"),
        cast(table.c.outcome, Text).label("outcome"),
        table.c.prev_hash,
        table.c.hash,
    ).order_by(table.c.seq)
    if where is not None:
        query = query.where(where)
    for row in session.execute(query.execution_options(yield_per=2000)):
        event: dict[str, Any] = dict(row._mapping)
        try:
            event["occurred_at"] = _timestamp(event["occurred_at"])
            event["inputs"] = json.loads(event["inputs"])
            event["outcome"] = json.loads(event["outcome"])
        except (TypeError, ValueError) as error:
            event["unreadable"] = f"its stored fields cannot be read ({error})"
        yield event


def event_hashes(session: Session) -> list[str]:
    """The hash of every event, in ``seq`` order: the leaves of the checkpoints' trees."""
    return list(session.scalars(select(AuditEvent.hash).order_by(AuditEvent.seq)))


@dataclass
class Verification:
    events: int
    broken: Break | None
    checkpoints_checked: int = 0
    covered: int = 0
    problems: list[str] = field(default_factory=list)
    missing: int | None = None  # the first event a checkpoint counts that is not there

    @property
    def holds(self) -> bool:
        return self.broken is None and not self.problems

    @property
    def first_bad_event(self) -> int | None:
        """The first event that does not match: from the chain, or the first event a
        checkpoint counts that is missing."""
        return self.broken.seq if self.broken else self.missing


def verify(
    session: Session,
    checkpoints: Sequence[dict[str, Any]] = (),
    public_key: Ed25519PublicKey | None = None,
) -> Verification:
    """Recompute the chain; with checkpoints, also check every signed tree head."""
    broken = first_break(plain_events(session))
    hashes = event_hashes(session)
    result = Verification(events=len(hashes), broken=broken)
    if checkpoints:
        if public_key is None:
            raise ValueError("checking checkpoints needs the operator's public key")
        report = check_checkpoints(hashes, checkpoints, public_key)
        result.checkpoints_checked = report.checked
        result.covered = report.covered
        result.problems = report.problems
        result.missing = report.first_missing
    return result
