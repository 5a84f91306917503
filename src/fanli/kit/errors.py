"""The error base class. Every error a user can meet is a FanliError with a stable code.

Interfaces map ``code`` to an HTTP status or a CLI exit code and print ``str(error)``: one
readable line, never a traceback.
"""

from __future__ import annotations


class FanliError(Exception):
    """Base of all expected errors. ``code`` is stable and machine-readable."""

    code = "fanli_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
        where = ", ".join(
            part
            for part in (
                f"file {file}" if file else "",
                f"row {row}" if row is not None else "",
                f"field {field!r}" if field else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class NotFoundError(FanliError):
    """Nothing with this identity exists (or the actor may not know that it does)."""

    code = "not_found"
