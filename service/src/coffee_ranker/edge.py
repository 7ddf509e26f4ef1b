"""What every request meets before the routes, in one plain ASGI middleware.

Plain ASGI (not Starlette's BaseHTTPMiddleware) so streamed bodies pass through untouched and the
cost per request stays small. In order:

- a write (POST, PUT, PATCH, DELETE) without an accepted token (RANKER_WRITE_TOKEN, or during a
  rotation RANKER_WRITE_TOKEN_ALSO_ACCEPTED) is answered 401 before a byte of its body is read, so
  an anonymous client cannot make the server read anything;
- a body over its limit is answered 413: at once when Content-Length says so, else the moment the
  stream (chunked or not) crosses it. JSON bodies are read here, up to RANKER_MAX_JSON_BYTES, and
  handed on whole; the upload route streams, limited to the photo plus its multipart envelope;
- HEAD is served as GET without the body;
- every response gets ``X-Content-Type-Options: nosniff``, a ``Cache-Control`` (``no-store`` unless
  the route chose one) and an ``X-Request-ID``;
- one access log line: method, route template, status, duration, request id;
- the request's metrics (metrics.py): counted by route template and status, timed, and counted in
  flight while it is served.
"""

import logging
import re
import time
import uuid
from typing import Any, Dict, Iterable, List, Optional, Tuple

from coffee_ranker.api.deps import write_token_accepted
from coffee_ranker.api.uploads import ENVELOPE_BYTES
from coffee_ranker.logs import escape_control
from coffee_ranker.metrics import HttpMetrics
from coffee_ranker.problems import ProblemError, problem_response
from coffee_ranker.settings import Settings

log = logging.getLogger("coffee_ranker.access")

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_UPLOAD_PATH = re.compile(r"^/shops/[^/]+/photos$")
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{8,64}$")
_BEARER = re.compile(rb"^[Bb][Ee][Aa][Rr][Ee][Rr] +(\S+) *$")
#: Longest unmatched path written to the access log (matched ones log their route template).
_LOGGED_PATH_CHARS = 200
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_NO_STORE = (b"cache-control", b"no-store")


class BodyTooLarge(ProblemError):
    def __init__(self, detail: str) -> None:
        super().__init__(413, detail)


def _unauthorized():
    return problem_response(
        401,
        "Writing needs the header 'Authorization: Bearer <write token>' with the right token.",
        headers={"WWW-Authenticate": 'Bearer realm="coffee-ranker"'},
    )


class EdgeMiddleware:
    def __init__(self, app, settings: Settings, routes: Iterable[Any] = ()) -> None:
        self.app = app
        self.metrics = HttpMetrics(routes)
        self.write_tokens = tuple(token.encode("ascii") for token in settings.accepted_write_tokens)
        self.max_json_bytes = settings.max_json_bytes
        self.max_upload_bytes = settings.max_upload_bytes
        self.max_upload_request_bytes = settings.max_upload_bytes + ENVELOPE_BYTES
        self.structured_log = settings.log_format == "json"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = _interesting_headers(scope["headers"])
        request_id = headers.get(b"x-request-id", b"")
        request_id = request_id.decode() if _REQUEST_ID.match(request_id) else uuid.uuid4().hex
        method = scope["method"]
        head = method == "HEAD"
        if head:
            scope = dict(scope, method="GET")
        status = 500  # what the client gets when the app fails before answering
        answered = False
        extra_headers = [_NOSNIFF, (b"x-request-id", request_id.encode())]

        async def send_with_headers(message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
                answered = True
                response_headers: List[Tuple[bytes, bytes]] = list(message.get("headers", ()))
                response_headers.extend(extra_headers)
                if not any(name.lower() == b"cache-control" for name, _ in response_headers):
                    response_headers.append(_NO_STORE)
                message = {**message, "headers": response_headers}
            elif head and message["type"] == "http.response.body" and message.get("body"):
                message = {**message, "body": b""}
            await send(message)

        in_flight = self.metrics.in_flight
        in_flight.inc()
        try:
            if method in UNSAFE_METHODS and not self._authorized(headers.get(b"authorization")):
                await _unauthorized()(scope, receive, send_with_headers)
                return
            upload = method == "POST" and _UPLOAD_PATH.match(scope["path"]) is not None
            if upload:
                limit = self.max_upload_request_bytes
                too_large = f"The photo is larger than the limit of {self.max_upload_bytes} bytes."
            else:
                limit = self.max_json_bytes
                too_large = f"The request body is larger than the limit of {limit} bytes."
            declared = headers.get(b"content-length")
            if declared is not None:
                if not declared.isdigit():
                    await problem_response(400, "The Content-Length header is not a number.")(
                        scope, receive, send_with_headers
                    )
                    return
                if int(declared) > limit:
                    raise BodyTooLarge(too_large)
            if upload:
                receive = _limited(receive, limit, too_large)
            elif declared not in (None, b"0") or b"transfer-encoding" in headers:
                receive = await _read_whole(receive, limit, too_large)
            await self.app(scope, receive, send_with_headers)
        except BodyTooLarge as error:
            if answered:
                raise
            # uvicorn discards the rest of the body as it arrives, without holding it.
            await problem_response(413, error.detail)(scope, receive, send_with_headers)
        finally:
            seconds = time.perf_counter() - started
            self.metrics.observe(method, self.metrics.template(scope), status, seconds)
            in_flight.dec()  # last: nothing in flight means every request so far is counted
            self._log(scope, method, status, seconds, request_id)

    def _authorized(self, authorization: Optional[bytes]) -> bool:
        match = _BEARER.match(authorization or b"")
        return match is not None and write_token_accepted(match.group(1), self.write_tokens)

    def _log(self, scope, method: str, status: int, seconds: float, request_id: str) -> None:
        route = scope.get("route")
        target = getattr(route, "path", None) or escape_control(scope["path"][:_LOGGED_PATH_CHARS])
        milliseconds = seconds * 1000
        if self.structured_log:
            fields = {
                "method": method,
                "route": target,
                "status": status,
                "duration_ms": round(milliseconds, 1),
            }
            log.info("%s %s %d", method, target, status, extra={"http": {**fields, "request_id": request_id}})
        else:
            log.info("%s %s %d %.1fms %s", method, target, status, milliseconds, request_id)


def _interesting_headers(raw: List[Tuple[bytes, bytes]]) -> Dict[bytes, bytes]:
    wanted = (b"authorization", b"content-length", b"transfer-encoding", b"x-request-id")
    return {name.lower(): value for name, value in raw if name.lower() in wanted}


def _limited(receive, limit: int, too_large: str):
    """``receive`` that raises BodyTooLarge once more than ``limit`` body bytes arrived."""
    seen = 0

    async def receive_within_limit():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(too_large)
        return message

    return receive_within_limit


async def _read_whole(receive, limit: int, too_large: str):
    """Read the whole body (at most ``limit`` bytes) now; a ``receive`` that hands it over in one."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client left; the app sees an empty body and then the disconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(too_large)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
    delivered = False

    async def replay():
        nonlocal delivered
        if not delivered:
            delivered = True
            return body
        return await receive()

    return replay
