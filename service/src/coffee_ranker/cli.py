"""The ``coffee-ranker-api`` command: read the settings, then serve until SIGTERM.

One worker (RANKER_WORKERS=1, the default) serves in this process, and a thread of it serves the
metrics. Several: uvicorn's supervisor, in this process, starts them (each imports the application
by name, ``worker_app``, and builds its own storage) and restarts any that dies, while a thread of
this process serves the sum of their metrics, which they write to a private directory.
"""

import contextlib
import os
import shutil
import sqlite3
import sys
import tempfile
from typing import Iterator, List, Optional

import uvicorn

from coffee_ranker import metrics
from coffee_ranker.app import create_app
from coffee_ranker.domain.errors import SchemaTooNew, StorageUnavailable
from coffee_ranker.logs import configure_logging, uvicorn_log_config
from coffee_ranker.settings import Settings, SettingsError
from coffee_ranker.storage.factory import build_storage

#: Where prometheus_client's multiprocess mode keeps each worker's metrics (set for the workers).
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def main(argv: Optional[List[str]] = None) -> None:
    if argv:
        # No flags: every setting comes from the environment, in one place.
        if argv[0] in ("-h", "--help"):
            print("coffee-ranker-api: serves the Coffee Shop Ranker API; configured by RANKER_* variables.")  # noqa: T201
            sys.exit(0)
        sys.exit(
            f"coffee-ranker-api: takes no arguments (got {' '.join(argv)}); "
            "configure it with RANKER_* variables"
        )
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        for problem in error.problems:
            print(f"coffee-ranker-api: configuration error: {problem}", file=sys.stderr)  # noqa: T201
        sys.exit(2)

    configure_logging(settings.log_format)
    storage = build_storage(settings)
    try:
        # Open (and migrate) before serving, so a bad database is one clear line, not a traceback.
        storage.open()
    except (StorageUnavailable, SchemaTooNew, sqlite3.Error, OSError) as error:
        print(f"coffee-ranker-api: cannot open the database: {error}", file=sys.stderr)  # noqa: T201
        sys.exit(1)

    if settings.workers == 1:
        with _metrics_served(settings, metrics.REGISTRY):
            serve(
                create_app(settings, storage, close_storage=True),
                settings.host,
                settings.port,
                settings.log_format,
            )
        return

    # Each worker opens its own; migrations, if any, ran here once.
    storage.close()
    # A fresh directory per start: no file of an earlier run is ever summed in. In the unit's private
    # /tmp (PrivateTmp=), which systemd removes when the service stops, even after a crash.
    directory = tempfile.mkdtemp(prefix="coffee-ranker-metrics-")
    os.environ[MULTIPROCESS_DIR_VARIABLE] = directory  # the workers inherit it before they import
    try:
        with _metrics_served(settings, metrics.workers_registry(directory)):
            uvicorn.run(
                f"{__name__}:worker_app",
                factory=True,
                workers=settings.workers,
                **_uvicorn_settings(settings.host, settings.port, settings.log_format),
            )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def _metrics_served(settings: Settings, registry) -> Iterator[None]:
    """Serve ``registry`` on RANKER_METRICS_PORT (unless it is 0) while the API is served."""
    if settings.metrics_port is None:
        yield
        return
    try:
        server = metrics.serve_metrics(settings.host, settings.metrics_port, registry)
    except OSError as error:
        print(  # noqa: T201
            f"coffee-ranker-api: cannot serve the metrics on {settings.host}:{settings.metrics_port} "
            f"(RANKER_METRICS_PORT): {error}",
            file=sys.stderr,
        )
        sys.exit(1)
    try:
        yield
    finally:
        metrics.stop_serving(server)


def worker_app():
    """The application of one of several workers: uvicorn calls this in each worker process."""
    settings = Settings.from_env()  # the parent checked the same environment
    configure_logging(settings.log_format)
    metrics.forget_this_worker()
    return create_app(settings)


def _uvicorn_settings(host: str, port: int, log_format: str) -> dict:
    return {
        "host": host,
        "port": port,
        "log_config": uvicorn_log_config(log_format),
        "access_log": False,  # coffee_ranker.access logs each request instead
        "timeout_graceful_shutdown": 20,
        "server_header": False,
    }


def serve(app, host: str, port: int, log_format: str = "text") -> None:
    """Serve an ASGI app the way the service is served (the benchmark's baseline uses it too)."""
    uvicorn.run(app, **_uvicorn_settings(host, port, log_format))


def entry_point() -> None:
    main(sys.argv[1:])
