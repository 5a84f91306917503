"""The periodic audit on the server's own schedule: a round audits this month and the last,
skips what was audited within half the interval (several processes, one round), signs a
checkpoint when the key is there, and the server runs rounds by itself when configured."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from fanli.config import Settings
from fanli.db.migrate import upgrade
from fanli.db.session import make_engine, session_factory, unit_of_work
from fanli.interfaces.api.app import create_app
from fanli.oversight.checkpoints import create_key
from fanli.oversight.models import AuditRun
from fanli.oversight.schedule import CHECKPOINTS, scheduled_round
from store.builders import people
from store.conftest import NOW, Store

HOUR = dt.timedelta(hours=1)


def test_a_round_audits_two_periods_once_per_interval(store: Store, tmp_path: Path) -> None:
    with store.work() as session:
        people(session, NOW)
    create_key(tmp_path)
    with store.work() as session:
        audited, checkpoint = scheduled_round(
            session, store.facts, actor_code="ivan", every=HOUR, data_dir=tmp_path, now=NOW
        )
    assert audited == ["2026-10", "2026-11"]
    assert checkpoint is not None
    later = NOW + dt.timedelta(minutes=20)  # another process, within half the interval
    with store.work() as session:
        assert scheduled_round(
            session, store.facts, actor_code="ivan", every=HOUR, data_dir=tmp_path, now=later
        ) == ([], None)
    with store.work() as session:
        audited, _ = scheduled_round(
            session, store.facts, actor_code="ivan", every=HOUR, data_dir=tmp_path,
            now=NOW + dt.timedelta(minutes=31),
        )  # fmt: skip
        assert audited == ["2026-10", "2026-11"]
        assert session.scalar(select(func.count()).select_from(AuditRun)) == 4


def test_the_server_runs_the_schedule(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, audit_every_minutes=0.005, audit_as="ivan")
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    with unit_of_work(session_factory(engine)) as session:
        people(session, NOW)
    create_key(tmp_path)
    with TestClient(create_app(settings)):  # the lifespan starts the schedule
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with unit_of_work(session_factory(engine)) as session:
                if session.scalar(select(func.count()).select_from(AuditRun)):
                    break
            time.sleep(0.1)
    with unit_of_work(session_factory(engine)) as session:
        periods = {run.period for run in session.scalars(select(AuditRun))}
    today = dt.datetime.now(dt.UTC).date()
    assert today.strftime("%Y-%m") in periods
    assert (tmp_path / CHECKPOINTS).read_text("utf-8").count("\n") >= 1
    engine.dispose()
