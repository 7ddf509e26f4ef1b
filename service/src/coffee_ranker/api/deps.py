"""What routes depend on: the storage, the settings, and the write token check."""

import hmac
from typing import Optional

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from typing_extensions import Annotated

from coffee_ranker.api.schemas import ID_PATTERN, USER_PATTERN
from coffee_ranker.problems import ProblemError
from coffee_ranker.settings import Settings
from coffee_ranker.storage.factory import Storage

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="writeToken",
    description="The write token (RANKER_WRITE_TOKEN). Reads need no token.",
)


def get_storage(request: Request) -> Storage:
    return request.app.state.storage


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def require_writer(
    request: Request,
    credentials: Optional[HTTPAuthorizationCredentials] = Depends(_bearer),
) -> None:
    expected = get_settings(request).write_token.encode("utf-8")
    offered = credentials.credentials.encode("utf-8", "surrogateescape") if credentials else b""
    # compare_digest: how long the comparison takes tells nothing about the token.
    if not credentials or not hmac.compare_digest(offered, expected):
        raise ProblemError(
            401,
            "Writing needs the header 'Authorization: Bearer <write token>' with the right token.",
            headers={"WWW-Authenticate": 'Bearer realm="coffee-ranker"'},
        )


StorageDep = Annotated[Storage, Depends(get_storage)]
ShopId = Annotated[str, Path(pattern=ID_PATTERN, description="The shop's id (32 hex digits).")]
User = Annotated[str, Path(pattern=USER_PATTERN, description="Who wrote the review.")]
Limit = Annotated[int, Query(ge=1, le=100, description="How many items per page.")]
Cursor = Annotated[
    Optional[str],
    Query(max_length=1024, description="The `next_cursor` of the previous page; omit for the first page."),
]
