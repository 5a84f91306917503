"""Terms written as YAML or JSON (``fanli.agreements.files.parse_terms_text``): a mistake is
refused with its line, its column and a reason the pages can say in the reader's language, and
never as Python's own error; a field given twice is a mistake, not a silent choice."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from fanli.agreements import files
from fanli.agreements.files import _reason, agreements_from_data, parse_terms_text
from fanli.interfaces.web.i18n import Lang
from fanli.interfaces.web.views import say
from fanli.kit.errors import InputError, Said

EXPANDS = "the text stands for more than 1000000 values (aliases counted as often as they repeat)"


def _refusal(text: str) -> InputError:
    with pytest.raises(InputError) as refused:
        parse_terms_text(text)
    return refused.value


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ('{"id": "X",}', (1, 12), "a field name in double quotes is expected here"),
        ('{"id" "X"}', (1, 7), "':' is expected here"),
        ('{"id": }', (1, 8), "a value is expected here"),
        ('{"id": "X"} x', (1, 13), "more text follows the end of the data"),
        ('{"id": "X', (1, 8), "a quoted value is not closed"),
        ('{"id": "a\\qb"}', (1, 10), "a backslash in a quoted value starts no known escape"),
        ('{"a": "x\ty"}', (1, 9), "a quoted value holds a tab or a line break"),
        ("[1, 2", (1, 6), "',' is expected here"),
        ("id: X\nterm: [", (2, 8), "the text ends where a value is expected"),
        ("id: X\nterm: {a: 1", (2, 12), "the text ends before the closing '}'"),
        ("a: [1, 2}", (1, 9), "',' or ']' is expected here"),
        (
            "id: X\n  term: 1",
            (2, 7),
            "a ':' is not allowed here: check the indentation, or quote a value that holds ': '",
        ),
        ("id:\tX\n", (1, 4), "a tab: indent with spaces"),
        ('id: "X\nterm: 1', (2, 8), "a quoted value is not closed"),
        ("a:\n  - 1\n  b: 2", (3, 3), "the indentation is off here"),
        ("a: |\n x\n y: 1\nb", (4, 2), "a ':' is expected after the field name"),
        ("a: *nope", (1, 4), "the alias *nope names no anchor"),
        ("a: @x", (1, 4), "a value cannot begin with @: quote it"),
        ("a: !!python/object x", (1, 4), "the tag !!python/object is not allowed"),
        ('key: "\\q"', (1, 8), "a backslash in a quoted value starts no known escape"),
        # values that are YAML but not of their type: Python's own errors, before
        ("term: {start: 2026-02-30}", (1, 15), "2026-02-30 is not a date"),
        ("a: 2026-13-45", (1, 4), "2026-13-45 is not a date"),
        ("a: !!int x", (1, 4), "x is not a whole number"),
        ("a: !!float x", (1, 4), "x is not a number"),
        ("a: !!bool x", (1, 4), "x is not true or false"),
        ("a: !!int ''", (1, 4), "'' is not a whole number"),
        ("a: !!float NaN", (1, 4), "NaN is not a number"),
        ("a: .inf", (1, 4), ".inf is not a number"),
        ("- !!set {? !!float sNaN}", (1, 12), "sNaN is not a number"),
        ('{"a": "\\u12G4"}', (1, 9), "a backslash in a quoted value starts no known escape"),
        # a field given twice, at any depth, whatever its type; written as the file writes it
        ("a: 1\na: 2", (2, 1), "the field a is given twice"),
        ("a:\n  b: 1\n  c: 2\n  b: 3", (4, 3), "the field b is given twice"),
        ("2026-01-01: a\n2026-01-01: b", (2, 1), "the field 2026-01-01 is given twice"),
        ("yes: 1\ntrue: 2", (2, 1), "the field true is given twice"),
        ("1: a\n1.0: b", (2, 1), "the field 1.0 is given twice"),
        # aliases that would multiply a small text into a huge structure, or into itself
        (
            "l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n"
            + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 9))
            + "id: *l8\n",
            (1, 1),
            EXPANDS,
        ),
        ("a: &a [*a]", (1, 1), EXPANDS),
    ],
)
def test_a_mistake_is_refused_where_it_is_with_a_reason(
    text: str, where: tuple[int, int], reason: str
) -> None:
    refusal = _refusal(text)
    line, column = where
    assert str(refusal) == (
        f"file <text>: not valid YAML or JSON at line {line}, column {column} ({reason})"
    )
    # every reason above is a sentence of the catalogs, so a Chinese page says it in Chinese
    chinese = say(Lang("zh_CN"), refusal)
    assert chinese.startswith(f"第 {line} 行第 {column} 列起不是有效的 YAML 或 JSON（")
    assert chinese.endswith("）")
    assert reason not in chinese
    assert say(Lang("en"), refusal) == (
        f"Not valid YAML or JSON at line {line}, column {column} ({reason})"
    )


def test_the_chinese_reasons_read_as_chinese() -> None:
    assert say(Lang("zh_CN"), _refusal('{"id": "X",}')) == (
        "第 1 行第 12 列起不是有效的 YAML 或 JSON（此处应为双引号括起的字段名）"
    )
    assert say(Lang("zh_CN"), _refusal("a: 1\na: 2")) == (
        "第 2 行第 1 列起不是有效的 YAML 或 JSON（字段 a 重复出现）"
    )
    assert say(Lang("zh_CN"), _refusal("term: {start: 2026-02-30}")) == (
        "第 1 行第 15 列起不是有效的 YAML 或 JSON（2026-02-30 不是有效的日期）"
    )


def test_a_reason_without_words_in_the_catalogs_is_the_parsers_own() -> None:
    refusal = _refusal("? [1]\n: 2")
    assert str(refusal) == (
        "file <text>: not valid YAML or JSON at line 1, column 3 (found unhashable key)"
    )
    assert say(Lang("zh_CN"), refusal) == (
        "第 1 行第 3 列起不是有效的 YAML 或 JSON（found unhashable key）"
    )


def test_a_json_field_given_twice_is_refused() -> None:
    refusal = _refusal('{"id": "X", "rebate": {"rate": 1, "rate": 2}}')
    assert str(refusal) == "file <text>: not valid terms: the field rate is given twice"
    assert say(Lang("zh_CN"), refusal) == "条款无效：字段 rate 重复出现"


def test_what_is_valid_reads_exactly() -> None:
    """Decimals stay exact; a merge key still merges, and a key it brings may be overridden
    (YAML's meaning, not a key given twice)."""
    assert parse_terms_text("a: 2.5\nb: 2026-02-28\nc: 0.1") == {
        "a": Decimal("2.5"),
        "b": dt.date(2026, 2, 28),
        "c": Decimal("0.1"),
    }
    assert parse_terms_text('{"a": 2.5, "b": [0.1, 1]}') == {
        "a": Decimal("2.5"),
        "b": [Decimal("0.1"), 1],
    }
    merged = parse_terms_text("base: &base {rate: 1, cap: 5}\nvariant:\n  <<: *base\n  rate: 2\n")
    assert merged["variant"] == {"rate": 2, "cap": 5}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": NaN}', "file <text>: not valid terms: NaN is not a number"),
        ('{"a": -Infinity}', "file <text>: not valid terms: -Infinity is not a number"),
        ("[" * 5000 + "]" * 5000, "file <text>: the terms are nested too deeply"),
    ],
)
def test_what_the_parsers_let_through_unmarked_is_refused_too(text: str, message: str) -> None:
    assert str(_refusal(text)) == message


