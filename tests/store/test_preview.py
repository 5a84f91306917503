"""The editor's preview: what terms would have paid on last year's sales, and for a new version
of an active agreement, what the version in force would have paid on the same sales."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from fanli.ledger import preview as previews
from fanli.ledger.preview import preview_last_year
from store.builders import percent_agreement
from store.conftest import Store
from store.test_settlements import World

D = Decimal


def _world(store: Store, tmp_path: Path) -> World:
    world = World(store, tmp_path)
    world.agreement(percent_agreement(start="2027-01-01", end="2028-01-01"))
    world.sales(
        ("L1", "C1", "P1", "2026-02-10", "10", "10000.00"),  # before the new version's day
        ("L2", "C1", "P1", "2026-08-10", "5", "5000.00"),
        ("L3", "C2", "P1", "2026-09-01", "1", "500.00"),
    )
    return world


def test_a_new_version_is_previewed_beside_the_version_in_force(
    store: Store, tmp_path: Path
) -> None:
    _world(store, tmp_path)
    active = percent_agreement(start="2027-01-01", end="2028-01-01")
    change = percent_agreement(
        rate="3", start="2027-01-01", end="2028-01-01", effective_from="2027-07-01"
    )
    with store.work() as session:
        preview = preview_last_year(session, store.facts, change, in_force=(1, active))
    # From 1 July, on last year's sales: 3% against the 2% in force.
    assert (preview.start, preview.end) == (dt.date(2026, 7, 1), dt.date(2027, 1, 1))
    assert (preview.total, preview.in_force, preview.in_force_total, preview.change) == (
        D("165.00"),
        1,
        D("110.00"),
        D("55.00"),
    )
    assert preview.top == [
        ("C1", D("5000.00"), D("150.00"), D("100.00")),
        ("C2", D("500.00"), D("15.00"), D("10.00")),
    ]


def test_a_new_agreement_is_previewed_alone(store: Store, tmp_path: Path) -> None:
    _world(store, tmp_path)
    terms = percent_agreement("B1", rate="1", start="2027-01-01", end="2028-01-01")
    with store.work() as session:
        preview = preview_last_year(session, store.facts, terms)
    assert (preview.total, preview.in_force, preview.change) == (D("155.00"), None, None)
    assert preview.top == [
        ("C1", D("15000.00"), D("150.00"), None),
        ("C2", D("500.00"), D("5.00"), None),
    ]


def test_customers_the_new_terms_leave_out_are_still_compared(store: Store, tmp_path: Path) -> None:
    """A version that drops a customer shows what that customer had under the version in force."""
    _world(store, tmp_path)
    active = percent_agreement(start="2027-01-01", end="2028-01-01")
    narrower = percent_agreement(
        start="2027-01-01",
        end="2028-01-01",
        effective_from="2027-07-01",
        eligibility={"customers": {"exclude": {"id": ["C2"]}}},
    )
    with store.work() as session:
        preview = preview_last_year(session, store.facts, narrower, in_force=(1, active))
    assert preview.top == [  # the customers the change touches most come first
        ("C2", D("0"), D("0"), D("10.00")),
        ("C1", D("5000.00"), D("100.00"), D("100.00")),
    ]
    assert (preview.total, preview.in_force_total, preview.change) == (
        D("100.00"),
        D("110.00"),
        D("-10.00"),
    )


def test_the_customers_not_listed_are_summed_up(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list stops at a few customers; the rest are one line, so no change goes unseen."""
    monkeypatch.setattr(previews, "SHOWN", 1)
    _world(store, tmp_path)
    active = percent_agreement(start="2027-01-01", end="2028-01-01")
    change = percent_agreement(rate="3", start="2027-01-01", end="2028-01-01")
    with store.work() as session:
        preview = preview_last_year(session, store.facts, change, in_force=(1, active))
    assert preview.top == [("C1", D("15000.00"), D("450.00"), D("300.00"))]
    assert preview.rest == (1, D("15.00"), D("10.00"))
    assert (preview.total, preview.in_force_total) == (D("465.00"), D("310.00"))
