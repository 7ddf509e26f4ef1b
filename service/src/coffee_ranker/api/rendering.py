"""Read responses rendered once, straight to JSON bytes, with an ETag for conditional requests.

Reads are plain dicts shaped as the response models declare (tests hold them to the OpenAPI
document), serialised by pydantic-core exactly as a model would be. Building and validating a model
per item would cost more than the whole query; FastAPI returns a Response as it is.
"""

import hashlib
from typing import Any, Awaitable, Callable, Dict, Hashable, Tuple

import pydantic_core
from starlette.requests import Request
from starlette.responses import Response

from coffee_ranker.storage.factory import Storage

#: Clients and caches may keep a read but must revalidate it (a 304 when nothing changed).
READ_CACHE_CONTROL = "no-cache"


def entity_tag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def _matches(if_none_match: str, tag: str) -> bool:
    # Weak comparison (RFC 9110 13.1.2): W/ prefixes are ignored; "*" matches any current entity.
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate in ("*", tag):
            return True
    return False


Rendered = Tuple[bytes, str]


def render(payload: Any) -> Rendered:
    body = pydantic_core.to_json(payload)
    return body, entity_tag(body)


def respond(request: Request, rendered: Rendered) -> Response:
    body, tag = rendered
    headers = {"ETag": tag, "Cache-Control": READ_CACHE_CONTROL}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and _matches(if_none_match, tag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def json_read(request: Request, payload: Any) -> Response:
    return respond(request, render(payload))


class ReadCache:
    """Rendered reads kept while the data under them has not changed (the repository's change token).

    Used from the event loop only. Bounded: when full it starts over, which costs one render per
    entry, not a wrong answer.
    """

    def __init__(self, max_entries: int = 2048) -> None:
        self.max_entries = max_entries
        self._entries: Dict[Hashable, Tuple[Hashable, Rendered]] = {}

    async def read(
        self, request: Request, storage: Storage, key: Hashable, produce: Callable[[], Awaitable[Any]]
    ) -> Response:
        # The token is taken before the query: a write that lands during it changes the token, so
        # what this request renders is never kept past that write.
        token = storage.repository.change_token()
        if token is None:
            return respond(request, render(await produce()))
        entry = self._entries.get(key)
        if entry is not None and entry[0] == token:
            return respond(request, entry[1])
        rendered = render(await produce())
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (token, rendered)
        return respond(request, rendered)
