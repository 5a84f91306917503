"""The demo company that ``make run`` serves: built through the services into a fresh store,
with a user for every role, settlements in every state, an audit run, and an intact trail."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sqlalchemy import select

from fanli.audit.trail import verify
from fanli.db.migrate import upgrade
from fanli.db.session import make_engine, session_factory, unit_of_work
from fanli.demo.store import DEMO_PASSWORD, USERS, build, is_built
from fanli.oversight.models import AuditRun
from fanli.sales.store import FactStore
from fanli.settlements.models import Settlement, StatementResponse
from fanli.settlements.statements import open_disputes
from fanli.users.auth import Outcome, sign_in
from fanli.users.models import User
from second_factor import fresh_code


def test_the_demo_company(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fanli.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    assert not is_built(sessions)
    built = build(sessions, FactStore(tmp_path / "facts"), tmp_path / "demo")
    assert is_built(sessions)
    with unit_of_work(sessions) as session:
        assert sorted(session.scalars(select(User.code))) == sorted(code for code, *_ in USERS)
        states = Counter(session.scalars(select(Settlement.status)))
        assert set(states) == {"proposed", "approved", "paid", "rejected"}
        runs = session.scalars(select(AuditRun)).all()
        assert len(runs) == 1
        answers = session.scalars(select(StatementResponse).order_by(StatementResponse.id))
        assert [(a.customer_code, str(a.period_start), a.decision) for a in answers] == [
            ("C001", "2026-01-01", "signed_off"),
            ("C001", "2026-04-01", "disputed"),
        ]
        assert [d.customer_code for d in open_disputes(session)] == ["C001"]  # for finance
        assert verify(session).holds
    assert sorted(built.secrets) == ["admin", "approver", "finance"]
    with unit_of_work(sessions) as session:  # the printed sign-ins work
        approver = sign_in(
            session,
            "approver",
            DEMO_PASSWORD,
            totp_code=fresh_code(built.secrets["approver"]),
            source="test",
            now=runs[0].started_at,
        )
        customer = sign_in(
            session, "c001", DEMO_PASSWORD, totp_code=None, source="test", now=runs[0].started_at
        )
    assert (approver.outcome, customer.outcome) == (Outcome.SIGNED_IN, Outcome.SIGNED_IN)
    engine.dispose()
