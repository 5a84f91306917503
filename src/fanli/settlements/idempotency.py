"""Idempotency keys for calls that move money.

A call claims its key before doing anything: the claim is a row in ``idempotency_record``,
inserted in a savepoint. If the row exists (or another transaction holding the same key commits
first, which PostgreSQL makes the claim wait for), the call does not run again: with the same
request it returns the first result, with another request it is refused. The result is stored in
the same transaction as the work, so a call that fails leaves no claim behind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fanli.audit.service import canonical_json
from fanli.kit.errors import FanliError
from fanli.settlements.models import IdempotencyRecord


class IdempotencyError(FanliError):
    code = "idempotency_error"


class KeyReusedError(IdempotencyError):
    code = "idempotency_key_reused"


def _digest(operation: str, request: dict[str, Any]) -> str:
    body = canonical_json({"operation": operation, "request": request})
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def claim(
    session: Session, key: str | None, operation: str, request: dict[str, Any], now: dt.datetime
) -> dict[str, Any] | None:
    """Claim ``key`` for this call, or return the first call's result to replay it."""
    if key is None or not key.strip():
        raise IdempotencyError.said(
            "{operation} moves money and needs an idempotency key", operation=operation
        )
    if len(key) > 128:
        raise IdempotencyError.said("an idempotency key has at most 128 characters")
    digest = _digest(operation, request)
    existing = session.get(IdempotencyRecord, key)
    if existing is None:
        try:
            with session.begin_nested():
                session.add(
                    IdempotencyRecord(
                        key=key, operation=operation, request_sha256=digest, created_at=now
                    )
                )
            return None
        except IntegrityError:
            # Another call with this key committed while this one waited for its row.
            existing = session.get(IdempotencyRecord, key, populate_existing=True)
            assert existing is not None
    if existing.request_sha256 != digest:
        raise KeyReusedError.said(
            "idempotency key {key} was used for another request ({operation}); use a new key "
            "for a new request",
            key=repr(key),
            operation=existing.operation,
        )
    assert existing.result is not None  # a claim without a result never commits
    return existing.result


def remember(session: Session, key: str, result: dict[str, Any]) -> None:
    """Store the result of the call that claimed ``key``."""
    record = session.get(IdempotencyRecord, key)
    assert record is not None
    record.result = result
    session.flush()
