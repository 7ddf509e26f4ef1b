"""The ``coffee-ranker-api`` command: read the settings, then serve until SIGTERM."""

import sqlite3
import sys
from typing import List, Optional

import uvicorn

from coffee_ranker.app import create_app
from coffee_ranker.domain.errors import SchemaTooNew, StorageUnavailable
from coffee_ranker.logs import configure_logging, uvicorn_log_config
from coffee_ranker.settings import Settings, SettingsError
from coffee_ranker.storage.factory import build_storage


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

    serve(
        create_app(settings, storage, close_storage=True), settings.host, settings.port, settings.log_format
    )


def serve(app, host: str, port: int, log_format: str = "text") -> None:
    """Serve an ASGI app the way the service is served (the benchmark's baseline uses it too)."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=uvicorn_log_config(log_format),
        access_log=False,  # coffee_ranker.access logs each request instead
        timeout_graceful_shutdown=20,
        server_header=False,
    )


def entry_point() -> None:
    main(sys.argv[1:])
