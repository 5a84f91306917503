"""Accounting periods: calendar months that open on first use and close once, for good."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from fanli.audit.service import record
from fanli.db.session import Lock, serialize
from fanli.kit.errors import FanliError, InputError, Month, said
from fanli.kit.periods import FIRST_DAY, LAST_DAY, add_months
from fanli.ledger.models import AccountingPeriod, AccrualRun, PeriodStatus
from fanli.users.actor import Actor, Role, require


class PeriodError(FanliError):
    code = "period_error"


def month_code(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def parse_code(code: str) -> dt.date:
    """The first day of the month a period code (``2026-03``) names; four digits of year, two
    of month, within the days Fanli keeps (``26-03`` would be the year 26)."""
    written = re.fullmatch(r"([0-9]{4})-([0-9]{2})", code)  # not \d: other scripts' digits
    try:
        if written is None:
            raise ValueError(code)
        first = dt.date(int(written[1]), int(written[2]), 1)
    except ValueError:
        raise InputError.said(
            "{code} is not an accounting period (YYYY-MM)", code=repr(code)
        ) from None
    if not FIRST_DAY <= first <= LAST_DAY:
        raise InputError.said(
            "{code} is outside the days Fanli keeps ({first} to {last})",
            code=repr(code),
            first=FIRST_DAY,
            last=LAST_DAY,
        )
    return first


def ensure_period(session: Session, day: dt.date) -> AccountingPeriod:
    """The accounting period containing ``day``, opened if it does not exist yet."""
    code = month_code(day)
    find = select(AccountingPeriod).where(AccountingPeriod.code == code)
    period = session.scalar(find)
    if period is None:
        # A run and a payout may both open a new month at once (both hold the periods' lock
        # shared): the second insert waits for the first and then does nothing, where a plain
        # insert would fail on the unique code.
        start = day.replace(day=1)
        dialect = session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        session.execute(
            insert(AccountingPeriod)
            .values(code=code, start=start, end=add_months(start, 1), status=PeriodStatus.OPEN)
            .on_conflict_do_nothing(index_elements=["code"])
        )
        period = session.scalars(find).one()
    return period


def posting_period(session: Session, day: dt.date) -> AccountingPeriod:
    """Where an entry dated ``day`` goes: its own month, or, if that month is closed or before
    the latest closed one, the first open month after the latest closed one (an entry never
    lands before a period that is closed). No period closes until this transaction ends."""
    serialize(session, Lock.PERIODS, shared=True)
    latest = session.scalar(
        select(func.max(AccountingPeriod.end)).where(AccountingPeriod.status == PeriodStatus.CLOSED)
    )
    period = ensure_period(session, day if latest is None else max(day, latest))
    while period.status == PeriodStatus.CLOSED:
        period = ensure_period(session, period.end)
    return period


def closed_periods(session: Session) -> list[AccountingPeriod]:
    """The closed periods, by start; none closes until this transaction ends."""
    serialize(session, Lock.PERIODS, shared=True)
    return list(
        session.scalars(
            select(AccountingPeriod)
            .where(AccountingPeriod.status == PeriodStatus.CLOSED)
            .order_by(AccountingPeriod.start)
        )
    )


def _first_code(session: Session, *where: Any) -> str | None:
    """The code of the earliest period that meets ``where``, if any."""
    return session.scalar(
        select(AccountingPeriod.code).where(*where).order_by(AccountingPeriod.start).limit(1)
    )


def close_period(
    session: Session, code: str, *, actor: Actor, now: dt.datetime
) -> AccountingPeriod:
    """Close an accounting period: nothing is posted into it again; later changes to the rebate
    periods it covers are posted in the first open period as adjustments."""
    require(actor, Role.FINANCE, to=said("close accounting periods"))
    start = parse_code(code)
    end = add_months(start, 1)
    # A month still running cannot be closed: what is posted in its remaining days would go to
    # the next month, and a payout made today would land in a period that has not begun.
    # Checked before the period's row is made, so a refusal leaves nothing behind.
    if end > now.date():
        raise PeriodError.said(
            "accounting period {period} runs until {last}: it can be closed from {end}",
            period=code,
            last=end - dt.timedelta(days=1),
            end=end,
        )
    # Alone: a run or a payout posting now commits first, and one that starts later sees the
    # period closed. Two closes of one period queue, and the second finds it closed.
    serialize(session, Lock.PERIODS)
    own = session.scalar(select(AccountingPeriod).where(AccountingPeriod.start == start))
    if own is not None and own.status == PeriodStatus.CLOSED:
        raise PeriodError.said("accounting period {period} is closed already", period=Month(code))
    # A month before a closed one closed with the first closed one after it (nothing posts
    # before the latest close), even without a period of its own: closing it now would date
    # its close after later runs.
    later = _first_code(
        session, AccountingPeriod.start > start, AccountingPeriod.status == PeriodStatus.CLOSED
    )
    if later is not None:
        raise PeriodError.said(
            "accounting period {period} closed already, with {later}: nothing posts before a "
            "closed period",
            period=Month(code),
            later=Month(later),
        )
    # (Read under the lock, alone: no other close can have committed since.)
    period = own or ensure_period(session, start)
    # Periods close in order: an adjustment for a closed month must have an open month after
    # it to go to, never one before.
    earlier = _first_code(
        session, AccountingPeriod.start < start, AccountingPeriod.status == PeriodStatus.OPEN
    )
    if earlier is not None:
        raise PeriodError.said(
            "accounting period {earlier} is still open: periods close in order, so it closes "
            "before {period}",
            earlier=Month(earlier),
            period=Month(code),
        )
    period.status = PeriodStatus.CLOSED
    period.closed_at = now
    period.closed_by = actor.code
    # Freezes the period's results: they are the state after the latest run, whose files and
    # postings never change; later runs post adjustments in an open period instead.
    period.closed_after_run_id = session.scalar(select(func.max(AccrualRun.id)))
    session.flush()
    record(
        session,
        type="ledger.period.closed",
        actor=actor.code,
        entity_type="accounting_period",
        entity_id=code,
        inputs={"code": code},
        outcome={"status": period.status, "closed_after_run": period.closed_after_run_id},
        now=now,
    )
    return period
