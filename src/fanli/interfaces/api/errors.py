"""One error shape for every failure: ``{"error": code, "detail": ...}`` with the right status.

Expected failures are ``FanliError``s; their class decides the status. A request that does not
match the schema is 422 with the field named. Anything else is a 500 with no detail (the cause
goes to the log), and the unit of work has already rolled back.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.exc import DataError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from fanli.interfaces.web import views as web
from fanli.kit.errors import FanliError, InputError, NotFoundError
from fanli.sales.files import InputFileError
from fanli.settlements.idempotency import IdempotencyError, KeyReusedError
from fanli.users.actor import PermissionDeniedError
from fanli.users.auth import AuthError
from fanli.users.queries import UnknownUserError

from .strict_json import json_problem

log = logging.getLogger("fanli.api")

# Most specific first.
_STATUS: list[tuple[type[FanliError], int]] = [
    (AuthError, 401),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (UnknownUserError, 404),
    (KeyReusedError, 422),
    (IdempotencyError, 400),
    (InputError, 422),
]
REFUSED = 409  # any other rule refused the request in the state it found


def status_of(error: FanliError) -> int:
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return REFUSED


def error_body(code: str, detail: Any) -> dict[str, Any]:
    return {"error": code, "detail": detail}


def install(app: FastAPI) -> None:
    @app.exception_handler(InputFileError)
    async def _file(_request: Request, error: InputFileError) -> JSONResponse:
        # A refused import: every problem with its row, field and reason (the first 1,000).
        problems = [
            {"row": issue.row, "field": issue.field, "reason": issue.message}
            for issue in error.issues[:1000]
        ]
        detail = {"file": error.file, "total": error.total, "problems": problems}
        return JSONResponse(error_body(error.code, detail), status_code=422)

    @app.exception_handler(web.PasswordChangeRequired)
    async def _change_first(request: Request, _error: web.PasswordChangeRequired) -> Response:
        return web.to_password_change(request)

    @app.exception_handler(FanliError)
    async def _fanli(_request: Request, error: FanliError) -> JSONResponse:
        return JSONResponse(error_body(error.code, str(error)), status_code=status_of(error))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> Response:
        problems = []
        for e in error.errors():
            said = json_problem(e, error.body)
            if said is not None:  # the body is not JSON, or says a key twice: no field to name
                problems.append({"field": "body", "message": said})
            else:
                problems.append(
                    {"field": ".".join(str(part) for part in e["loc"]), "message": e["msg"]}
                )
        if not request.url.path.startswith("/api"):
            # A web form: back to its page, saying what was wrong in the reader's language.
            return await run_in_threadpool(web.form_not_accepted, request, error.errors())
        return JSONResponse(error_body("invalid_input", problems), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 404 and not request.url.path.startswith(("/api", "/static")):
            # A person's address that leads nowhere: the site's own page, not JSON.
            return await run_in_threadpool(web.not_found_page, request)
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return JSONResponse(error_body(code, error.detail), status_code=error.status_code)

    @app.exception_handler(DataError)
    async def _data(_request: Request, error: DataError) -> JSONResponse:
        # The database refused a value the request carried (a NUL character, a string longer
        # than its column, a number out of range): bad input, and the transaction rolled back.
        log.info("input refused by the database: %s", error.orig)
        detail = "a value is not valid here (too long, out of range, or with NUL characters)"
        return JSONResponse(error_body("invalid_input", detail), status_code=422)

    @app.exception_handler(Exception)
    async def _crash(request: Request, error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        if not request.url.path.startswith(("/api", "/static")):
            # A person sees a page in both languages, not JSON. It needs nothing that could
            # have failed (no session, no database): the cause may be either.
            return HTMLResponse(web.SERVER_ERROR_PAGE, status_code=500)
        return JSONResponse(error_body("internal_error", "see the server log"), status_code=500)
