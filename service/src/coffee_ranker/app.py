"""The application factory."""

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, Optional

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware

from coffee_ranker import __version__
from coffee_ranker.api import health, photos, reviews, shops
from coffee_ranker.api.rendering import ReadCache
from coffee_ranker.edge import EdgeMiddleware
from coffee_ranker.problems import install_problem_handlers, use_problem_media_type
from coffee_ranker.settings import Settings
from coffee_ranker.storage.factory import Storage, build_storage

log = logging.getLogger("coffee_ranker")


def create_app(
    settings: Settings, storage: Optional[Storage] = None, close_storage: Optional[bool] = None
) -> FastAPI:
    """The API for ``settings``, on ``storage`` if given (else built from the settings).

    Storage is opened (SQLite migrations run) when the server starts; it is closed when the server
    stops, which uvicorn does on SIGTERM after in-flight requests finish, unless the caller keeps
    ownership (by default it does when it passed ``storage``).
    """
    owned = storage is None if close_storage is None else close_storage
    storage = storage if storage is not None else build_storage(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(storage.open)
        log.info(
            "coffee-ranker-api %s ready: %s storage, bucket %s",
            __version__,
            settings.storage_backend,
            settings.bucket,
        )
        try:
            yield
        finally:
            if owned:
                storage.close()
                log.info("storage closed")

    app = FastAPI(
        title="Coffee Shop Ranker",
        version=__version__,
        description=(
            "Ranks coffee shops by their reviews and keeps their photos. Reads are public; writes "
            "need `Authorization: Bearer <write token>`. Errors are RFC 9457 problem details."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.storage = storage
    app.state.reads = ReadCache()
    install_problem_handlers(app)
    routers = (health.router, shops.router, reviews.router, photos.router)
    for router in routers:
        app.include_router(router)
    # The routes as declared, for 405's Allow (how include_router wraps them differs by FastAPI version).
    app.state.api_routes = [route for router in routers for route in router.routes]
    # A redirect to the slash-less path would be built from the client's Host header: 404 instead.
    app.router.redirect_slashes = False
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-None-Match"],
            expose_headers=["ETag", "Location", "X-Request-ID"],
            max_age=600,
        )
    # Outermost: sees, logs and counts every request (the routes: metrics name a refused request's
    # route template too).
    app.add_middleware(EdgeMiddleware, settings=settings, routes=app.state.api_routes)

    def openapi() -> dict:
        if app.openapi_schema is None:
            FastAPI.openapi(app)
            app.openapi_schema = use_problem_media_type(app.openapi_schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
