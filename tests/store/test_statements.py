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
