"""What the embedded AWS's WSGI layers in front of moto share (aws_realism, load_balancers).

A layer reads the request body before moto does (and puts it back), and may let moto answer first and
then see, or replace, the whole answer.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

# Called with the status and body moto answered; returns a replacement body, or None to keep it.
After = Callable[[int, bytes], bytes | None]


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
