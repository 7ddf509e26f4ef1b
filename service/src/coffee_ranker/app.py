"""The application factory."""

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, Optional

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from coffee_ranker import __version__
from coffee_ranker.access_log import AccessLogMiddleware
from coffee_ranker.api import health, photos, reviews, shops
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
    install_problem_handlers(app)
    for router in (health.router, shops.router, reviews.router, photos.router):
        app.include_router(router)
    app.add_middleware(AccessLogMiddleware)

    def openapi() -> dict:
        if app.openapi_schema is None:
            FastAPI.openapi(app)
            app.openapi_schema = use_problem_media_type(app.openapi_schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
