"""Prometheus metrics, served on a port of their own (RANKER_METRICS_PORT), never on the API's.

The series, the same whatever RANKER_WORKERS is:

- ``coffee_ranker_http_requests_total{method, route, status}``: requests answered. ``route`` is the
  route template (``/shops/{shop_id}``), never the path a client sent, and ``unmatched`` for a path
  no route serves; ``method`` is one of ``METHODS`` or ``other``: a client cannot add series.
- ``coffee_ranker_http_request_duration_seconds{method, route}``: a histogram of the time from the
  request's arrival to the end of its response (uploads included).
- ``coffee_ranker_http_requests_in_flight``: requests being served now.
- ``coffee_ranker_build_info{version, python}``: always 1; the release and the interpreter's version.
- ``coffee_ranker_dependency_call_duration_seconds{dependency, operation}``: a histogram of calls
  to the datastore (``dependency`` ``sqlite`` or ``dynamodb``) and to S3 (``s3``), one ``operation``
  per method of the storage ports (``get_shop``, ``put_file``, …) and ``change_token`` (SQLite's
  check, on each cached read, that nothing was written); retries and back-off included.
- ``coffee_ranker_dependency_call_errors_total{dependency, operation}``: those calls that failed (the
  dependency was unreachable, refused, or broke); an answer such as "no such shop" is not a failure.

With one worker the metrics live in the process and a thread serves them. With several, each
worker writes its own to files in a private directory (prometheus_client's multiprocess mode) and
the parent process serves the sum over all workers, those that died included; a worker that died
mid-request no longer counts as serving it.
"""

import functools
import glob
import os
import platform
import re
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from coffee_ranker import __version__
from coffee_ranker.domain.errors import InvalidCursor, ShopNotFound

F = TypeVar("F", bound=Callable[..., Any])

# The multiprocess files have no ``*_created`` series: the process keeps none either, so that one
# worker and several expose the same series. (A switch of the library, for the whole process.)
disable_created_metrics()

#: Our series only: the library's default registry adds process and GC collectors, which mean
#: nothing for a parent of several workers and would make the two modes expose different names.
REGISTRY = CollectorRegistry(auto_describe=True)

#: From a cached read (well under a millisecond) to a large upload or a dependency's retries.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: Methods with a series of their own; any other (a client may send any token) counts as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"

REQUESTS = Counter(
    "coffee_ranker_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
REQUEST_DURATION = Histogram(
    "coffee_ranker_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by method and route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "coffee_ranker_http_requests_in_flight",
    "HTTP requests being served.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
BUILD_INFO = Gauge(
    "coffee_ranker_build_info",
    "The release of coffee-ranker-api and the Python version it runs on; always 1.",
    ["version", "python"],
    multiprocess_mode="max",
    registry=REGISTRY,
)
DEPENDENCY_DURATION = Histogram(
    "coffee_ranker_dependency_call_duration_seconds",
    "Calls to the datastore (sqlite or dynamodb) and to S3, by dependency and operation.",
    ["dependency", "operation"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
DEPENDENCY_ERRORS = Counter(
    "coffee_ranker_dependency_call_errors",
    "Calls to the datastore or to S3 that failed, by dependency and operation.",
    ["dependency", "operation"],
    registry=REGISTRY,
)

BUILD_INFO.labels(__version__, platform.python_version()).set(1)

#: Outcomes of a storage call that are answers, not failures of the dependency.
_ANSWERS = (ShopNotFound, InvalidCursor)
_calls = threading.local()


def dependency_call(dependency: str) -> Callable[[F], F]:
    """Decorate a storage port's method: time each call and count those that fail.

    Only the outermost call of a dependency is measured: a method that calls another of the same
    store (a listing checks that its shop exists) is one call, not two, and fails once.
    """

    def decorate(function: F) -> F:
        operation = function.__name__
        series: Optional[Tuple[Any, Any]] = None

        @functools.wraps(function)
        def measured(*args: Any, **kwargs: Any) -> Any:
            nonlocal series
            if getattr(_calls, "active", None) == dependency:
                return function(*args, **kwargs)
            if series is None:  # on first use: a backend that is not in use shows no series
                series = (
                    DEPENDENCY_DURATION.labels(dependency, operation),
                    DEPENDENCY_ERRORS.labels(dependency, operation),
                )
            outer = getattr(_calls, "active", None)
            _calls.active = dependency
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            except _ANSWERS:
                raise
            except Exception:
                series[1].inc()
                raise
            finally:
                series[0].observe(time.perf_counter() - started)
                _calls.active = outer

        return measured  # type: ignore[return-value]

    return decorate


class HttpMetrics:
    """The request series, with each label set's children kept: a request costs a dict lookup."""

    def __init__(self, routes: Iterable[Any] = ()) -> None:
        # (path regex, template) of the API's routes: a request answered before routing (401, 413)
        # still counts under the template its path would have matched.
        self._templates: List[Tuple[Callable[[str], Any], str]] = [
            (route.path_regex.match, route.path) for route in routes if hasattr(route, "path_regex")
        ]
        self._series: Dict[Tuple[str, str, int], Tuple[Any, Any]] = {}
        self.in_flight = IN_FLIGHT

    def template(self, scope: Dict[str, Any]) -> str:
        route = scope.get("route")
        template = getattr(route, "path", None)
        if template:
            return template
        path = scope["path"]
        for match, candidate in self._templates:
            if match(path):
                return candidate
        return UNMATCHED

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            method_label = method if method in METHODS else "other"
            series = (
                REQUESTS.labels(method_label, route, str(status)),
                REQUEST_DURATION.labels(method_label, route),
            )
            if method in METHODS:  # a client's own method token never grows the cache
                self._series[key] = series
        series[0].inc()
        series[1].observe(seconds)


# -- serving ---------------------------------------------------------------------------------------

_WORKER_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


class _AllWorkers:
    """The sum over every worker's files; first, the live gauges of workers that died are dropped
    (uvicorn restarts a worker that dies, without telling anyone else)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._files = MultiProcessCollector(None, directory)

    def collect(self):
        forget_dead_workers(self.directory)
        return self._files.collect()


def forget_dead_workers(directory: str) -> List[int]:
    """mark_process_dead for each worker that left live gauges behind and is gone; their pids."""
    dead = []
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        match = _WORKER_GAUGE_FILE.match(os.path.basename(path))
        if match and not _alive(int(match.group(1))):
            dead.append(int(match.group(1)))
    for pid in sorted(set(dead)):
        mark_process_dead(pid, directory)
    return sorted(set(dead))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal: only whether the process exists (or is a zombie not yet reaped)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as someone else's: not one of our workers, but not ours to forget
        return True
    return True


def workers_registry(directory: str) -> CollectorRegistry:
    """The registry the parent of several workers serves: the sum of their files in ``directory``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_AllWorkers(directory))
    return registry


def serve_metrics(host: str, port: int, registry: CollectorRegistry = REGISTRY):
    """Serve ``registry`` on ``host``:``port`` from a daemon thread; returns the server (shutdown())."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


def stop_serving(server) -> None:
    server.shutdown()
    server.server_close()


def forget_this_worker() -> None:
    """A fresh worker serves nothing yet; its pid may be a dead worker's, whose gauge would carry on."""
    IN_FLIGHT.set(0)
