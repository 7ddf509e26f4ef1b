"""The benchmark's baseline: a bare ASGI hello-world, served exactly as the service is."""

import sys

from coffee_ranker.cli import configure_logging, serve

BODY = b'{"hello":"world"}'


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    configure_logging()
    serve(app, "127.0.0.1", int(sys.argv[1]))
