"""The error base class. Every error a user can meet is a FanliError with a stable code.

Interfaces map ``code`` to an HTTP status or a CLI exit code and print ``str(error)``: one
readable line, never a traceback.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Self


@dataclass(frozen=True)
class Said:
    """One sentence of an error, kept as its template and values (a part of a list of
    problems): English by ``str()``, and translatable by the interfaces like ``said``."""

    template: str
    values: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return _fill(self.template, self.values)


def said(template: str, /, **values: Any) -> Said:
    return Said(template, values)


class Code(str):
    """A code (a status, a kind) among a said sentence's values, when no StrEnum names it: a
    page translates it as it translates a StrEnum."""

    __slots__ = ()


class Month(str):
    """An accounting period's month by its code (2026-03) among a said sentence's values: a page
    writes it as its reader writes a month (2026年3月, Mar 2026)."""

    __slots__ = ()


def said_to_json(sentence: Said) -> dict[str, Any]:
    """A said sentence as JSON, to be stored and said again later (``said_from_json``): codes,
    dates, names and nested sentences keep their kind; other values are kept as their text."""
    return {"said": sentence.template, "values": _json_value(sentence.values)}


def _json_value(value: Any) -> Any:
    if isinstance(value, Said):
        return said_to_json(value)
    if isinstance(value, StrEnum | Code):
        return {"code": str(value)}
    if isinstance(value, Month):
        return {"month": str(value)}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, tuple):
        return {"names": [_json_value(item) for item in value]}
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, int | str) and not isinstance(value, bool):
        return value
    return str(value)  # a Decimal keeps every digit as text


def said_from_json(data: dict[str, Any]) -> Said:
    """The sentence ``said_to_json`` stored."""
    return Said(data["said"], {key: _from_json(item) for key, item in data["values"].items()})


def _from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    if isinstance(value, dict):
        if "said" in value:
            return said_from_json(value)
        if "code" in value:
            return Code(value["code"])
        if "month" in value:
            return Month(value["month"])
        if "date" in value:
            return dt.date.fromisoformat(value["date"])
        if "names" in value:
            return tuple(_from_json(item) for item in value["names"])
    return value


class FanliError(Exception):
    """Base of all expected errors. ``code`` is stable and machine-readable."""

    code = "fanli_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Set by ``said``: the message before its values, and the values.
        self.template: str | None = None
        self.values: dict[str, Any] = {}

    @classmethod
    def said(cls, template: str, /, **values: Any) -> Self:
        """The error whose message is ``template`` filled with ``values``.

        The template is also a message id of the web's catalogs, so a page can say it in the
        reader's language. A value that is a code (a StrEnum) or a ``Said`` is translated too;
        a list of them is said as numbered parts, a tuple of codes as a list of names.
        ``str()`` stays the English sentence: for the log, the API and the command line.
        """
        error = cls(_fill(template, values))
        error.template, error.values = template, values
        return error


class InputError(FanliError):
    """Bad input in a file or a request, located as precisely as we can: file, row, field."""

    code = "invalid_input"

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file = file
        self.row = row
        self.field = field
        self.detail = message  # what is wrong, without where
        super().__init__(self._located())

    def _located(self) -> str:
        where = ", ".join(
            part
            for part in (
                f"file {self.file}" if self.file else "",
                f"row {self.row}" if self.row is not None else "",
                f"field {self.field!r}" if self.field else "",
            )
            if part
        )
        return f"{where}: {self.detail}" if where else self.detail

    def naming(self, file: str) -> Self:
        """The same refusal naming ``file``: an upload by the name its sender gave it, not
        the server's temporary copy."""
        # Not copy.copy: it rebuilds an exception from its args, which subclasses differ on.
        renamed = type(self).__new__(type(self))
        renamed.__dict__.update(self.__dict__)
        renamed.file = file
        renamed.message = renamed._located()
        renamed.args = (renamed.message,)
        return renamed

    @classmethod
    def said_at(
        cls,
        template: str,
        /,
        *,
        file: str | None = None,
        row: int | None = None,
        field: str | None = None,
        **values: Any,
    ) -> Self:
        """``said``, located: the file, row and field of the bad input."""
        error = cls(_fill(template, values), file=file, row=row, field=field)
        error.template, error.values = template, values
        return error


class NotFoundError(FanliError):
    """Nothing with this identity exists (or the actor may not know that it does)."""

    code = "not_found"


def _fill(template: str, values: dict[str, Any]) -> str:
    """The English sentence: ``template`` with ``values`` as English writes them."""
    return template.format(**{key: _english(value) for key, value in values.items()})


def _english(value: Any) -> Any:
    """A value as the English message writes it: a list of parts numbered, "(1) ...; (2) ...";
    a tuple of names (codes) joined by commas."""
    if isinstance(value, list):
        return "; ".join(f"({number}) {part}" for number, part in enumerate(value, start=1))
    if isinstance(value, tuple):
        return ", ".join(str(item) for item in value)
    return value
