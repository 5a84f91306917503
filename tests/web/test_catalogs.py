"""Both languages cover every message: each ``_("...")`` of the templates and views is in both
catalogs, Chinese translates every one, English names every code (``credit_note``, ``paid``),
and placeholders survive translation."""

from __future__ import annotations

import ast
import datetime as dt
import re
from decimal import Decimal
from importlib.resources import files
from pathlib import Path

from babel.messages.pofile import read_po

import fanli
from fanli.agreements.terms import SettlementForm
from fanli.customers.models import DueDiligenceKind
from fanli.interfaces.web import plain
from fanli.interfaces.web.i18n import LOCALES, Lang
from fanli.interfaces.web.views import CHECKS, FIELDS, say
from fanli.interfaces.web.views_work import STAGE_TEXT
from fanli.kit.errors import FanliError, Month, said, said_from_json, said_to_json
from fanli.ledger.models import PeriodStatus
from fanli.ledger.periods import PeriodError
from fanli.oversight.detectors import DETECTORS
from fanli.oversight.models import FindingStatus
from fanli.sales.models import BatchKind, BatchStatus
from fanli.settlements.models import (
    CreditStatus,
    DisputeOutcome,
    SettlementStatus,
    StatementDecision,
)
from fanli.users.actor import Role

WEB = files("fanli.interfaces.web")
# _("...") in a template or a view, the string possibly on the next line; a job's title=.
# (A string joined to a code, _("period " ~ status), is a code's prefix: see CODES.)
CALL = re.compile(r"""(?:\b_\(|\btitle=)\s*(?:"([^"\n]+)"|'([^'\n]+)')\s*[,)]""")
# n_("{count} problem", "{count} problems", count): both forms.
PLURAL_CALL = re.compile(r"""\bn_\(\s*"([^"\n]+)",\s*"([^"\n]+)",""")


def _used() -> set[str]:
    sources = [
        *WEB.joinpath("templates").iterdir(),
        *(source for source in WEB.iterdir() if source.name.endswith(".py")),
    ]
    found = set()
    for source in sources:
        text = source.read_text("utf-8")
        found |= {double or single for double, single in CALL.findall(text)}
        found |= {form for forms in PLURAL_CALL.findall(text) for form in forms}
    # Messages chosen at run time: the stages of a job, the plain-language phrases and the
    # settlement titles.
    found |= set(STAGE_TEXT.values())
    found |= set(plain.PERIODS.values()) | set(plain.MEASURES.values())
    found |= set(plain.METHODS.values()) | {text for _key, text in plain.LIMITS}
    found |= set(plain.PRODUCT_FIELDS.values()) | set(plain.EVENTS.values())
    found |= {plain.ALL_OF, plain.ANY_OF}
    found |= {"API token", "Second factor"}
    found |= set(CHECKS.values())  # pydantic's checks of forms and terms, by type
    found |= set(FIELDS.values())  # a form's fields, by their labels
    found |= {"the customer master", "the product master"}  # where an import looks ids up
    return found


