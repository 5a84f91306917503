"""A customer's statement for one rebate period, its answer (signed off or disputed), and the
company's answer to a dispute (the numbers stand, or a correction follows).

The statement is what the customer's own view shows, for the rebate periods that start on
``period_start``:
- its results per agreement, from the latest runs (``statement_rows``, the numbers the
  accrual posted and the settlements are computed from);
- the settlements of those periods.

Its sha256 is taken over the canonical JSON of those numbers. An answer is therefore tied to
exactly the figures the customer saw.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fanli.audit.service import canonical_json, record
from fanli.customers.queries import customer_by_code
from fanli.kit.errors import InputError, NotFoundError
from fanli.ledger.queries import StatementRow, statement_rows
from fanli.sales.store import FactStore
from fanli.settlements.models import (
    OPEN,
    DisputeAnswer,
    DisputeOutcome,
    Settlement,
    StatementDecision,
    StatementResponse,
)
from fanli.users.actor import Actor, PermissionDeniedError, Role, require


@dataclass(frozen=True)
class PeriodStatement:
    customer: str
    legal_name: str
    period_start: dt.date
    rows: list[StatementRow]
    settlements: list[Settlement]
    sha256: str
    rows_sha256: str  # the results alone: what a correction changes


def period_statement(
    session: Session, store: FactStore, customer_code: str, period_start: dt.date
) -> PeriodStatement:
    found = period_statements(session, store, customer_code, only=period_start)
    if period_start in found:
        return found[period_start]
    customer = customer_by_code(session, customer_code)
    return _statement(customer_code, customer.legal_name, period_start, [], [])


def period_statements(
    session: Session, store: FactStore, customer_code: str, *, only: dt.date | None = None
) -> dict[dt.date, PeriodStatement]:
    """Every period statement of a customer (or only the one from ``only``), by the day its
    rebate periods start: one replay of the runs for all of them."""
    customer = customer_by_code(session, customer_code)
    by_start: dict[dt.date, list[StatementRow]] = {}
    for row in statement_rows(session, store, customer_code):
        if only is None or row.period_start == only:
            by_start.setdefault(row.period_start, []).append(row)
    query = select(Settlement).where(Settlement.beneficiary == customer_code)
    if only is not None:
        query = query.where(Settlement.period_start == only)
    paid: dict[dt.date, list[Settlement]] = {}
    for settlement in session.scalars(query.order_by(Settlement.id)):
        paid.setdefault(settlement.period_start, []).append(settlement)
    return {
        start: _statement(customer_code, customer.legal_name, start, rows, paid.get(start, []))
        for start, rows in sorted(by_start.items())
    }


def _statement(
    customer_code: str,
    legal_name: str,
    period_start: dt.date,
    rows: list[StatementRow],
    paid: list[Settlement],
) -> PeriodStatement:
    numbers: dict[str, Any] = {
        "customer": customer_code,
        "period_start": period_start,
        "rows": [
            [r.agreement_code, r.version, r.period_end, r.basis, r.tier, r.rate, r.rebate]
            for r in rows
        ],
        "settlements": [[s.id, s.amount, s.status] for s in paid],
    }
    digest = hashlib.sha256(canonical_json(numbers).encode("utf-8")).hexdigest()
    results = {key: numbers[key] for key in ("customer", "period_start", "rows")}
    rows_digest = hashlib.sha256(canonical_json(results).encode("utf-8")).hexdigest()
    return PeriodStatement(customer_code, legal_name, period_start, rows, paid, digest, rows_digest)


def running_until(statement: PeriodStatement, day: dt.date) -> dt.date | None:
    """The last day of the statement's rebate periods if they have not all ended on ``day``
    (its numbers can still change, so it is not signed off yet); None once they have."""
    end = max((row.period_end for row in statement.rows), default=statement.period_start)
    return end - dt.timedelta(days=1) if end > day else None


def respond(
    session: Session,
    store: FactStore,
    customer_code: str,
    period_start: dt.date,
    *,
    decision: StatementDecision,
    comment: str,
    actor: Actor,
    now: dt.datetime,
) -> StatementResponse:
    """The customer's own user signs off or disputes its statement (a dispute says why)."""
    require(actor, Role.CUSTOMER, to="answer statements")
    if actor.customer_code != customer_code:
        raise PermissionDeniedError(f"{actor.code} may answer only its own entity's statements")
    statement = period_statement(session, store, customer_code, period_start)
    if not statement.rows:
        raise NotFoundError(f"there is no statement for {customer_code} from {period_start}")
    last_day = running_until(statement, now.date())
    if decision is StatementDecision.SIGNED_OFF and last_day is not None:
        # Its numbers can still change; a dispute, though, may come at any time.
        raise InputError.said_at(
            "the rebate period runs until {day}; its statement can be signed off once it has ended",
            field="decision",
            day=last_day,
        )
    if decision is StatementDecision.DISPUTED and not comment.strip():
        raise InputError.said_at("a dispute needs a comment: what is wrong", field="comment")
    _check_turn(session, statement, decision, now)
    answer = StatementResponse(
        customer_code=customer_code,
        period_start=period_start,
        statement_sha256=statement.sha256,
        rows_sha256=statement.rows_sha256,
        decision=decision.value,
        comment=comment.strip(),
        responded_by=actor.code,
        responded_at=now,
    )
    session.add(answer)
    session.flush()
    record(
        session,
        type=f"statement.{decision.value}",
        actor=actor.code,
        entity_type="statement_response",
        entity_id=answer.id,
        inputs={"customer": customer_code, "period_start": period_start, "comment": answer.comment},
        outcome={"statement_sha256": statement.sha256},
        now=now,
    )
    return answer