def test_a_json_integer_longer_than_python_converts_is_refused_in_words() -> None:
    refusal = _refusal('{"id": -' + "1" * 4301 + "}")
    assert str(refusal) == "file <text>: not valid terms: a number of 4301 digits is too long"
    assert say(Lang("zh_CN"), refusal) == "条款无效：4301 位的数字太长"


def test_a_long_value_is_quoted_in_part_and_a_key_over_lines_still_has_words() -> None:
    refusal = _refusal("a: !!int " + "x" * 5000)
    assert str(refusal) == (
        "file <text>: not valid YAML or JSON at line 1, column 4 "
        f"({'x' * 40}... is not a whole number)"
    )
    twice = _refusal('"a\\nb": 1\n"a\\nb": 2')  # a key with a line break, written "a\nb"
    assert say(Lang("zh_CN"), twice) == (
        "第 2 行第 1 列起不是有效的 YAML 或 JSON（字段 a\nb 重复出现）"
    )


def test_an_unexpected_error_is_a_refusal_and_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No known input reaches the last resort; a mistake in the module would, and must show
    in the log rather than pass as the user's."""

    def broken(*_args: object) -> int:
        raise TypeError("a mistake in the module")

    monkeypatch.setattr(files, "_expanded_size", broken)
    refusal = _refusal("a: 1")
    assert str(refusal) == "file <text>: not valid YAML or JSON: a mistake in the module"
    assert [record.getMessage() for record in caplog.records] == [
        "terms text refused by an unexpected TypeError"
    ]


def test_pythons_later_json_messages_have_words_too() -> None:
    """Python 3.13's json says "Illegal trailing comma" where 3.11 says "Expecting property
    name"; requires-python allows both."""
    reason = _reason("Illegal trailing comma before end of object")
    assert isinstance(reason, Said)
    assert str(reason) == "a comma too many before the closing bracket"


@pytest.mark.parametrize("written", ["*b", "true"])
def test_an_agreement_whose_id_is_not_a_code_is_named_by_its_place(written: str) -> None:
    """An id that is a list (here of aliases) is not written out into the message, and a
    true/false is no agreement's name."""
    data = parse_terms_text(
        f"base: &b [1, 2, 3]\nagreements:\n  - id: {written}\n    colour: blue\n"
    )
    with pytest.raises(InputError) as refused:
        agreements_from_data(data)
    assert str(refused.value).startswith("file <data>: agreement #1: ")
