"""A customer's answer to its period statement: only its own user answers, a dispute says why,
the answer is pinned to the numbers it saw (and recorded in the trail), and a later change of
the numbers leaves the new statement unanswered. The company answers a dispute once, saying
why; the customer may then sign off or dispute again."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from fanli.audit.models import AuditEvent
from fanli.kit.errors import InputError, NotFoundError
from fanli.settlements.models import DisputeOutcome, StatementDecision
from fanli.settlements.statements import (
    answer_dispute,
    answers_these_numbers,
    dispute_answers,
    may_answer,
    open_disputes,
    period_statement,
    respond,
    responses,
    standings,
)
from fanli.users.actor import Actor, PermissionDeniedError, Role
from store.conftest import NOW, Store
from store.test_settlements import _world

Q1 = dt.date(2026, 1, 1)
C1_BUYER = Actor(id=0, code="c1", roles=frozenset({Role.CUSTOMER}), customer_code="C1")


def test_a_statement_is_answered_by_its_own_customer_only(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)
    with store.work() as session:
        first = period_statement(session, store.facts, "C1", Q1)
        assert [(r.agreement_code, r.rebate) for r in first.rows] == [("A1", 200)]
        with pytest.raises(PermissionDeniedError, match="only its own entity"):
            respond(session, store.facts, "C2", Q1, decision=StatementDecision.SIGNED_OFF,
                    comment="", actor=C1_BUYER, now=NOW)  # fmt: skip
        with pytest.raises(PermissionDeniedError, match="needs the role customer"):
            respond(session, store.facts, "C1", Q1, decision=StatementDecision.SIGNED_OFF,
                    comment="", actor=world["fay"], now=NOW)  # fmt: skip
        with pytest.raises(InputError, match="a dispute needs a comment"):
            respond(session, store.facts, "C1", Q1, decision=StatementDecision.DISPUTED,
                    comment=" ", actor=C1_BUYER, now=NOW)  # fmt: skip
    with store.work() as session:
        answer = respond(
            session, store.facts, "C1", Q1, decision=StatementDecision.DISPUTED,
            comment="发票 INV-9 未计入", actor=C1_BUYER, now=NOW,
        )  # fmt: skip
        assert answer.statement_sha256 == first.sha256
    world.sales(("L9", "C1", "P1", "2026-03-01", "1", "1000.00"))
    world.accrue()
    with store.work() as session:
        changed = period_statement(session, store.facts, "C1", Q1)
        assert [r.rebate for r in changed.rows] == [220]
        assert changed.sha256 != first.sha256  # the answer was to the old numbers
        assert [(a.decision, a.comment) for a in responses(session, "C1")] == [
            ("disputed", "发票 INV-9 未计入")
        ]


def test_a_running_period_is_disputed_but_not_signed_off(store: Store, tmp_path: Path) -> None:
    """Q1's statement, answered on 2026-03-15 (the period runs until 31 March): its numbers
    can still change, so a sign-off waits for the end; a dispute need not."""
    _world(store, tmp_path)
    mid_march = dt.datetime(2026, 3, 15, 10, tzinfo=dt.UTC)
    with store.work() as session:
        with pytest.raises(InputError, match=r"runs until 2026-03-31; its statement can be"):
            respond(session, store.facts, "C1", Q1, decision=StatementDecision.SIGNED_OFF,
                    comment="", actor=C1_BUYER, now=mid_march)  # fmt: skip
        disputed = respond(
            session, store.facts, "C1", Q1, decision=StatementDecision.DISPUTED,
            comment="少计 INV-7", actor=C1_BUYER, now=mid_march,
        )  # fmt: skip
        assert disputed.decision == "disputed"
    with store.work() as session:  # on 1 April the period has ended
        signed = respond(
            session, store.facts, "C1", Q1, decision=StatementDecision.SIGNED_OFF,
            comment="", actor=C1_BUYER, now=dt.datetime(2026, 4, 1, 1, tzinfo=dt.UTC),
        )  # fmt: skip
        assert [a.decision for a in responses(session, "C1")] == ["signed_off", "disputed"]
        assert signed.decision == "signed_off"


def _dispute(store: Store, comment: str, now: dt.datetime = NOW) -> int:
    with store.work() as session:
        return respond(
            session, store.facts, "C1", Q1, decision=StatementDecision.DISPUTED,
            comment=comment, actor=C1_BUYER, now=now,
        ).id  # fmt: skip


def test_finance_answers_a_dispute_once_and_the_customer_speaks_again(
    store: Store, tmp_path: Path
) -> None:
    world = _world(store, tmp_path)
    first = _dispute(store, "INV-9 is missing")
    with store.work() as session:
        assert [d.id for d in open_disputes(session)] == [first]
        assert open_disputes(session, {"C2"}) == []  # narrowed to the customers given
        with pytest.raises(PermissionDeniedError, match="needs the role finance or sales"):
            answer_dispute(session, first, outcome=DisputeOutcome.UPHELD, comment="no",
                           actor=world["amy"], now=NOW)  # fmt: skip
        with pytest.raises(PermissionDeniedError, match="needs the role finance or sales"):
            answer_dispute(session, first, outcome=DisputeOutcome.UPHELD, comment="no",
                           actor=C1_BUYER, now=NOW)  # fmt: skip
        with pytest.raises(InputError, match="an answer to a dispute needs a comment"):
            answer_dispute(session, first, outcome=DisputeOutcome.UPHELD, comment="  ",
                           actor=world["fay"], now=NOW)  # fmt: skip
        with pytest.raises(NotFoundError, match="there is no dispute 99"):
            answer_dispute(session, 99, outcome=DisputeOutcome.UPHELD, comment="x",
                           actor=world["fay"], now=NOW)  # fmt: skip
    with store.work() as session:
        answered = answer_dispute(
            session, first, outcome=DisputeOutcome.UPHELD,
            comment=" INV-9 is dated 2 April: it counts in Q2 ", actor=world["fay"], now=NOW,
        )  # fmt: skip
        assert (answered.outcome, answered.comment, answered.answered_by) == (
            "upheld",
            "INV-9 is dated 2 April: it counts in Q2",
            "fay",
        )
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.type == "statement.dispute_answered")
        ).one()
        assert (event.actor, event.entity_id, event.outcome) == (
            "fay", str(answered.id), {"outcome": "upheld"}
        )  # fmt: skip
    with store.work() as session:
        assert open_disputes(session) == []  # answered: off the list
        assert dispute_answers(session, [first])[first].id == answered.id
        with pytest.raises(InputError, match=f"dispute {first} has been answered already"):
            answer_dispute(session, first, outcome=DisputeOutcome.CORRECTING, comment="again",
                           actor=world["sam"], now=NOW)  # fmt: skip
    # The customer disagrees again: a new dispute, open until it is answered in its turn.
    second = _dispute(store, "INV-9 was delivered on 30 March")
    with store.work() as session:
        assert [d.id for d in open_disputes(session)] == [second]
    with (  # while it waits, the customer cannot dispute once more
        store.work() as session,
        pytest.raises(InputError, match="the dispute of 2026-11-27 is waiting for the"),
    ):
        respond(session, store.facts, "C1", Q1, decision=StatementDecision.DISPUTED,
                    comment="and DN-30", actor=C1_BUYER, now=NOW)  # fmt: skip
    with store.work() as session:
        # ... but may withdraw it by signing off: then there is nothing left to answer.
        signed = respond(
            session, store.facts, "C1", Q1, decision=StatementDecision.SIGNED_OFF,
            comment="", actor=C1_BUYER, now=NOW,
        )  # fmt: skip
        assert open_disputes(session) == []
        again = f"answered this statement again since dispute {second}"
        with pytest.raises(InputError, match=again):
            answer_dispute(session, second, outcome=DisputeOutcome.UPHELD, comment="x",
                           actor=world["fay"], now=NOW)  # fmt: skip
        with pytest.raises(NotFoundError, match=f"there is no dispute {signed.id}"):
            answer_dispute(session, signed.id, outcome=DisputeOutcome.UPHELD, comment="x",
                           actor=world["fay"], now=NOW)  # fmt: skip
    with store.work() as session:  # a sign-off of these numbers is final
        for decision in StatementDecision:
            with pytest.raises(InputError, match="was signed off on 2026-11-27"):
                respond(session, store.facts, "C1", Q1, decision=decision, comment="late",
                        actor=C1_BUYER, now=NOW)  # fmt: skip


def test_after_a_correction_is_promised_the_old_numbers_are_not_signed_off(
    store: Store, tmp_path: Path
) -> None:
    world = _world(store, tmp_path)
    disputed = _dispute(store, "INV-9 is missing")
    with store.work() as session:
        answer_dispute(session, disputed, outcome=DisputeOutcome.CORRECTING,
                       comment="INV-9 joins the next run", actor=world["fay"], now=NOW)  # fmt: skip
    with store.work() as session:
        statement = period_statement(session, store.facts, "C1", Q1)
        assert may_answer(session, statement, NOW) == [StatementDecision.DISPUTED]
        with pytest.raises(InputError, match="a correction of these numbers is under way"):
            respond(session, store.facts, "C1", Q1, decision=StatementDecision.SIGNED_OFF,
                    comment="", actor=C1_BUYER, now=NOW)  # fmt: skip
    world.sales(("L9", "C1", "P1", "2026-03-01", "1", "1000.00"))
    world.accrue()
    with store.work() as session:  # the corrected statement: new numbers, answered afresh
        corrected = period_statement(session, store.facts, "C1", Q1)
        assert [r.rebate for r in corrected.rows] == [220]
        assert may_answer(session, corrected, NOW) == list(StatementDecision)
        signed = respond(session, store.facts, "C1", Q1, decision=StatementDecision.SIGNED_OFF,
                         comment="", actor=C1_BUYER, now=NOW)  # fmt: skip
        assert signed.statement_sha256 == corrected.sha256


def test_a_period_in_dispute_or_awaiting_its_correction_has_a_standing(
    store: Store, tmp_path: Path
) -> None:
    """Those about to approve or pay a settlement see that its period's statement is contested:
    disputed and unanswered, or a correction promised whose numbers have not come yet."""
    world = _world(store, tmp_path)
    keys = {("C1", Q1), ("C2", Q1)}
    with store.work() as session:
        assert standings(session, store.facts, keys) == {}  # nobody has answered yet
    later = NOW + dt.timedelta(hours=2)
    disputed = _dispute(store, "INV-9 is missing", now=later)
    with store.work() as session:
        found = standings(session, store.facts, keys)
        assert list(found) == [("C1", Q1)]
        assert (found["C1", Q1].standing, found["C1", Q1].since, found["C1", Q1].comment) == (
            "disputed", later, "INV-9 is missing"
        )  # fmt: skip
        assert standings(session, store.facts, {("C2", Q1)}) == {}  # only the keys asked for
    with store.work() as session:
        answer_dispute(session, disputed, outcome=DisputeOutcome.CORRECTING,
                       comment="INV-9 joins the next run", actor=world["fay"],
                       now=later)  # fmt: skip
    with store.work() as session:
        found = standings(session, store.facts, keys)
        assert (found["C1", Q1].standing, found["C1", Q1].comment) == (
            "correcting", "INV-9 joins the next run"
        )  # fmt: skip
    world.accrue()  # a run that changes nothing: the correction has still not come
    world.propose()  # nor is a settlement one, though the statement now shows it
    with store.work() as session:
        assert standings(session, store.facts, keys)["C1", Q1].standing == "correcting"
        statement = period_statement(session, store.facts, "C1", Q1)
        assert [s.amount for s in statement.settlements] == [200]
        assert may_answer(session, statement, later) == [StatementDecision.DISPUTED]
    world.sales(("L9", "C1", "P1", "2026-03-01", "1", "1000.00"))
    world.accrue()
    with store.work() as session:  # new numbers: the customer answers them afresh
        assert standings(session, store.facts, keys) == {}


def test_an_upheld_dispute_leaves_no_standing(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path)
    disputed = _dispute(store, "INV-9 is missing")
    with store.work() as session:
        answer_dispute(session, disputed, outcome=DisputeOutcome.UPHELD,
                       comment="INV-9 counts in Q2", actor=world["fay"], now=NOW)  # fmt: skip
    with store.work() as session:
        assert standings(session, store.facts, {("C1", Q1)}) == {}


def test_a_settlement_of_the_numbers_does_not_undo_the_customers_answer(
    store: Store, tmp_path: Path
) -> None:
    """The customer signs off Q1; finance then proposes, approves and pays its settlement. The
    statement now shows the payment, but its results are those signed off: the sign-off stands
    and is not asked for again. A dispute likewise stays open across a proposal."""
    world = _world(store, tmp_path)
    with store.work() as session:
        signed = respond(session, store.facts, "C1", Q1, decision=StatementDecision.SIGNED_OFF,
                         comment="", actor=C1_BUYER, now=NOW)  # fmt: skip
    settlement = world.propose()
    world.approve(settlement, "amy")
    world.pay(settlement, document_number="CN-1")
    with store.work() as session:
        paid = period_statement(session, store.facts, "C1", Q1)
        assert [(s.amount, s.status) for s in paid.settlements] == [(200, "paid")]
        assert paid.sha256 != signed.statement_sha256  # the statement shows the payment
        assert paid.rows_sha256 == signed.rows_sha256  # ... of the numbers signed off
        assert answers_these_numbers(signed, paid)
        assert may_answer(session, paid, NOW) == []
        with pytest.raises(InputError, match="was signed off on 2026-11-27"):
            respond(session, store.facts, "C1", Q1, decision=StatementDecision.DISPUTED,
                    comment="late", actor=C1_BUYER, now=NOW)  # fmt: skip
    # C2 disputes; a proposal for its period keeps the dispute open and unrepeatable.
    c2_buyer = Actor(id=0, code="c2", roles=frozenset({Role.CUSTOMER}), customer_code="C2")
    with store.work() as session:
        respond(session, store.facts, "C2", Q1, decision=StatementDecision.DISPUTED,
                comment="INV-3 is missing", actor=c2_buyer, now=NOW)  # fmt: skip
    world.propose(beneficiary="C2", key="c2")
    with store.work() as session:
        statement = period_statement(session, store.facts, "C2", Q1)
        assert [s.status for s in statement.settlements] == ["proposed"]
        assert may_answer(session, statement, NOW) == [StatementDecision.SIGNED_OFF]
