"""The storage interfaces (ports) the domain and the HTTP layer depend on; ``storage/`` implements them.

They live in the domain so that it never imports a backend: the dependency points from storage to here.
"""

import abc
from typing import Hashable, List, Optional

from coffee_ranker.domain.models import NewShop, Page, Photo, Review, ReviewWrite, Shop


class Repository(abc.ABC):
    """Shops, their reviews (one per user per shop) and their photos' records.

    Every backend keeps each shop's ``review_count`` and ``star_sum`` in step with its reviews
    atomically, so the ranking never reads a half-applied review.
    """

    #: True when reads are local and short (an indexed SQLite query in WAL mode, which never waits
    #: for writers): the HTTP layer then runs them on the event loop instead of a thread.
    local_reads = False

    def change_token(self) -> Optional[Hashable]:
        """A value that changes whenever the data changes, cheap to read; None when the backend
        cannot tell (other hosts write to it), and reads must not be cached."""
        return None

    @abc.abstractmethod
    def open(self) -> None:
        """Connect and bring the schema up to date. Safe to call more than once."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. Safe to call more than once."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StorageUnavailable unless the database answers."""

    @abc.abstractmethod
    def create_shop(self, new_shop: NewShop) -> Shop: ...

    @abc.abstractmethod
    def get_shop(self, shop_id: str) -> Shop:
        """The shop, or ShopNotFound."""

    @abc.abstractmethod
    def list_shops(self, limit: int, cursor: Optional[str] = None) -> Page[Shop]:
        """Shops in ranking order (see domain.ranking), ``limit`` at a time."""

    @abc.abstractmethod
    def delete_shop(self, shop_id: str) -> List[str]:
        """Delete the shop, its reviews and its photos' records; return those photos' keys, whose files
        the caller deletes. ShopNotFound for an unknown shop. Once it returns, no review or photo can be
        added to the shop any more."""

    @abc.abstractmethod
    def put_review(self, shop_id: str, user: str, stars: int, text: Optional[str]) -> ReviewWrite:
        """Create the user's review of the shop, or replace it; ShopNotFound for an unknown shop."""

    @abc.abstractmethod
    def list_reviews(self, shop_id: str, limit: int, cursor: Optional[str] = None) -> Page[Review]:
        """The shop's reviews ordered by user, ``limit`` at a time; ShopNotFound for an unknown shop."""

    @abc.abstractmethod
    def add_photo(self, photo: Photo) -> None: ...

    @abc.abstractmethod
    def list_photos(self, shop_id: str, limit: int, cursor: Optional[str] = None) -> Page[Photo]:
        """The shop's photos, oldest first, ``limit`` at a time; ShopNotFound for an unknown shop."""


class ObjectStore(abc.ABC):
    """Where photo files live, and the public URL each one is served from."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StorageUnavailable unless the bucket answers."""

    @abc.abstractmethod
    def put_file(self, key: str, path: str, content_type: str) -> None:
        """Upload the local file at ``path`` under ``key``, streaming it from disk."""

    @abc.abstractmethod
    def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def public_url(self, key: str) -> str: ...

    def close(self) -> None:  # noqa: B027 - most stores have nothing to release
        """Release connections."""
