"""Opaque pagination cursors: base64url JSON that names the listing it belongs to.

Clients must treat a cursor as an opaque string. Inside, it holds the sort key of the last item of
the page (keyset pagination), so a page never repeats or skips items that did not move meanwhile.
"""

import base64
import binascii
import json
from typing import Any, Callable, Dict, List, TypeVar

from coffee_ranker.domain.errors import InvalidCursor
from coffee_ranker.domain.models import Page

T = TypeVar("T")


def encode(listing: str, position: Dict[str, Any]) -> str:
    payload = json.dumps({"l": listing, "p": position}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(payload.encode("utf-8")).decode("ascii").rstrip("=")


def decode(listing: str, cursor: str, fields: Dict[str, type]) -> Dict[str, Any]:
    """The position stored in ``cursor``; InvalidCursor unless it is a well-formed cursor of ``listing``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor() from None
    if not isinstance(payload, dict) or payload.get("l") != listing:
        raise InvalidCursor()
    position = payload.get("p")
    if not isinstance(position, dict) or set(position) != set(fields):
        raise InvalidCursor()
    for name, kind in fields.items():
        value = position[name]
        # bool is an int in Python; a cursor with true/false in a number's place is forged.
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InvalidCursor()
    return position


def page_of(items: List[T], limit: int, cursor_of_last: Callable[[T], str]) -> Page[T]:
    """A page from ``limit + 1`` fetched items: the extra one only tells that another page exists."""
    if len(items) > limit:
        items = items[:limit]
        return Page(items=items, next_cursor=cursor_of_last(items[-1]))
    return Page(items=items, next_cursor=None)
