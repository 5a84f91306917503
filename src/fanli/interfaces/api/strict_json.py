"""JSON request bodies that say one thing: no key given twice in an object, no NaN or
Infinity, no half of a surrogate pair.

Python's ``json``, and so FastAPI, keeps the last of two equal keys in an object: a body of
``{"amount": "10.00", ..., "amount": "10000.00"}`` would be read as 10,000 with nothing said,
while a reviewer of the request, or a proxy's log, may read the first. JSON has no NaN or
Infinity either, but ``json`` reads them as floats; and an escape of half a UTF-16 surrogate
pair (``\\ud800``) leaves a string no database or response can hold. The API's routes
therefore read bodies with ``StrictJsonRoute``: each is refused as bad input (422), naming
the key, the constant or the escape and the line and column where it is, before any route
runs.

Each body is read once by the C parser with a check on every object. Only a refused body is
read again, by the pure-Python scanner, to find where: it is the one that lets the start of
each object and array be known. A key given twice is then found by walking that object's
members to the second one.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response


class _RefusedError(Exception):
    """What the hooks raise inside the parser; ``at`` is set by the innermost container (or,
    for a key given twice, by the key's second place in it)."""

    def __init__(self, problem: str, *, twice: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.twice = twice  # the key given twice
        self.at: int | None = None


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _RefusedError(
                f"the field {json.dumps(key, ensure_ascii=False)} is given twice", twice=key
            )
        found[key] = value
    return found


_SPACE = re.compile(r"[ \t\n\r]*")


def _skip_space(text: str, at: int) -> int:
    found = _SPACE.match(text, at)
    assert found is not None  # it matches the empty string
    return found.end()


def _second_key(text: str, start: int, key: str, scan_once: Any) -> int:
    """Where ``key`` is written the second time in the object that opens at ``start``: its
    members (key, colon, value, then a comma) are walked with the scanner that read them."""
    scan_string: Any = json.decoder.scanstring  # type: ignore[attr-defined]
    seen = False
    end = start + 1
    while True:
        at = _skip_space(text, end)
        name, end = scan_string(text, at + 1)
        if name == key:
            if seen:
                return at
            seen = True
        end = _skip_space(text, _skip_space(text, end) + 1)  # past the colon
        _, end = scan_once(text, end)
        end = _skip_space(text, end) + 1  # past the comma


def _no_constant(name: str) -> Any:
    raise _RefusedError(f"{name} is not a number JSON allows")


def _located(container: Callable[..., Any]) -> Callable[..., Any]:
    """A container parser that marks a refusal from its own values with where it opened."""

    def parse(s_and_end: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        try:
            return container(s_and_end, *args, **kwargs)
        except _RefusedError as refused:
            if refused.at is None:
                refused.at = s_and_end[1] - 1  # the opening bracket
            raise

    return parse


def _where(text: str) -> int:
    """Where the refused container opens: read again by the pure-Python scanner."""
    # The scanner's parts are not in typeshed, though ``json`` has had them since Python 2.6;
    # the tests that quote a line and column would show a change.
    decoder: Any = json.JSONDecoder(object_pairs_hook=_unique, parse_constant=_no_constant)
    decoder.parse_object = _located(json.decoder.JSONObject)  # type: ignore[attr-defined]
    decoder.parse_array = _located(json.decoder.JSONArray)  # type: ignore[attr-defined]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    try:
        decoder.decode(text)
    except _RefusedError as refused:
        if refused.twice is not None and refused.at is not None:
            return _second_key(text, refused.at, refused.twice, decoder.scan_once)
        return refused.at or 0
    return 0  # pragma: no cover - the C parser refused it, so the Python one does too


def strict_loads(body: bytes | str) -> Any:
    """``json.loads`` that refuses a key given twice and NaN or Infinity, as a
    ``json.JSONDecodeError`` (FastAPI answers those with a 422 naming the position)."""
    text = body.decode() if isinstance(body, bytes) else body
    try:
        value = json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant)
    except _RefusedError as refused:
        raise json.JSONDecodeError(refused.problem, text, _where(text)) from None
    if _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(value, text)
    return value


# An escape of a UTF-16 surrogate: a pair stands for one character, but one alone is no
# character at all, and no database or response can hold the string it leaves.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def _refuse_lone_surrogates(value: Any, text: str) -> None:
    """Refuse a body whose text escapes half a surrogate pair, at the first such escape."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        found = _LONE.search(text)
        written = found.group(0) if found else "\\ud800"
        raise json.JSONDecodeError(
            f"{written} is half of a UTF-16 surrogate pair, not a character",
            text,
            found.start() if found else 0,
        ) from None


class _StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_strict_json"):
            self._strict_json = strict_loads(await self.body())
        return self._strict_json


class StrictJsonRoute(APIRoute):
    """A route whose JSON body is read by ``strict_loads``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict


def json_problem(error: dict[str, Any], body: Any) -> str | None:
    """The message for FastAPI's ``json_invalid`` error: what is wrong, at which line and
    column of the body (FastAPI gives only the character offset)."""
    if error.get("type") != "json_invalid":
        return None
    problem = str(error.get("ctx", {}).get("error", error.get("msg", "not valid JSON")))
    position = error["loc"][-1] if error.get("loc") else None
    if not isinstance(body, str) or not isinstance(position, int):
        return problem
    line = body.count("\n", 0, position) + 1
    column = position - (body.rfind("\n", 0, position) + 1) + 1
    return f"{problem} (line {line}, column {column})"
