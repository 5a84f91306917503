"""The ASGI application: ``create_app()`` builds it over the configured store.

``fanli serve`` runs it with uvicorn. The OpenAPI document is at ``/api/openapi.json`` and the
interactive documentation at ``/api/docs``. The web UI of a later issue mounts into this app.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from fanli import __version__
from fanli.config import Settings
from fanli.db.session import make_engine, reachable, read_session_factory, session_factory
from fanli.db.status import require_current
from fanli.interfaces.web import views, views_admin, views_portal, views_work
from fanli.interfaces.web.handover import Handovers
from fanli.interfaces.web.jobs import JobBoard
from fanli.oversight import schedule
from fanli.sales.store import FactStore

from . import errors, routes, routes_audit, routes_store
from .cache import VersionedCache
from .idempotency import IdempotencyMiddleware

TOKEN_CACHE_SIZE = 10_000  # API tokens whose user is known, per process
WORKER_THREADS = 16  # threads for the synchronous routes and dependencies, per process


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Fewer threads than the default 40: the routes are CPU-bound Python, and more threads only
    # queue on the GIL while each holds a database connection.
    anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
    settings: Settings = app.state.settings
    scheduled = None
    if settings.audit_every_minutes and settings.audit_as:
        scheduled = asyncio.create_task(
            schedule.every(
                dt.timedelta(minutes=settings.audit_every_minutes),
                app.state.sessions,
                app.state.facts,
                actor_code=settings.audit_as,
                data_dir=settings.data_dir,
                clock=lambda: dt.datetime.now(settings.zone),
            )
        )
    try:
        yield
    finally:
        await anyio.to_thread.run_sync(app.state.jobs.close)
        if scheduled is not None:
            scheduled.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scheduled


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # More connections than worker threads (WORKER_THREADS): a request holds one connection at a
    # time, and its cleanup (the commit) needs a thread, so with fewer connections than threads
    # every thread could wait for a connection that only a cleanup would free.
    engine = reachable(make_engine(settings.resolved_database_url, pool_size=24, max_overflow=16))
    require_current(engine)
    app = FastAPI(
        lifespan=_lifespan,
        title="Fanli",
        version=__version__,
        summary="Rebate management: agreements, accruals, settlements, payouts, audit.",
        openapi_url="/api/openapi.json",
        # The documentation page is served below with the vendored Swagger UI: FastAPI's own
        # loads it from a CDN, and nothing may load from one at run time.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.read_sessions = read_session_factory(engine)
    app.state.facts = FactStore(settings.facts_dir)
    app.state.token_cache = VersionedCache(TOKEN_CACHE_SIZE)
    app.state.read_cache = VersionedCache(settings.read_cache_size)
    app.state.jobs = JobBoard()  # the web pages' long operations
    app.state.handovers = Handovers()  # a new user's credentials, shown once
    errors.install(app)
    app.add_middleware(IdempotencyMiddleware)
    app.include_router(routes.router)
    app.include_router(routes_store.router)
    app.include_router(routes_audit.router)
    gate = [Depends(views.password_gate)]  # a handed-over password is changed first
    app.include_router(views.router, dependencies=gate)
    app.include_router(views_work.router, dependencies=gate)
    app.include_router(views_portal.router, dependencies=gate)
    app.include_router(views_admin.router, dependencies=gate)
    app.mount("/static", StaticFiles(directory=str(files("fanli.interfaces.web") / "static")))

    @app.get("/api/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/api/openapi.json",
            title="Fanli API",
            swagger_js_url="/static/vendor/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui.css",
            swagger_favicon_url="data:,",
        )

    return app
