"""Load agreement terms from YAML or JSON files, keeping every number exact.

YAML's and JSON's own float parsing would turn ``2.5`` into a binary float; these loaders read such
numbers straight from their text into ``Decimal``. Errors name the file, the agreement and the
field.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fanli.agreements.terms import Agreement
from fanli.kit.errors import InputError, Said, said

log = logging.getLogger(__name__)


class _ExactLoader(yaml.SafeLoader):
    """SafeLoader whose floats are Decimals, whose mappings refuse a key given twice, whose
    values that do not fit their type (2026-13-45 as a date) are refused where they stand
    instead of raising Python's own error with no place, and whose aliases may not multiply a
    small text into a huge structure (nine levels of ten aliases each are 10**9 values)."""

    def construct_document(self, node: yaml.Node) -> Any:
        if _expanded_size(node, {}, set()) > MAX_VALUES:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"the text stands for more than {MAX_VALUES} values (aliases counted as often "
                "as they repeat)",
                node.start_mark,
            )
        return super().construct_document(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, ArithmeticError, LookupError, AttributeError, TypeError):
            kind = _KINDS.get(node.tag, node.tag.replace("tag:yaml.org,2002:", "!!"))
            value = (node.value or "''") if isinstance(node, yaml.ScalarNode) else "..."
            if len(value) > _SHOWN:  # a 5,000-digit !!int is not repeated in full
                value = value[:_SHOWN] + "..."
            raise yaml.constructor.ConstructorError(
                None, None, f"not a {kind}: {value}", node.start_mark
            ) from None


# Far more than any terms, policy or chart file holds; far less than an alias bomb expands to.
MAX_VALUES = 1_000_000
_SHOWN = 40  # characters of a refused value quoted in the message


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values ``node`` stands for once every alias is expanded (a node that contains
    itself counts as too many)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        return MAX_VALUES + 1
    open_nodes.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        children: list[yaml.Node] = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = []
    for child in children:
        size += _expanded_size(child, sizes, open_nodes)
        if size > MAX_VALUES:
            break
    open_nodes.discard(key)
    sizes[key] = size
    return size


_KINDS = {
    "tag:yaml.org,2002:timestamp": "date",
    "tag:yaml.org,2002:int": "whole number",
    "tag:yaml.org,2002:float": "number",
    "tag:yaml.org,2002:bool": "true/false",
}


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal:
    text = str(loader.construct_scalar(node)).replace("_", "")  # type: ignore[arg-type]
    value = Decimal(text)
    if not value.is_finite():  # NaN and infinity are no amount, rate or threshold
        raise ValueError(text)
    return value


_ExactLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    """A mapping whose keys are all different: YAML would keep the last of two ``rate:`` lines
    without a word, and terms must not depend on which one the reader noticed."""
    seen: set[Any] = set()
    for key_node, _value in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # "<<: *base": its keys may be overridden here, as YAML means
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            continue  # a list as a key: the mapping's own construction refuses it
        if key in seen:  # 1 and 1.0, or yes and true, are one key to Python as well
            written = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key)
            written = written if len(written) <= _SHOWN else written[:_SHOWN] + "..."
            raise yaml.constructor.ConstructorError(
                None, None, f"found duplicate key '{written}'", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_ExactLoader.add_constructor("tag:yaml.org,2002:map", _construct_unique_mapping)


class _JsonRefusalError(ValueError):
    """Valid JSON that is not valid terms, raised from ``json``'s hooks with its reason."""

    def __init__(self, reason: Said) -> None:
        super().__init__(str(reason))
        self.reason = reason


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different (``json`` keeps the last of two)."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _JsonRefusalError(said("the field {key} is given twice", key=key))
        found[key] = value
    return found


def _refuse_constant(written: str) -> Any:
    """``json`` reads NaN, Infinity and -Infinity as floats; terms have no use for them."""
    raise _JsonRefusalError(said("{value} is not a number", value=written))


def _whole_number(written: str) -> int:
    """A JSON integer; one longer than Python converts (4,300 digits) is refused in words."""
    try:
        return int(written)
    except ValueError:
        digits = len(written.lstrip("-"))
        raise _JsonRefusalError(
            said("a number of {digits} digits is too long", digits=digits)
        ) from None


