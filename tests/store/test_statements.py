"""A customer's answer to its period statement: only its own user answers, a dispute says why,
the answer is pinned to the numbers it saw (and recorded in the trail), and a later change of
the numbers leaves the new statement unanswered."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from fanli.kit.errors import InputError
from fanli.settlements.models import StatementDecision
from fanli.settlements.statements import period_statement, respond, responses
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