def _check_turn(
    session: Session, statement: PeriodStatement, decision: StatementDecision, now: dt.datetime
) -> None:
    """A sign-off of these numbers is final (new numbers are answered afresh). A dispute waits
    for the company's answer; meanwhile the customer may withdraw it by signing off, but not
    dispute again. After "the numbers stand" it may sign off or dispute again; while a
    correction is under way it may dispute again, and signs off the corrected statement. The
    numbers are the results: a settlement of them since is no new numbers."""
    if decision is StatementDecision.SIGNED_OFF and _awaits_correction(session, statement):
        raise InputError.said_at(
            "a correction of these numbers is under way; the corrected statement is the one to "
            "sign off",
            field="decision",
        )
    latest = next(
        (
            response
            for response in session.scalars(
                select(StatementResponse)
                .where(StatementResponse.customer_code == statement.customer)
                .where(StatementResponse.period_start == statement.period_start)
                .order_by(StatementResponse.id.desc())
            )
            if answers_these_numbers(response, statement)
        ),
        None,
    )
    if latest is None:
        return
    day = latest.responded_at.astimezone(now.tzinfo).date()  # the day in the caller's zone
    if latest.decision == StatementDecision.SIGNED_OFF:
        raise InputError.said_at(
            "this statement was signed off on {day}; it is answered again only if its numbers "
            "change",
            field="decision",
            day=day,
        )
    reply = dispute_answers(session, [latest.id]).get(latest.id)
    if reply is None and decision is StatementDecision.DISPUTED:
        raise InputError.said_at(
            "the dispute of {day} is waiting for the company's answer",
            field="decision",
            day=day,
        )


def _awaits_correction(session: Session, statement: PeriodStatement) -> bool:
    """Whether the customer's last word on this period is a dispute the company promised to
    correct, and the results are still those disputed (a settlement proposed meanwhile changes
    the statement, not the results)."""
    last = session.scalars(
        select(StatementResponse)
        .where(StatementResponse.customer_code == statement.customer)
        .where(StatementResponse.period_start == statement.period_start)
        .order_by(StatementResponse.id.desc())
        .limit(1)
    ).first()
    if last is None or last.decision != StatementDecision.DISPUTED:
        return False
    reply = dispute_answers(session, [last.id]).get(last.id)
    return (
        reply is not None
        and reply.outcome == DisputeOutcome.CORRECTING
        and not _corrected(last, statement)
    )


def may_answer(
    session: Session, statement: PeriodStatement, now: dt.datetime
) -> list[StatementDecision]:
    """What the customer may answer to this statement now (its period's end aside)."""
    allowed = []
    for decision in StatementDecision:
        try:
            _check_turn(session, statement, decision, now)
        except InputError:
            continue
        allowed.append(decision)
    return allowed


class Standing(StrEnum):
    """Why a customer's statement for a period is not settled business yet."""

    DISPUTED = "disputed"  # the customer disputed it and nobody has answered
    CORRECTING = "correcting"  # a correction was promised and its numbers have not come yet


@dataclass(frozen=True)
class StatementStanding:
    standing: Standing
    since: dt.datetime  # when the customer disputed, or when the correction was promised
    comment: str  # the customer's words, or the company's answer


def standings(
    session: Session, store: FactStore, keys: Collection[tuple[str, dt.date]]
) -> dict[tuple[str, dt.date], StatementStanding]:
    """The statements among these (customer, period start) keys that are disputed or being
    corrected. Someone about to propose, approve or pay a settlement of such a period should
    know: the customer has said the numbers are wrong, or the company has agreed they are."""
    wanted = set(keys)
    if not wanted:
        return {}
    customers = {customer for customer, _ in wanted}
    latest = (
        select(func.max(StatementResponse.id))
        .where(StatementResponse.customer_code.in_(customers))
        .group_by(StatementResponse.customer_code, StatementResponse.period_start)
        .scalar_subquery()
    )
    disputes = [
        response
        for response in session.scalars(
            select(StatementResponse)
            .where(StatementResponse.id.in_(latest))
            .where(StatementResponse.decision == StatementDecision.DISPUTED)
        )
        if (response.customer_code, response.period_start) in wanted
    ]
    answers = dispute_answers(session, [d.id for d in disputes])
    found: dict[tuple[str, dt.date], StatementStanding] = {}
    for dispute in disputes:
        key = (dispute.customer_code, dispute.period_start)
        answer = answers.get(dispute.id)
        if answer is None:
            found[key] = StatementStanding(Standing.DISPUTED, dispute.responded_at, dispute.comment)
        # The correction has come once the results differ from those disputed; the customer
        # then answers the new statement, and the period is business as usual.
        elif answer.outcome == DisputeOutcome.CORRECTING and not _corrected(
            dispute, period_statement(session, store, *key)
        ):
            found[key] = StatementStanding(Standing.CORRECTING, answer.answered_at, answer.comment)
    return found


