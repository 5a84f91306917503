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
from collections.abc import Awaitable, Callable

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fanli.db.session import unit_of_work

from .deps import credential, now_utc
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
                            created_at=now_utc(),
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
    sessions: sessionmaker[Session], key: str, caller: str, response: Response, body: bytes
) -> None:
    with unit_of_work(sessions) as session:
        row = session.get(HttpIdempotency, (key, caller))
        if row is None:
            return
        if 200 <= response.status_code < 300:
            row.status = response.status_code
            row.content_type = response.headers.get("content-type")
            row.body = body
        else:
            session.execute(
                delete(HttpIdempotency).where(
                    HttpIdempotency.key == key, HttpIdempotency.caller == caller
                )
            )


class IdempotencyMiddleware(BaseHTTPMiddleware):
    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.method != "POST" or not MONEY_ROUTES.match(request.url.path):
            return await call_next(request)
        key = request.headers.get("idempotency-key", "").strip()
        if not key or len(key) > MAX_KEY:
            return JSONResponse(
                error_body(
                    "idempotency_key_missing",
                    f"this request moves money: send an Idempotency-Key of 1 to {MAX_KEY} "
                    "characters",
                ),
                status_code=400,
            )
        found = credential(request)
        if found is None:
            return await call_next(request)  # answered 401 by the route
        caller = _sha(found[1].encode("utf-8"))
        body = await request.body()
        sessions = request.app.state.sessions
        method_path = f"POST {request.url.path}"
        answer = await run_in_threadpool(_claim, sessions, key, caller, method_path, _sha(body))
        if answer is not None:
            return answer
        try:
            response = await call_next(request)
            chunks = [chunk async for chunk in response.body_iterator]  # type: ignore[attr-defined]
            content = b"".join(
                chunk if isinstance(chunk, bytes) else chunk.encode() for chunk in chunks
            )
        except BaseException:
            await run_in_threadpool(_finish, sessions, key, caller, Response(status_code=500), b"")
            raise
        await run_in_threadpool(_finish, sessions, key, caller, response, content)
        return Response(
            content=content,
            status_code=response.status_code,
            headers={k: v for k, v in response.headers.items() if k != "content-length"},
        )
