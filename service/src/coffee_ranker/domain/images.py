"""Photos by their content, never by what the client claims: recognised by their magic bytes, then
decoded and re-encoded so that only their pixels are kept."""

from dataclasses import dataclass
from typing import Optional

from PIL import Image, ImageOps


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


class NotAnImage(ValueError):
    """The file does not decode as the image its signature announces."""


class TooManyPixels(ValueError):
    """The image decodes to more pixels than allowed (a decompression bomb, or just too large)."""


_PILLOW_FORMATS = {"JPEG": JPEG, "PNG": PNG, "WEBP": WEBP}
_PILLOW_NAMES = {kind: name for name, kind in _PILLOW_FORMATS.items()}
#: Modes each format can be saved in as they are; anything else is converted first.
_SAVEABLE_MODES = {
    JPEG: ("RGB", "L", "CMYK"),
    PNG: ("RGB", "RGBA", "L", "LA", "P", "1", "I;16"),
    WEBP: ("RGB", "RGBA"),
}


def reencode(source_path: str, target_path: str, expected: ImageType, max_pixels: int) -> ImageType:
    """Decode the image at ``source_path`` and write it anew to ``target_path``, in its own format.

    Only pixels survive: EXIF (GPS, camera, time), XMP, ICC, comments and whatever follows the image
    are dropped; the EXIF orientation is applied to the pixels first. NotAnImage for a file that does
    not fully decode as ``expected``, TooManyPixels above ``max_pixels`` (checked before decoding).
    """
    try:
        with Image.open(source_path, formats=list(_PILLOW_FORMATS)) as image:
            if _PILLOW_FORMATS.get(image.format or "") != expected:
                raise NotAnImage(f"decodes as {image.format}, not {expected.extension}")
            width, height = image.size
            if width * height > max_pixels:
                raise TooManyPixels(f"{width}x{height} pixels")
            image.load()
            upright = ImageOps.exif_transpose(image) or image
            if upright.mode not in _SAVEABLE_MODES[expected]:
                upright = upright.convert(
                    "RGBA" if "A" in upright.mode or "transparency" in upright.info else "RGB"
                )
                if expected is JPEG:
                    upright = upright.convert("RGB")
            # Savers copy comments, ICC and EXIF from .info: keep only what is part of the pixels.
            upright.info = {key: value for key, value in upright.info.items() if key == "transparency"}
            options = {"quality": 90} if expected in (JPEG, WEBP) else {}
            # A fresh save with no exif/icc_profile/pnginfo arguments writes no metadata at all.
            upright.save(target_path, format=_PILLOW_NAMES[expected], **options)
    except (NotAnImage, TooManyPixels):
        raise
    except Image.DecompressionBombError as error:
        raise TooManyPixels(str(error)) from error
    except Exception as error:
        # Whatever a decoder raises on hostile input (OSError, SyntaxError, struct.error, ...) means
        # the same: this is not an image we can read.
        raise NotAnImage(str(error)) from error
    return expected
