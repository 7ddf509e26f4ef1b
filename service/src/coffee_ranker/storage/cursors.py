"""Opaque pagination cursors: base64url JSON naming the listing it belongs to, signed with HMAC.

Clients must treat a cursor as an opaque string. Inside, it holds the sort key of the last item of
the page (keyset pagination), so a page never repeats or skips items that did not move meanwhile.
The signature makes a forged or edited cursor, or one of another listing (another shop's reviews),
a 400 before any of its values reaches a query; the values are still range-checked after it.

While the write token is rotated a codec signs with one key and accepts a second: hosts mid-rotation
then accept each other's cursors (see RANKER_WRITE_TOKEN_ALSO_ACCEPTED in settings.py).
"""

import base64
import binascii
import hashlib
import hmac
import json
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, TypeVar

from coffee_ranker.domain.errors import InvalidCursor
from coffee_ranker.domain.models import Page

T = TypeVar("T")

#: Longest string value a cursor may carry (ids, user names and timestamps are far shorter).
MAX_STRING_LENGTH = 128
#: Counters in a cursor stay well inside SQLite's and DynamoDB's integer range.
MAX_INTEGER = 2**53
_SIGNATURE_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_from_secret(secret: str) -> bytes:
    """A cursor key derived from a secret every host shares, so any host accepts any host's cursors."""
    return hmac.new(secret.encode("utf-8"), b"coffee-ranker cursor key v1", hashlib.sha256).digest()


def _sign(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


class CursorCodec:
    """Signs cursors with ``key``; accepts those signed with ``key`` or any of ``also_accepted``."""

    def __init__(self, key: Optional[bytes] = None, also_accepted: Sequence[bytes] = ()) -> None:
        self._key = key if key is not None else os.urandom(32)
        self._accepted_keys = (self._key, *also_accepted)

    def encode(self, listing: str, position: Dict[str, Any]) -> str:
        payload = json.dumps({"l": listing, "p": position}, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(payload)}.{_b64(_sign(self._key, payload))}"

    def _signed_here(self, payload: bytes, signature: bytes) -> bool:
        matched = False
        for key in self._accepted_keys:  # every key, no early exit: the time tells nothing
            matched |= hmac.compare_digest(signature, _sign(key, payload))
        return matched

    def decode(self, listing: str, cursor: str, fields: Dict[str, type]) -> Dict[str, Any]:
        """The position in ``cursor``; InvalidCursor unless one of this codec's keys signed it for
        ``listing``."""
        try:
            payload_text, signature_text = cursor.split(".")
            payload, signature = _unb64(payload_text), _unb64(signature_text)
        except (ValueError, binascii.Error):
            raise InvalidCursor() from None
        if not self._signed_here(payload, signature):
            raise InvalidCursor()
        try:
            document = json.loads(payload.decode("utf-8"))
        except ValueError:
            raise InvalidCursor() from None
        if not isinstance(document, dict) or document.get("l") != listing:
            raise InvalidCursor()
        position = document.get("p")
        if not isinstance(position, dict) or set(position) != set(fields):
            raise InvalidCursor()
        for name, kind in fields.items():
            if not _in_range(position[name], kind):
                raise InvalidCursor()
        return position


def _in_range(value: Any, kind: type) -> bool:
    # bool is an int in Python; true/false in a number's place is not a position.
    if not isinstance(value, kind) or isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 <= value <= MAX_INTEGER
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            return False
        try:
            value.encode("utf-8")  # lone surrogates cannot be stored or compared
        except UnicodeEncodeError:
            return False
    return True


def page_of(items: List[T], limit: int, cursor_of_last: Callable[[T], str]) -> Page[T]:
    """A page from ``limit + 1`` fetched items: the extra one only tells that another page exists."""
    if len(items) > limit:
        items = items[:limit]
        return Page(items=items, next_cursor=cursor_of_last(items[-1]))
    return Page(items=items, next_cursor=None)
