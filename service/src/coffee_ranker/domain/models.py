"""Domain records, as storage returns them and the HTTP layer renders them."""

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Generic, List, Optional, TypeVar

from coffee_ranker.domain import ranking

T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def timestamp(moment: datetime) -> str:
    """ISO 8601 with microseconds always present, so stored timestamps sort as strings."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class NewShop:
    name: str
    address: str
    latitude: Optional[float] = None
    longitude: Optional[float] = None


@dataclass(frozen=True)
class Shop:
    id: str
    name: str
    address: str
    latitude: Optional[float]
    longitude: Optional[float]
    review_count: int
    star_sum: int
    created_at: datetime

    @property
    def score(self) -> float:
        # Integer true division is correctly rounded: the same float as the exact Fraction's.
        return (ranking.PRIOR_STAR_TOTAL + self.star_sum) / (ranking.PRIOR_WEIGHT + self.review_count)

    @property
    def average_stars(self) -> Optional[float]:
        return self.star_sum / self.review_count if self.review_count else None

    @property
    def rank_key(self) -> ranking.RankKey:
        return ranking.RankKey(star_sum=self.star_sum, review_count=self.review_count, shop_id=self.id)


@dataclass(frozen=True)
class Review:
    shop_id: str
    user: str
    stars: int
    text: Optional[str]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ReviewWrite:
    """The outcome of putting a review: the review as stored and whether it replaced an earlier one."""

    review: Review
    replaced: bool


@dataclass(frozen=True)
class Photo:
    id: str
    shop_id: str
    key: str
    content_type: str
    size: int
    created_at: datetime


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; ``next_cursor`` is None on the last page."""

    items: List[T]
    next_cursor: Optional[str]