def answers_these_numbers(response: StatementResponse, statement: PeriodStatement) -> bool:
    """Whether ``response`` answered the statement's present results. A settlement proposed,
    approved or paid since changes the statement, not the numbers the customer answered."""
    if response.rows_sha256 is None:  # recorded before the results had their own digest
        return response.statement_sha256 == statement.sha256
    return response.rows_sha256 == statement.rows_sha256


def settlement_standings(
    session: Session, store: FactStore, rows: Collection[Settlement]
) -> dict[int, StatementStanding]:
    """By settlement id: the open settlements among ``rows`` (proposed or approved, those that
    may still be approved or paid) whose period's statement is contested."""
    pending = [row for row in rows if row.status in OPEN]
    found = standings(session, store, {(row.beneficiary, row.period_start) for row in pending})
    return {
        row.id: found[row.beneficiary, row.period_start]
        for row in pending
        if (row.beneficiary, row.period_start) in found
    }


def _corrected(dispute: StatementResponse, statement: PeriodStatement) -> bool:
    """Whether the statement's results differ from those the customer disputed."""
    return not answers_these_numbers(dispute, statement)


def responses(session: Session, customer_code: str) -> list[StatementResponse]:
    return list(
        session.scalars(
            select(StatementResponse)
            .where(StatementResponse.customer_code == customer_code)
            .order_by(StatementResponse.id.desc())
        )
    )


def open_disputes(
    session: Session, customers: Collection[str] | None = None
) -> list[StatementResponse]:
    """The statements whose customer's latest answer is a dispute (of these customers only,
    when given): someone has to answer them, with the numbers or a correction."""
    latest = (
        select(func.max(StatementResponse.id))
        .group_by(StatementResponse.customer_code, StatementResponse.period_start)
        .scalar_subquery()
    )
    query = (
        select(StatementResponse)
        .where(StatementResponse.id.in_(latest))
        .where(StatementResponse.decision == StatementDecision.DISPUTED)
        .order_by(StatementResponse.responded_at)
    )
    query = query.where(~StatementResponse.id.in_(select(DisputeAnswer.response_id)))
    if customers is not None:
        query = query.where(StatementResponse.customer_code.in_(customers))
    return list(session.scalars(query))


def dispute_answers(session: Session, response_ids: Collection[int]) -> dict[int, DisputeAnswer]:
    """The company's answers to these responses, by response id (disputes not yet answered,
    and sign-offs, have none)."""
    if not response_ids:
        return {}
    found = session.scalars(
        select(DisputeAnswer).where(DisputeAnswer.response_id.in_(list(response_ids)))
    )
    return {a.response_id: a for a in found}


def answer_dispute(
    session: Session,
    response_id: int,
    *,
    outcome: DisputeOutcome,
    comment: str,
    actor: Actor,
    now: dt.datetime,
) -> DisputeAnswer:
    """Answer a customer's open dispute: the numbers stand, or a correction follows. Finance or
    the customer's sales user answers (the interfaces narrow sales users to their customers);
    the answer always says why, and the customer sees it on its statement."""
    require(actor, Role.FINANCE, Role.SALES, to="answer disputes")
    dispute = session.get(StatementResponse, response_id)
    if dispute is None or dispute.decision != StatementDecision.DISPUTED:
        raise NotFoundError.said("there is no dispute {dispute}", dispute=response_id)
    if session.scalar(select(DisputeAnswer.id).where(DisputeAnswer.response_id == response_id)):
        raise InputError.said_at(
            "dispute {dispute} has been answered already", field="response_id", dispute=response_id
        )
    latest = session.scalar(
        select(func.max(StatementResponse.id))
        .where(StatementResponse.customer_code == dispute.customer_code)
        .where(StatementResponse.period_start == dispute.period_start)
    )
    if latest != response_id:
        # The customer has spoken again since: its latest word is the one to answer.
        raise InputError.said_at(
            "the customer has answered this statement again since dispute {dispute}",
            field="response_id",
            dispute=response_id,
        )
    if not comment.strip():
        raise InputError.said_at("an answer to a dispute needs a comment", field="comment")
    answer = DisputeAnswer(
        response_id=response_id,
        outcome=outcome.value,
        comment=comment.strip(),
        answered_by=actor.code,
        answered_at=now,
    )
    session.add(answer)
    session.flush()
    record(
        session,
        type="statement.dispute_answered",
        actor=actor.code,
        entity_type="dispute_answer",
        entity_id=answer.id,
        inputs={
            "response_id": response_id,
            "customer": dispute.customer_code,
            "period_start": dispute.period_start,
            "comment": answer.comment,
        },
        outcome={"outcome": answer.outcome},
        now=now,
    )
    return answer
