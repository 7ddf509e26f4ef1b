"""Request and response models: what the OpenAPI document promises, and what is enforced."""

import unicodedata
from datetime import datetime
from typing import Any, Dict, List, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from typing_extensions import Annotated

from coffee_ranker.domain import ranking
from coffee_ranker.domain.models import Photo, Review, Shop

#: Shop and photo ids are 32 lowercase hex digits.
ID_PATTERN = r"^[0-9a-f]{32}$"
#: Who writes a review: a user name or id chosen by the client, safe in URLs and keys.
USER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
COORDINATE_DECIMALS = 7


#: Bidi embeddings, overrides and isolates: they make text display in an order other than stored.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: Letters and symbols that render as nothing (Hangul fillers, the braille blank, ...).
_BLANK_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")


def _invisible(character: str) -> bool:
    # Cf: format characters (zero-width space, joiners, bidi marks); Z*: separators; M*: marks alone.
    return character in _BLANK_CHARACTERS or unicodedata.category(character)[0] in "CZM"


def _printable(allow_newlines: bool):
    def check(value: str) -> str:
        for character in value:
            if allow_newlines and character in "\r\n\t":
                continue
            # Cc: control characters; Cs: lone surrogates, which no storage can encode.
            if unicodedata.category(character) in ("Cc", "Cs"):
                raise ValueError("must not contain control characters")
        return value

    return AfterValidator(check)


def _visible_without_bidi_overrides(value: str) -> str:
    if any(character in _BIDI_CONTROLS for character in value):
        raise ValueError("must not contain bidirectional override or isolate characters")
    if all(_invisible(character) for character in value):
        raise ValueError("must contain visible characters")
    return value


Line = Annotated[
    str,
    Field(min_length=1),
    _printable(allow_newlines=False),
    AfterValidator(_visible_without_bidi_overrides),
]
ReviewText = Annotated[str, Field(max_length=4000), _printable(allow_newlines=True)]


class ShopCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Annotated[Line, Field(max_length=200, examples=["Kaffeebar am Markt"])]
    address: Annotated[Line, Field(max_length=500, examples=["Marktplatz 3, 69117 Heidelberg"])]
    latitude: Optional[float] = Field(
        None,
        ge=-90,
        le=90,
        strict=True,  # numbers only: "49.4" as a string is refused
        allow_inf_nan=False,
        description="Degrees north; give it with longitude.",
    )
    longitude: Optional[float] = Field(
        None,
        ge=-180,
        le=180,
        strict=True,
        allow_inf_nan=False,
        description="Degrees east; give it with latitude.",
    )

    @model_validator(mode="after")
    def _coordinates_come_in_pairs(self) -> "ShopCreate":
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude must be given together")
        # Seven decimals are about a centimetre; more is noise, and numbers like 1e-300 are beyond
        # what DynamoDB can store. Both backends then keep and return the same value.
        if self.latitude is not None and self.longitude is not None:
            self.latitude = round(self.latitude, COORDINATE_DECIMALS) + 0.0
            self.longitude = round(self.longitude, COORDINATE_DECIMALS) + 0.0
        return self


class ShopOut(BaseModel):
    id: str = Field(..., pattern=ID_PATTERN)
    name: str
    address: str
    latitude: Optional[float]
    longitude: Optional[float]
    review_count: int = Field(..., ge=0)
    average_stars: Optional[float] = Field(..., description="Plain mean of the stars; null without reviews.")
    score: float = Field(
        ...,
        description=(
            f"Bayesian average used for the ranking: ({ranking.PRIOR_WEIGHT} * {float(ranking.PRIOR_MEAN)}"
            f" + sum of stars) / ({ranking.PRIOR_WEIGHT} + review_count)."
        ),
    )
    created_at: datetime

    @classmethod
    def of(cls, shop: Shop) -> "ShopOut":
        return cls.model_construct(**cls.plain(shop))

    @staticmethod
    def plain(shop: Shop) -> Dict[str, Any]:
        """The shop as this model renders it, for reads rendered without building models."""
        return {
            "id": shop.id,
            "name": shop.name,
            "address": shop.address,
            "latitude": shop.latitude,
            "longitude": shop.longitude,
            "review_count": shop.review_count,
            "average_stars": shop.average_stars,
            "score": shop.score,
            "created_at": shop.created_at,
        }


class ShopPage(BaseModel):
    items: List[ShopOut]
    next_cursor: Optional[str] = Field(
        ..., description="Pass as `cursor` for the next page; null at the end."
    )


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stars: int = Field(..., ge=ranking.MIN_STARS, le=ranking.MAX_STARS, strict=True)
    text: Optional[ReviewText] = None


class ReviewOut(BaseModel):
    shop_id: str
    user: str
    stars: int = Field(..., ge=ranking.MIN_STARS, le=ranking.MAX_STARS)
    text: Optional[str]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, review: Review) -> "ReviewOut":
        return cls.model_construct(
            shop_id=review.shop_id,
            user=review.user,
            stars=review.stars,
            text=review.text,
            created_at=review.created_at,
            updated_at=review.updated_at,
        )


class ReviewPage(BaseModel):
    items: List[ReviewOut]
    next_cursor: Optional[str]


class PhotoOut(BaseModel):
    id: str = Field(..., pattern=ID_PATTERN)
    shop_id: str
    key: str = Field(..., examples=["media/shops/0f1e…/6a2b….jpg"])
    url: str = Field(..., description="Public URL the photo is served from.")
    content_type: str = Field(..., examples=["image/jpeg"])
    size: int = Field(..., gt=0, description="Bytes.")
    created_at: datetime

    @classmethod
    def of(cls, photo: Photo, url: str) -> "PhotoOut":
        return cls.model_construct(**cls.plain(photo, url))

    @staticmethod
    def plain(photo: Photo, url: str) -> Dict[str, Any]:
        return {
            "id": photo.id,
            "shop_id": photo.shop_id,
            "key": photo.key,
            "url": url,
            "content_type": photo.content_type,
            "size": photo.size,
            "created_at": photo.created_at,
        }


class PhotoPage(BaseModel):
    items: List[PhotoOut]
    next_cursor: Optional[str]


class Liveness(BaseModel):
    status: str = Field("ok", examples=["ok"])


class Readiness(BaseModel):
    status: str = Field("ready", examples=["ready"])
    checks: Dict[str, str] = Field(..., examples=[{"database": "ok", "bucket": "ok"}])
