"""Load agreement terms from YAML or JSON files, keeping every number exact.

YAML's and JSON's own float parsing would turn ``2.5`` into a binary float; these loaders read such
numbers straight from their text into ``Decimal``. Errors name the file, the agreement and the
field.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fanli.agreements.terms import Agreement
from fanli.kit.errors import InputError


class _ExactLoader(yaml.SafeLoader):
    """SafeLoader whose floats are Decimals."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal:
    text = str(loader.construct_scalar(node)).replace("_", "")  # type: ignore[arg-type]
    return Decimal(text)


_ExactLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


def parse_terms_text(text: str, *, source: str = "<text>") -> Any:
    """Parse YAML or JSON text with exact decimals (JSON is valid YAML, but JSON is faster)."""
    stripped = text.lstrip()
    try:
        if stripped.startswith(("{", "[")):
            return json.loads(text, parse_float=Decimal)
        return yaml.load(text, Loader=_ExactLoader)  # noqa: S506 - a SafeLoader subclass
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


def _not_parsed(source: str, line: int, column: int, problem: str) -> InputError:
    """Where the text stops being YAML or JSON: the place said in the reader's language, the
    parser's own words (English) beside it."""
    return InputError.said_at(
        "not valid YAML or JSON at line {line}, column {column} ({problem})",
        file=source,
        line=line,
        column=column,
        problem=problem.strip(),
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
        label = item.get("id", f"#{index + 1}") if isinstance(item, dict) else f"#{index + 1}"
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


def load_agreements(path: Path) -> list[Agreement]:
    """Read and validate every agreement in a YAML or JSON file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InputError.said_at(
            "cannot read: {problem}", file=str(path), problem=error.strerror
        ) from None
    except UnicodeDecodeError:
        raise InputError.said_at("is not UTF-8 text", file=str(path)) from None
    return agreements_from_data(parse_terms_text(text, source=str(path)), source=str(path))
