"""Rules of the terms themselves, before any calculation: an agreement's code is fit for an
address and a file name, its name has a sensible length, and no amount is beyond what the
store can hold."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fanli.agreements.terms import Agreement

BASE: dict[str, Any] = {
    "term": {"start": "2026-01-01", "end": "2027-01-01"},
    "rebate": {"tiers": [{"from": "0", "rate": "1"}]},
}


def _refusal(**terms: Any) -> str:
    with pytest.raises(ValidationError) as refused:
        Agreement.model_validate({**BASE, **terms})
    (error,) = refused.value.errors()
    return str(error["msg"]).removeprefix("Value error, ")


@pytest.mark.parametrize("code", ["KA-Q", "C001-Y", "中文编号", "A.1_2", "2026"])
def test_codes_of_letters_digits_and_separators_are_taken(code: str) -> None:
    assert Agreement.model_validate({**BASE, "id": code}).id == code


@pytest.mark.parametrize("code", ["a b", "x/y", "a?b", "<x>", "_x", "-x", "a#1", "a%20"])
def test_a_code_that_would_break_an_address_is_refused(code: str) -> None:
    assert _refusal(id=code) == (
        f"id: {code} is not an agreement code: use letters, digits, '-', '_' and '.', "
        "starting with a letter or digit"
    )


def test_a_name_has_at_most_200_characters() -> None:
    assert Agreement.model_validate({**BASE, "id": "A", "name": "名" * 200}).name == "名" * 200
    assert _refusal(id="A", name="名" * 201) == "name: a name has at most 200 characters"


@pytest.mark.parametrize(
    ("terms", "path"),
    [
        ({"minimum": "1e30"}, "minimum"),
        ({"cap": {"per_period": "100000000000000"}}, "cap.per_period"),
        ({"gate": {"target": "1e15"}}, "gate.target"),
        ({"guarantee": {"amount": "1e20"}}, "guarantee.amount"),
    ],
)
def test_no_amount_is_beyond_what_the_store_holds(terms: dict[str, Any], path: str) -> None:
    assert _refusal(id="A", **terms).startswith(f"{path}: ")
    assert _refusal(id="A", **terms).endswith(" is larger than an amount can be")
    just_below = {"minimum": "99999999999999.99"}
    assert Agreement.model_validate({**BASE, "id": "A", **just_below}).minimum is not None


@pytest.mark.parametrize(
    ("term", "refusal"),
    [
        (
            {"start": "2026-01-01", "end": "9999-12-31"},
            "term.end: 9999-12-31 is outside the days Fanli keeps (1900-01-01 to 9998-12-31)",
        ),
        (
            {"start": "0001-01-01", "end": "2027-01-01"},
            "term.start: 0001-01-01 is outside the days Fanli keeps (1900-01-01 to 9998-12-31)",
        ),
    ],
)
def test_a_term_stays_within_the_days_fanli_keeps(term: dict[str, str], refusal: str) -> None:
    # a run reads each period's year before and month after: beyond these, every run failed
    assert _refusal(id="A", term=term) == refusal
    last = {"start": "9000-01-01", "end": "9998-12-31"}
    kept = Agreement.model_validate({**BASE, "id": "A", "term": last, "periods": {"kind": "year"}})
    assert len(kept.calculation_periods()) == 999


def test_a_term_has_at_most_4095_periods() -> None:
    # 4,095 months from January 2026 end on 1 April 2367; one month more is refused
    most = {"start": "2026-01-01", "end": "2367-04-01"}
    agreement = Agreement.model_validate(
        {**BASE, "id": "A", "term": most, "periods": {"kind": "month"}}
    )
    assert len(agreement.calculation_periods()) == 4095
    assert (
        _refusal(
            id="A",
            term={"start": "2026-01-01", "end": "2367-05-01"},
            periods={"kind": "month"},
        )
        == "periods: the term has 4096 periods; at most 4095 are supported"
    )
