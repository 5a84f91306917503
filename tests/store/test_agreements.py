"""Agreement versions in the store: drafts change, active versions never do."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from fanli.agreements import queries
from fanli.agreements.models import AgreementRecord, AgreementVersion
from fanli.agreements.queries import terms_for_run
from fanli.agreements.service import (
    AgreementError,
    ImmutableVersionError,
    add_version,
    discard_draft,
    edit_draft,
    expire_ended,
    terminate,
)
from fanli.audit.models import AuditEvent
from store.builders import activate, percent_agreement, staff
from store.conftest import NOW, Store


def _events(store: Store) -> int:
    with store.work() as session:
        return int(session.scalar(select(func.count(AuditEvent.seq))) or 0)


def test_lifecycle_and_immutability(store: Store) -> None:
    with store.work() as session:
        draft = add_version(session, percent_agreement(rate="2"), actor=staff("ann"), now=NOW)
        edited = edit_draft(
            session, draft.id, percent_agreement(rate="2.5"), actor=staff("ann"), now=NOW
        )
        assert edited.terms["rebate"]["tiers"][0]["rate"] == "2.5"
        activate(session, draft.id, now=NOW)
    before = _events(store)
    with store.work() as session, pytest.raises(ImmutableVersionError, match="cannot change"):
        edit_draft(session, draft.id, percent_agreement(rate="9"), actor=staff("ann"), now=NOW)
    with store.work() as session:
        version = session.get(AgreementVersion, draft.id)
        assert version is not None
        assert (version.status, version.terms["rebate"]["tiers"][0]["rate"]) == ("active", "2.5")
        agreement = session.scalars(select(AgreementRecord)).one()
        assert agreement.status == "active"
    assert _events(store) == before  # a refused action writes no event


def test_a_draft_is_discarded_not_deleted(store: Store) -> None:
    """A discarded draft keeps its number and its event; an agreement left with nothing but
    discarded drafts is discarded, and a new draft under its code revives it."""
    with store.work() as session:
        draft = add_version(session, percent_agreement(rate="2"), actor=staff("ann"), now=NOW)
    with store.work() as session, pytest.raises(AgreementError, match="needs a reason"):
        discard_draft(session, draft.id, reason="  ", actor=staff("ann"), now=NOW)
    with store.work() as session:
        discard_draft(session, draft.id, reason="a test draft", actor=staff("ann"), now=NOW)
    with store.work() as session:
        agreement = session.scalars(select(AgreementRecord)).one()
        version = session.get(AgreementVersion, draft.id)
        assert version is not None
        assert (agreement.status, version.status) == ("discarded", "discarded")
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.type == "agreement.version.discarded")
        ).one()
        assert (event.entity_id, event.inputs["reason"], event.outcome) == (
            str(draft.id),
            "a test draft",
            {"status": "discarded", "agreement_status": "discarded"},
        )
        assert terms_for_run(session) == []
    before = _events(store)
    with store.work() as session, pytest.raises(AgreementError, match="is discarded, not a draft"):
        discard_draft(session, draft.id, reason="again", actor=staff("ann"), now=NOW)
    assert _events(store) == before
    with store.work() as session:
        revived = add_version(session, percent_agreement(rate="3"), actor=staff("ann"), now=NOW)
        assert revived.version == 2  # number 1 stays the discarded draft's
        activate(session, revived.id, now=NOW)
    with store.work() as session:
        assert session.scalars(select(AgreementRecord.status)).one() == "active"
        second = add_version(
            session,
            percent_agreement(rate="4", effective_from="2026-07-01"),
            actor=staff("ann"),
            now=NOW,
        )
        discard_draft(session, second.id, reason="not now", actor=staff("ann"), now=NOW)
        # The active version is untouched, and so is the agreement.
        assert session.scalars(select(AgreementRecord.status)).one() == "active"
        assert [v.version for v in terms_for_run(session)] == [2]
    with store.work() as session, pytest.raises(AgreementError, match="is active, not a draft"):
        discard_draft(session, revived.id, reason="no", actor=staff("ann"), now=NOW)


def test_a_new_version_must_take_effect_later(store: Store) -> None:
    with store.work() as session:
        first = add_version(session, percent_agreement(), actor=staff("ann"), now=NOW)
        activate(session, first.id, now=NOW)
    with store.work() as session, pytest.raises(AgreementError, match="must take effect after"):
        add_version(
            session, percent_agreement(effective_from="2026-01-01"), actor=staff("ann"), now=NOW
        )
    with store.work() as session:
        second = add_version(
            session,
            percent_agreement(rate="3", effective_from="2026-07-01"),
            actor=staff("ann"),
            now=NOW,
        )
        assert (second.version, second.terms["version"]) == (2, 2)
        with pytest.raises(AgreementError, match="has draft version 2"):
            add_version(
                session, percent_agreement(effective_from="2026-08-01"), actor=staff("ann"), now=NOW
            )
        activate(session, second.id, now=NOW)
    with store.work() as session:
        windows = [(v.version, v.counts_from, v.counts_until) for v in terms_for_run(session)]
    assert windows == [
        (1, dt.date(2026, 1, 1), dt.date(2026, 7, 1)),
        (2, dt.date(2026, 7, 1), dt.date(2027, 1, 1)),
    ]


def test_a_run_reads_the_same_terms_cold_warm_and_while_the_cache_empties(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Terms are parsed once per hash and kept; a run reads each version's own terms whether
    they are parsed already, not yet, or the cache empties while they are being parsed."""
    with store.work() as session:
        first = add_version(session, percent_agreement(rate="2"), actor=staff("ann"), now=NOW)
        activate(session, first.id, now=NOW)
        second = add_version(
            session,
            percent_agreement(rate="3", effective_from="2026-07-01"),
            actor=staff("ann"),
            now=NOW,
        )
        activate(session, second.id, now=NOW)
        other = add_version(session, percent_agreement("A2", rate="4"), actor=staff("ann"), now=NOW)
        activate(session, other.id, now=NOW)

    def read() -> list[tuple[str, int, str, dt.date]]:
        with store.work() as session:
            return [
                (v.code, v.version, str(v.terms.rebate.tiers[0].rate), v.counts_until)
                for v in terms_for_run(session)
            ]

    expected = [
        ("A1", 1, "2", dt.date(2026, 7, 1)),
        ("A1", 2, "3", dt.date(2027, 1, 1)),
        ("A2", 1, "4", dt.date(2027, 1, 1)),
    ]
    cache: dict[str, object] = {}
    monkeypatch.setattr(queries, "_PARSED", cache)
    assert read() == expected  # cold: every hash parsed
    assert len(cache) == 3
    assert read() == expected  # warm: nothing parsed again
    # Nearly full: the third parse of this read empties the cache, the first two with it.
    cache.clear()
    cache.update({f"filler-{n}": object() for n in range(9_999)})
    assert read() == expected


def test_terminate_and_expire(store: Store) -> None:
    with store.work() as session:
        for terms in (percent_agreement("A1"), percent_agreement("A2", end="2026-07-01")):
            activate(session, add_version(session, terms, actor=staff("ann"), now=NOW).id, now=NOW)
    with store.work() as session:
        terminate(
            session,
            "A1",
            on=dt.date(2026, 5, 1),
            reason="contract ended",
            actor=staff("ann"),
            now=NOW,
        )
        assert expire_ended(session, as_of=dt.date(2026, 7, 1), actor=staff("sys"), now=NOW) == [
            "A2"
        ]
    with store.work() as session:
        statuses = dict(session.execute(select(AgreementRecord.code, AgreementRecord.status)).all())
        windows = {v.code: v.counts_until for v in terms_for_run(session)}
        with pytest.raises(AgreementError, match="is terminated; it takes no new version"):
            add_version(
                session,
                percent_agreement("A1", effective_from="2026-09-01"),
                actor=staff("a"),
                now=NOW,
            )
    assert statuses == {"A1": "terminated", "A2": "expired"}
    assert windows == {"A1": dt.date(2026, 5, 1), "A2": dt.date(2026, 7, 1)}
