"""What the embedded AWS's WSGI layers in front of moto share (aws_realism, load_balancers).

A layer tells the service and region of a request from its signature, reads the request body before moto
does (and puts it back), and may let moto answer first and then see, or replace, the whole answer.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

# Called with the status and body moto answered; returns a replacement body, or None to keep it.
After = Callable[[int, bytes], bytes | None]
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


def credential_scope(environ: dict[str, Any]) -> tuple[str, str | None]:
    """Region and service from the SigV4 credential scope (header or presigned URL)."""
    credential = environ.get("HTTP_AUTHORIZATION", "")
    if not credential:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        credential = "Credential=" + query["X-Amz-Credential"][0] if "X-Amz-Credential" in query else ""
    match = CREDENTIAL_SCOPE.search(credential)
    if not match:
        return "us-east-1", None
    return match.group(1), match.group(2).lower()


def read_body(environ: dict[str, Any]) -> bytes:
    """Read the request body and put it back for moto."""
    length = environ.get("CONTENT_LENGTH")
    stream = environ["wsgi.input"]
    if length:
        body = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def pass_through(app: Callable, environ: dict[str, Any], start_response: Callable, after: After) -> list[bytes]:
    """Pass the request to the app (moto), then let ``after`` see (and maybe replace) the whole answer."""
    captured: dict[str, Any] = {}
    chunks: list[bytes] = []

    def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
        captured.update(status=status, headers=headers)
        return chunks.append

    result = app(environ, capture)
    try:
        chunks.extend(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    body = b"".join(chunks)
    headers = captured["headers"]
    replaced = after(int(captured["status"].split()[0]), body)
    if replaced is not None:
        body = replaced
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
    start_response(captured["status"], headers)
    return [body]
