"""The periodic audit on a schedule, inside the server (cron is the other way: docs/audit.md).

Every ``FANLI_AUDIT_EVERY_MINUTES`` the server:
- audits the current accounting period and the one before it, acting as ``FANLI_AUDIT_AS``;
- when the operator's signing key is in the data directory, also signs a checkpoint and
  appends it to the checkpoint file.

Several server processes may share one store, and each runs this loop. So a round starts by
taking a lock, and skips a period whose last audit is more recent than half the interval: the
store sees one round per interval, however many processes there are.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fanli.db.session import Lock, serialize, unit_of_work
from fanli.kit.periods import add_months
from fanli.ledger.periods import month_code
from fanli.oversight.audits import run_audit
from fanli.oversight.checkpoints import (
    SIGNING_KEY,
    append_to_file,
    load_signing_key,
    make_checkpoint,
)
from fanli.oversight.models import AuditRun
from fanli.sales.store import FactStore
from fanli.users.queries import actor as load_actor

log = logging.getLogger(__name__)
CHECKPOINTS = "audit-checkpoints.jsonl"


def scheduled_round(
    session: Session,
    facts: FactStore,
    *,
    actor_code: str,
    every: dt.timedelta,
    data_dir: Path,
    now: dt.datetime,
) -> tuple[list[str], dict[str, Any] | None]:
    """One round: the periods audited (those not audited within half the interval), and the
    checkpoint signed, if any (the caller appends it to the file once it is committed)."""
    serialize(session, Lock.AUDIT_SCHEDULE)
    actor = load_actor(session, actor_code)
    this_month = now.date().replace(day=1)
    audited = []
    for first_day in (add_months(this_month, -1), this_month):
        code = month_code(first_day)
        latest = session.scalar(
            select(func.max(AuditRun.started_at)).where(AuditRun.period == code)
        )
        if latest is not None and now - latest < every / 2:
            continue
        run_audit(session, facts, code, actor=actor, now=now)
        audited.append(code)
    key = data_dir / SIGNING_KEY
    checkpoint = None
    if audited and key.exists():
        checkpoint = make_checkpoint(session, load_signing_key(key), actor=actor, now=now)
    return audited, checkpoint


async def every(
    interval: dt.timedelta,
    sessions: sessionmaker[Session],
    facts: FactStore,
    *,
    actor_code: str,
    data_dir: Path,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> None:
    """Run a round every ``interval`` until cancelled; a failed round is logged, not fatal."""

    def one_round() -> list[str]:
        with unit_of_work(sessions) as session:
            audited, checkpoint = scheduled_round(
                session,
                facts,
                actor_code=actor_code,
                every=interval,
                data_dir=data_dir,
                now=clock(),
            )
        if checkpoint is not None:  # into the file once it is committed
            append_to_file(data_dir / CHECKPOINTS, checkpoint)
        return audited

    while True:
        try:
            audited = await asyncio.to_thread(one_round)
            if audited:
                log.info("scheduled audit of %s", ", ".join(audited))
        except Exception:  # a bad round must not stop the server or the next round
            log.exception("the scheduled audit failed")
        await asyncio.sleep(interval.total_seconds())
