"""What routes depend on: the storage, the settings, and the write token check."""

import hmac
from typing import Any, Callable, Optional, Sequence, TypeVar

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from typing_extensions import Annotated

from coffee_ranker.api.rendering import ReadCache
from coffee_ranker.api.schemas import ID_PATTERN, USER_PATTERN
from coffee_ranker.problems import ProblemError
from coffee_ranker.settings import Settings
from coffee_ranker.storage.factory import Storage

T = TypeVar("T")
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="writeToken",
    description=(
        "The write token (RANKER_WRITE_TOKEN; while the token is rotated, "
        "RANKER_WRITE_TOKEN_ALSO_ACCEPTED as well). Reads need no token."
    ),
)


def write_token_accepted(offered: bytes, accepted: Sequence[bytes]) -> bool:
    """True when ``offered`` is one of the ``accepted`` tokens.

    Compared with every accepted token, the loop never stopping at a match, each comparison with
    compare_digest: how long the check takes tells nothing about either token or which one matched.
    """
    matched = False
    for token in accepted:
        matched |= hmac.compare_digest(offered, token)
    return matched


# Dependencies are coroutines: FastAPI runs a plain function in the thread pool, a hop per request.
async def get_storage(request: Request) -> Storage:
    return request.app.state.storage


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


# The edge middleware refuses a wrong token before the body is read; this dependency puts the scheme
# in the OpenAPI document and still guards the route if it is ever served without that middleware.
async def require_writer(
    request: Request,
    credentials: Optional[HTTPAuthorizationCredentials] = Depends(_bearer),
) -> None:
    accepted = [token.encode("ascii") for token in get_settings(request).accepted_write_tokens]
    offered = credentials.credentials.encode("utf-8", "surrogateescape") if credentials else b""
    if not credentials or not write_token_accepted(offered, accepted):
        raise ProblemError(
            401,
            "Writing needs the header 'Authorization: Bearer <write token>' with the right token.",
            headers={"WWW-Authenticate": 'Bearer realm="coffee-ranker"'},
        )


StorageDep = Annotated[Storage, Depends(get_storage)]

# A malformed id is answered 404 like an unknown one (problems.py turns its validation error around).
ShopId = Annotated[
    str, Path(pattern=ID_PATTERN, description="The shop's id (32 hex digits); any other string is 404.")
]
User = Annotated[str, Path(pattern=USER_PATTERN, description="Who wrote the review.")]
Limit = Annotated[int, Query(ge=1, le=100, description="How many items per page.")]
Cursor = Annotated[
    Optional[str],
    Query(max_length=1024, description="The `next_cursor` of the previous page; omit for the first page."),
]


def reads_of(request: Request) -> ReadCache:
    return request.app.state.reads


def storage_of(request: Request) -> Storage:
    """The storage, for the hot reads: each dependency costs FastAPI a resolution per request."""
    return request.app.state.storage


async def read(storage: Storage, function: Callable[..., T], *args: Any) -> T:
    """Call a repository read: inline when it is local and short (SQLite), else in the thread pool."""
    if storage.repository.local_reads:
        return function(*args)
    return await run_in_threadpool(function, *args)
