"""The benchmark's references, served exactly as the service is (same uvicorn settings):

hello.py PORT asgi      a bare ASGI hello-world: the ceiling of uvicorn itself
hello.py PORT fastapi   a FastAPI app with one hello-world route: the ceiling of the framework
"""

import sys

from fastapi import FastAPI

from coffee_ranker.cli import serve
from coffee_ranker.logs import configure_logging

BODY = b'{"hello":"world"}'


async def bare_asgi(scope, receive, send):
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


fastapi_hello = FastAPI()


@fastapi_hello.get("/")
async def hello() -> dict:
    # FastAPI's own hello-world, as its tutorial writes it.
    return {"hello": "world"}


if __name__ == "__main__":
    configure_logging()
    serve(bare_asgi if sys.argv[2:] == ["asgi"] else fastapi_hello, "127.0.0.1", int(sys.argv[1]))
