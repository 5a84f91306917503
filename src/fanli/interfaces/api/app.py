"""The ASGI application: ``create_app()`` builds it over the configured store.

``fanli serve`` runs it with uvicorn. The OpenAPI document is at ``/api/openapi.json`` and the
interactive documentation at ``/api/docs``. The web UI of a later issue mounts into this app.
"""

from __future__ import annotations

from fastapi import FastAPI

from fanli import __version__
from fanli.config import Settings
from fanli.db.session import make_engine, read_session_factory, session_factory
from fanli.db.status import require_current
from fanli.sales.store import FactStore

from . import errors, routes, routes_store
from .idempotency import IdempotencyMiddleware


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # Enough connections for the worker threads (40 by default) to wait little for one.
    engine = make_engine(settings.resolved_database_url, pool_size=20, max_overflow=20)
    require_current(engine)
    app = FastAPI(
        title="Fanli",
        version=__version__,
        summary="Rebate management: agreements, accruals, settlements, payouts, audit.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.read_sessions = read_session_factory(engine)
    app.state.facts = FactStore(settings.facts_dir)
    errors.install(app)
    app.add_middleware(IdempotencyMiddleware)
    app.include_router(routes.router)
    app.include_router(routes_store.router)
    return app
