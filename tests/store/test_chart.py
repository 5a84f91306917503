"""The chart of accounts file: the documented example loads; a wrong one names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from fanli.kit.errors import InputError
from fanli.ledger.export import load_chart

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "chart.yaml"


def test_the_documented_chart() -> None:
    chart = load_chart(EXAMPLE)
    assert chart.code("rebate_contra_revenue", "accrual") == "6001.05"
    assert chart.code("rebate_contra_revenue", "adjustment") == "6001.06"
    assert chart.code("rebate_liability", "adjustment") == "2241.01"
    assert chart.code("accounts_receivable", "payout") == "1122"
    assert chart.cost_centre == "SALES-EAST"


def test_a_wrong_chart_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "chart.yaml"
    path.write_text("accounts:\n  rebate_income: '6001'\n", encoding="utf-8")
    with pytest.raises(InputError) as raised:
        load_chart(path)
    assert raised.value.field == "accounts.rebate_income.[key]"
    path.write_text("acounts: {}\n", encoding="utf-8")
    with pytest.raises(InputError) as raised:
        load_chart(path)
    assert str(raised.value) == f"file {path}, field 'acounts': Extra inputs are not permitted"


def test_a_misspelt_entry_kind_or_a_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chart.yaml"
    path.write_text("entry_kinds:\n  adjustmnet: {rebate_liability: '2241.09'}\n", "utf-8")
    with pytest.raises(InputError) as raised:
        load_chart(path)
    assert raised.value.field == "entry_kinds.adjustmnet.[key]"
    path.write_bytes(b"\xff\xfeaccounts: {}")
    with pytest.raises(InputError) as raised:
        load_chart(path)
    assert str(raised.value) == f"file {path}: is not UTF-8 text"
    path.write_bytes(b"\xef\xbb\xbfcost_centre: SALES-WEST\n")  # a byte-order mark is skipped
    assert load_chart(path).cost_centre == "SALES-WEST"


_FIVE = (
    "accounts:\n  rebate_contra_revenue: '6001.05'\n  rebate_liability: '2241.01'\n"
    "  accounts_receivable: '1122'\n  bank: '1002'\n"
)


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        # a chart of the two accrual accounts had exported payouts under Fanli's own names
        (
            "accounts:\n  rebate_contra_revenue: '6001.05'\n  rebate_liability: '2241.01'\n",
            "accounts: no code for accounts_receivable, bank, rebate_balance: a chart maps "
            "every account Fanli posts to (rebate_contra_revenue, rebate_liability, "
            "accounts_receivable, bank, rebate_balance)",
        ),
        (
            _FIVE + "  rebate_balance: ''\n",
            "accounts: no code for rebate_balance: a chart maps every account Fanli posts to "
            "(rebate_contra_revenue, rebate_liability, accounts_receivable, bank, "
            "rebate_balance)",
        ),
        (
            _FIVE + "  rebate_balance: '2241.01'\n",
            "accounts: rebate_liability and rebate_balance share the code 2241.01: a posting "
            "between them would debit and credit one account",
        ),
        (
            _FIVE + "  rebate_balance: '2241.02'\nentry_kinds:\n  adjustment:\n"
            "    rebate_contra_revenue: '2241.01'\n",
            "entry_kinds.adjustment: rebate_contra_revenue and rebate_liability share the code "
            "2241.01: a posting between them would debit and credit one account",
        ),
        (
            _FIVE + "  rebate_balance: '2241.02'\nentry_kinds:\n  payout:\n    bank: ''\n",
            "entry_kinds.payout: no code for bank",
        ),
    ],
)
def test_every_account_has_a_code_of_its_own(tmp_path: Path, text: str, refusal: str) -> None:
    path = tmp_path / "chart.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as raised:
        load_chart(path)
    assert str(raised.value) == f"file {path}: {refusal}"