# The parsers' own reasons for the common mistakes, as sentences the pages can translate
# (``json``'s messages and PyYAML's problems; any other reason is shown as the parser gave it).
_REASONS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], Said]], ...] = tuple(
    (re.compile(pattern, re.DOTALL), sentence)  # a key or value may span lines
    for pattern, sentence in (
        (r"Expecting value", lambda _: said("a value is expected here")),
        (
            r"Expecting property name enclosed in double quotes",
            lambda _: said("a field name in double quotes is expected here"),
        ),
        (r"Expecting '(.)' delimiter", lambda m: said("'{mark}' is expected here", mark=m[1])),
        (r"Extra data", lambda _: said("more text follows the end of the data")),
        (r"Unterminated string starting at", lambda _: said("a quoted value is not closed")),
        (r"found unexpected end of stream", lambda _: said("a quoted value is not closed")),
        (
            r"Invalid \\(?:escape|uXXXX escape)|found unknown escape character.*",
            lambda _: said("a backslash in a quoted value starts no known escape"),
        ),
        (
            r"Invalid control character at",
            lambda _: said("a quoted value holds a tab or a line break"),
        ),
        (
            r"expected the node content, but found '<stream end>'",
            lambda _: said("the text ends where a value is expected"),
        ),
        (
            r"expected ',' or '([\]}])', but got '<stream end>'",
            lambda m: said("the text ends before the closing '{mark}'", mark=m[1]),
        ),
        (
            r"expected ',' or '([\]}])', but got .*",
            lambda m: said("',' or '{mark}' is expected here", mark=m[1]),
        ),
        (
            r"mapping values are not allowed here",
            lambda _: said(
                "a ':' is not allowed here: check the indentation, or quote a value that holds ': '"
            ),
        ),
        (r"expected <block end>, but found .*", lambda _: said("the indentation is off here")),
        (
            r"found character '\\t' that cannot start any token",
            lambda _: said("a tab: indent with spaces"),
        ),
        (
            r"found character '(.+)' that cannot start any token",
            lambda m: said("a value cannot begin with {character}: quote it", character=m[1]),
        ),
        (
            r"Illegal trailing comma before end of (?:object|array)",  # Python 3.13's json
            lambda _: said("a comma too many before the closing bracket"),
        ),
        (
            r"the text stands for more than (\d+) values \(aliases counted as often as they "
            r"repeat\)",
            lambda m: said(
                "the text stands for more than {count} values (aliases counted as often as "
                "they repeat)",
                count=m[1],
            ),
        ),
        (r"not a date: (.*)", lambda m: said("{value} is not a date", value=m[1])),
        (
            r"not a whole number: (.*)",
            lambda m: said("{value} is not a whole number", value=m[1]),
        ),
        (r"not a number: (.*)", lambda m: said("{value} is not a number", value=m[1])),
        (r"not a true/false: (.*)", lambda m: said("{value} is not true or false", value=m[1])),
        (
            r"could not find expected ':'",
            lambda _: said("a ':' is expected after the field name"),
        ),
        (
            r"found duplicate key '(.*)'",
            lambda m: said("the field {key} is given twice", key=m[1]),
        ),
        (
            r"found undefined alias '(.*)'",
            lambda m: said("the alias *{name} names no anchor", name=m[1]),
        ),
        (
            r"could not determine a constructor for the tag '(.*)'",
            lambda m: said(
                "the tag {tag} is not allowed", tag=m[1].replace("tag:yaml.org,2002:", "!!")
            ),
        ),
    )
)


def _reason(problem: str) -> Said | str:
    """The parser's reason as a sentence the pages translate, when it is a common one."""
    for pattern, sentence in _REASONS:
        match = pattern.fullmatch(problem)
        if match:
            return sentence(match)
    return problem


