"""Recognising photo formats by their content (magic bytes), never by what the client claims."""

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class ImageType:
    content_type: str
    extension: str


JPEG = ImageType("image/jpeg", "jpg")
PNG = ImageType("image/png", "png")
WEBP = ImageType("image/webp", "webp")

#: How many leading bytes ``sniff`` needs to decide.
SNIFF_BYTES = 12


def sniff(head: bytes) -> Optional[ImageType]:
    """The image type whose signature ``head`` starts with, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    return None