def said_templates() -> set[str]:
    """The messages the services say with a template (``FanliError.said``, ``said``): read
    from the source with ``ast``, so adjacent string literals join as Python joins them."""
    found = set()
    for source in Path(fanli.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text("utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            first = node.args[0]
            if name in {"said", "said_at"} and isinstance(first, ast.Constant):
                found.add(str(first.value))
    return found


def test_the_services_refusals_are_in_both_catalogs() -> None:
    templates = said_templates()
    assert len(templates) > 30
    for code in LOCALES:
        assert sorted(templates - set(_catalog(code))) == [], code


def _catalog(code: str) -> dict[str, str]:
    """Each message and its translation; a plural message's two forms each, with the
    translation of the form the language uses for it (Chinese has one)."""
    found = {}
    with WEB.joinpath(f"locale/{code}/LC_MESSAGES/messages.po").open("rb") as po:
        for message in read_po(po):
            if isinstance(message.id, tuple):
                singular, plural = message.id
                found[singular] = message.string[0]
                found[plural] = message.string[-1]
            elif message.id:
                found[message.id] = message.string
    return found


def test_every_message_is_in_both_catalogs() -> None:
    used = _used()
    assert len(used) > 80
    for code in LOCALES:
        assert sorted(used - set(_catalog(code))) == [], code


def test_chinese_translates_everything_and_keeps_placeholders() -> None:
    for message, translated in _catalog("zh_CN").items():
        assert translated, message
        assert set(re.findall(r"{\w+}", message)) == set(re.findall(r"{\w+}", translated)), message


# The codes the pages show through ``_()``: statuses, forms, kinds.
CODES = {
    member.value
    for enum in (
        SettlementStatus,
        SettlementForm,
        CreditStatus,
        BatchKind,
        BatchStatus,
        StatementDecision,
        DisputeOutcome,
        FindingStatus,
        DueDiligenceKind,  # a lapsed kind in a finding's summary
    )
    for member in enum
} | {"draft", "submitted", "active", "discarded"}
CODES |= set(DETECTORS)  # a finding's detector, by its name
CODES |= {f"role {role.value}" for role in Role}  # "sales" the role is not "sales" the batch
# A period's "open" is not a finding's: the periods page says "period open" (未结账).
CODES |= {f"period {member.value}" for member in PeriodStatus}


def test_both_languages_name_the_codes() -> None:
    for code in LOCALES:
        catalog = _catalog(code)
        assert sorted(c for c in CODES if not catalog.get(c)) == [], code


def test_formats_follow_the_locale() -> None:
    zh, en = Lang("zh_CN"), Lang("en")
    assert (zh.money(Decimal("1234.5")), en.money(Decimal("1234.5"))) == (
        "¥1,234.50",
        "CN¥1,234.50",
    )
    day = dt.date(2026, 3, 31)
    assert (zh.date(day), en.date(day)) == ("2026年3月31日", "Mar 31, 2026")
    # Times are stored in UTC and shown in the company's zone: 20:30 UTC is the next morning
    # in Shanghai, and its date is the next day there.
    late = dt.datetime(2026, 3, 31, 20, 30, tzinfo=dt.UTC)
    assert (zh.date(late), en.date(late)) == ("2026年4月1日", "Apr 1, 2026")
    assert en.datetime(late) == "Apr 1, 2026, 4:30:00\u202fAM"
    assert Lang("en", "Europe/Berlin").datetime(late) == "Mar 31, 2026, 10:30:00\u202fPM"
    # An accounting period's month, not its code.
    assert (zh.month("2026-10"), en.month("2026-10")) == ("2026年10月", "Oct 2026")
    assert (zh._("Settlements"), en._("Settlements")) == ("结算", "Settlements")
    assert (zh._("paid"), en._("paid")) == ("已支付", "Paid")


def test_counts_take_the_form_their_number_needs() -> None:
    zh, en = Lang("zh_CN"), Lang("en")
    message = (
        "{name} was not imported: {count} problem. Nothing was stored.",
        "{name} was not imported: {count} problems. Nothing was stored.",
    )
    assert (
        en.n_(*message, 1, name="a.csv") == "a.csv was not imported: 1 problem. Nothing was stored."
    )
    assert en.n_(*message, 1200, name="a.csv") == (
        "a.csv was not imported: 1,200 problems. Nothing was stored."
    )
    assert zh.n_(*message, 1, name="a.csv") == "a.csv 未导入：共 1 个问题，未存储任何数据。"
    units = ("{count} unit", "{count} units")
    assert [en.n_(*units, Decimal(n)) for n in ("1", "1.5", "0")] == [
        "1 unit",
        "1.5 units",
        "0 units",
    ]
    assert zh.n_(*units, Decimal("1.5")) == "1.5 件"


def test_agreements_in_plain_language() -> None:
    terms = {
        "currency": "CNY",
        "term": {"start": "2026-01-01", "end": "2027-01-01"},
        "periods": {"kind": "quarter"},
        "minimum": "300000",
        "rebate": {
            "form": "percent",
            "method": "whole_volume",
            "basis": "net",
            "tiers": [
                {"from": "0", "to": "500000", "rate": "1"},
                {"from": "500000", "rate": "1.5"},
            ],
        },
    }
    assert plain.describe(terms, Lang("zh_CN")) == [
        "自 2026年1月1日 至 2026年12月31日，按季度计算，以您的不含税销售额为基数。",
        "档位：¥0.00 至 ¥500,000.00：1%；¥500,000.00 以上：1.5%。",
        "达到的档位比例适用于全部基数。",
        "低于 ¥300,000.00 不计返利。",
    ]
    assert plain.describe(terms, Lang("en"))[1] == (
        "Bands: CN¥0.00 to CN¥500,000.00: 1%; from CN¥500,000.00: 1.5%."
    )


def test_growth_gates_guarantees_and_targets_in_plain_language() -> None:
    terms = {
        "currency": "CNY",
        "term": {"start": "2026-01-01", "end": "2027-01-01"},
        "rebate": {
            "tiers": [{"from": "100", "to": "110", "rate": "1"}, {"from": "110", "rate": "2"}]
        },
        "growth": {"baseline": "prior_year"},
        "gate": {"target": "50000", "products": {"include": {"category": ["饮料", "零食"]}}},
        "guarantee": {"amount": "1000", "carry_forward": True},
        "target": {"products": {"include": {"brand": ["康师傅"]}}},
    }
    assert plain.describe(terms, Lang("zh_CN"))[3:] == [
        "档位按您相对上年同期采购的增长百分比计算。",
        "仅当同期您饮料、零食品类的采购达到 ¥50,000.00 时才有返利。",
        "每期至少 ¥1,000.00，按协议期内累计计算。",
        "档位按另行约定的采购范围判定。",
    ]
    fixed = {
        **terms,
        "growth": {"baseline": "fixed", "baseline_amount": "80000"},
        "gate": {"target": "10000"},
    }
    assert plain.describe(fixed, Lang("en"))[3:5] == [
        "The bands are your growth over a baseline of CN¥80,000.00 a period, in percent.",
        "Only if your purchases reach CN¥10,000.00 in the same period.",
    ]


def test_which_purchases_count_in_plain_language() -> None:
    """The portal says which products count, which do not, and what places a purchase; the
    customers an agreement selects go unsaid (the reader is one of them)."""
    terms = {
        "term": {"start": "2026-01-01", "end": "2027-01-01"},
        "rebate": {"tiers": [{"from": "0", "rate": "2"}]},
        "eligibility": {
            "customers": {"include": {"attributes": {"segment": ["商超"]}}},
            "products": {
                "include": {"category": ["乳制品", "饮料"], "brand": None, "attributes": {}},
                "exclude": {"id": ["P7"], "brand": ["清泉"], "attributes": {"包装": ["散装"]}},
            },
            "event": "paid_invoice",
            "document_types": None,
            "dates": {"start": "2026-03-01", "end": None},
        },
    }
    assert plain.describe(terms, Lang("zh_CN"))[2:] == [
        "仅计入乳制品、饮料品类的采购。",
        "以下采购不计入：清泉品牌，或商品 P7，或包装为散装。",
        "仅计入 2026年3月1日 起的采购。",
        "采购在发票付款后计入，按付款日期归期。",
    ]
    assert plain.describe(terms, Lang("en"))[2:] == [
        "Only purchases of category 乳制品, 饮料 count.",
        "Purchases of brand 清泉, or products P7, or 包装 散装 do not count.",
        "Only purchases from Mar 1, 2026 count.",
        "A purchase counts once its invoice is paid, on the day it is paid.",
    ]
    dated = {**terms, "eligibility": {"dates": {"start": "2026-03-01", "end": "2026-07-01"},
                                      "event": "order", "document_types": ["invoice"]}}  # fmt: skip
    assert plain.describe(dated, Lang("en"))[2:] == [
        "Only these documents count: invoice.",
        "Only purchases from Mar 1, 2026 to Jun 30, 2026 count.",
        "A purchase counts on its order date.",
    ]


def test_a_month_among_said_values_is_written_as_the_reader_writes_it() -> None:
    """A service names an accounting period by its code; the page says 2026年3月 or Mar 2026,
    and a stored sentence keeps the value a month."""
    refusal = PeriodError.said(
        "accounting period {period} is closed already", period=Month("2026-03")
    )
    assert str(refusal) == "accounting period 2026-03 is closed already"  # the API's English
    assert say(Lang("zh_CN"), refusal) == "会计期间 2026年3月 已结账"
    # shown on its own, an English sentence that opens with a word begins with a capital;
    # inside another sentence or a list of problems, it stays as it is
    assert say(Lang("en"), refusal) == "Accounting period Mar 2026 is closed already"
    assert say(Lang("en"), refusal, alone=False) == "accounting period Mar 2026 is closed already"
    # a letter whose capital is two letters ("ß" is "SS") is left as it is
    assert say(Lang("en"), FanliError.said("ßig {n}", n=1)) == "ßig 1"
    stored = said_from_json(said_to_json(said("{period}", period=Month("2026-03"))))
    assert isinstance(stored.values["period"], Month)


def test_a_sentence_opening_with_a_value_keeps_the_values_case() -> None:
    """A user's code opens the sentence: it is written as its owner wrote it, in any language."""
    refusal = FanliError.said("{user} may not assign findings", user="fay")
    assert say(Lang("en"), refusal) == "fay may not assign findings"
    assert str(refusal) == "fay may not assign findings"
    # a sentence that opens with a sentence opens with its words
    blocked = FanliError.said(
        "{subject} is blocked: {reasons}",
        subject=said("agreement {code} version {version}", code="a2", version=1),
        reasons=["no contract"],
    )
    assert say(Lang("en"), blocked) == "Agreement a2 version 1 is blocked: (1) no contract"
    assert say(Lang("zh_CN"), blocked).startswith("协议 a2 第 1 版")