def parse_terms_text(text: str, *, source: str = "<text>") -> Any:
    """Parse YAML or JSON text with exact decimals (JSON is valid YAML, but JSON is faster)."""
    stripped = text.lstrip()
    try:
        if stripped.startswith(("{", "[")):
            return json.loads(
                text,
                parse_float=Decimal,
                parse_int=_whole_number,
                parse_constant=_refuse_constant,
                object_pairs_hook=_unique_object,
            )
        return yaml.load(text, Loader=_ExactLoader)  # noqa: S506 - a SafeLoader subclass
    except _JsonRefusalError as error:
        raise InputError.said_at(
            "not valid terms: {problem}", file=source, problem=error.reason
        ) from None
    except json.JSONDecodeError as error:
        raise _not_parsed(source, error.lineno, error.colno, error.msg) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        if mark is None:  # pragma: no cover - PyYAML marks the errors it raises while parsing
            raise _not_parsed(source, 0, 0, str(error)) from None
        problem = error.problem or error.context or "not valid"
        raise _not_parsed(source, mark.line + 1, mark.column + 1, problem) from None
    except yaml.YAMLError as error:
        raise InputError.said_at(
            "not valid YAML or JSON: {error}", file=source, error=str(error).replace("\n", " ")
        ) from None
    except RecursionError:  # absurdly deep nesting
        raise InputError.said_at("the terms are nested too deeply", file=source) from None
    except (ValueError, TypeError, ArithmeticError) as error:
        # Nothing known reaches here any more; text from a user must still end as a refusal,
        # not a 500. Logged in full: it may as well be a mistake in this module.
        log.warning("terms text refused by an unexpected %s", type(error).__name__, exc_info=True)
        raise InputError.said_at(
            "not valid YAML or JSON: {error}", file=source, error=str(error).replace("\n", " ")
        ) from None


def _not_parsed(source: str, line: int, column: int, problem: str) -> InputError:
    """Where the text stops being YAML or JSON, and why: in the reader's language for the
    common mistakes, else in the parser's own words (English)."""
    return InputError.said_at(
        "not valid YAML or JSON at line {line}, column {column} ({problem})",
        file=source,
        line=line,
        column=column,
        problem=_reason(problem.strip()),
    )


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    return f"{location}: {message}" if location else message


def agreements_from_data(data: Any, *, source: str = "<data>") -> list[Agreement]:
    """Validate parsed data: one agreement, a list of them, or ``{agreements: [...]}``."""
    if isinstance(data, dict) and "agreements" in data:
        data = data["agreements"]
    items = data if isinstance(data, list) else [data]
    agreements: list[Agreement] = []
    seen: set[tuple[str, int]] = set()
    for index, item in enumerate(items):
        # The agreement's id when it is one: a structure in its place would be written out in
        # full into the message.
        written = item.get("id") if isinstance(item, dict) else None
        label = (
            written
            if isinstance(written, str | int) and not isinstance(written, bool)
            else f"#{index + 1}"
        )
        if not isinstance(item, dict):
            raise InputError.said_at(
                "agreement {label}: expected a mapping of terms", file=source, label=label
            )
        try:
            agreement = Agreement.model_validate(item)
        except ValidationError as error:
            # Chained: a page reads every problem from the cause, in the reader's language.
            raise InputError(f"agreement {label}: {_describe(error)}", file=source) from error
        key = (agreement.id, agreement.version)
        if key in seen:
            raise InputError.said_at(
                "agreement {code} version {version} appears twice",
                file=source,
                code=agreement.id,
                version=agreement.version,
            )
        seen.add(key)
        agreements.append(agreement)
    return agreements


def read_document(path: Path) -> Any:
    """A YAML or JSON file (terms, a policy, a chart of accounts, a column mapping) parsed as
    ``parse_terms_text`` does; a file that cannot be read, or is not UTF-8, is refused by
    name. A byte-order mark, which spreadsheet tools write, is skipped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise InputError.said_at(
            "cannot read: {problem}", file=str(path), problem=error.strerror
        ) from None
    except UnicodeDecodeError:
        raise InputError.said_at("is not UTF-8 text", file=str(path)) from None
    return parse_terms_text(text, source=str(path))


def load_agreements(path: Path) -> list[Agreement]:
    """Read and validate every agreement in a YAML or JSON file."""
    return agreements_from_data(read_document(path), source=str(path))
