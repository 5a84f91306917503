"""``Idempotency-Key`` over HTTP for every POST that moves money.

- no key: 400;
- the same key while the first request is in flight: 409;
- the same key with another body or route: 422;
- the same key and body after success: the first response again, byte for byte.

Keys belong to a caller (the sha256 of their credential), so two callers never collide. Only a
successful (2xx) response is kept; after an error the claim is released and a corrected retry
may use the key. Underneath, the services keep their own guarantee on the same key: money moves
at most once even if this layer were bypassed.
"""

from __future__ import annotations

import hashlib
import re

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fanli.config import company_now
from fanli.db.session import unit_of_work

from .deps import credential
from .errors import error_body
from .models import HttpIdempotency

MONEY_ROUTES = re.compile(
    r"^/api/(settlements(/\d+/(approvals|payout))?|balance-uses(/\d+/decision)?)$",
)
MAX_KEY = 128


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _claim(
    sessions: sessionmaker[Session], key: str, caller: str, method_path: str, body_sha: str
) -> Response | None:
    """None when this request now owns the key; otherwise the answer to give."""
    for _ in range(2):
        try:
            with unit_of_work(sessions) as session:
                row = session.get(HttpIdempotency, (key, caller))
                if row is None:
                    session.add(
                        HttpIdempotency(
                            key=key,
                            caller=caller,
                            method_path=method_path,
                            body_sha256=body_sha,
                            created_at=company_now(),
                        )
                    )
                    return None
                if row.method_path != method_path or row.body_sha256 != body_sha:
                    return JSONResponse(
                        error_body(
                            "idempotency_key_reused",
                            f"idempotency key {key!r} was used for another request",
                        ),
                        status_code=422,
                    )
                if row.status is None:
                    return JSONResponse(
                        error_body("in_flight", "a request with this key is still running"),
                        status_code=409,
                    )
                return Response(
                    content=row.body or b"",
                    status_code=row.status,
                    media_type=row.content_type,
                )
        except IntegrityError:
            continue  # another request claimed it between our read and insert: read again
    return JSONResponse(
        error_body("in_flight", "a request with this key is still running"), status_code=409
    )


def _finish(
    sessions: sessionmaker[Session],
    key: str,
    caller: str,
    *,
    status: int,
    content_type: str | None,
    body: bytes,
) -> None:
    with unit_of_work(sessions) as session:
        row = session.get(HttpIdempotency, (key, caller))
        if row is None:
            return
        if 200 <= status < 300:
            row.status = status
            row.content_type = content_type
            row.body = body
        else:
            session.execute(
                delete(HttpIdempotency).where(
                    HttpIdempotency.key == key, HttpIdempotency.caller == caller
                )
            )


class IdempotencyMiddleware:
    """Plain ASGI (no per-request task or stream for the requests it lets through): only
    POSTs to the money routes are buffered, claimed and recorded."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not MONEY_ROUTES.match(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        key = request.headers.get("idempotency-key", "").strip()
        if not key or len(key) > MAX_KEY:
            missing = JSONResponse(
                error_body(
                    "idempotency_key_missing",
                    f"this request moves money: send an Idempotency-Key of 1 to {MAX_KEY} "
                    "characters",
                ),
                status_code=400,
            )
            await missing(scope, receive, send)
            return
        found = credential(request)
        if found is None:
            await self.app(scope, receive, send)  # answered 401 by the route
            return
        caller = _sha(found[1].encode("utf-8"))
        body = await request.body()
        sessions = scope["app"].state.sessions
        method_path = f"POST {scope['path']}"
        answer = await run_in_threadpool(_claim, sessions, key, caller, method_path, _sha(body))
        if answer is not None:
            await answer(scope, receive, send)
            return

        async def replay_body() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, replay_body, capture)
        except BaseException:
            await run_in_threadpool(
                _finish, sessions, key, caller, status=500, content_type=None, body=b""
            )
            raise
        content = b"".join(chunks)
        content_type = next(
            (value.decode("latin-1") for name, value in headers if name == b"content-type"), None
        )
        await run_in_threadpool(
            _finish, sessions, key, caller, status=status, content_type=content_type, body=content
        )
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content, "more_body": False})
