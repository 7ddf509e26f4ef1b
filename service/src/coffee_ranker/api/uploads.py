"""Receiving a photo: the multipart body is parsed as it arrives and the file spooled to disk.

The request body is read chunk by chunk (uvicorn hands over at most 64 KiB at a time and stops
reading the socket while the app is busy), fed to python-multipart's push parser, and the file's
bytes go straight to a temporary file. Nothing holds more than a chunk in memory, whatever the size.
The limits are enforced while reading: a body whose Content-Length already says it is too large is
refused before it is read, and a file that grows past the limit is refused the moment it does, as
is a file whose first bytes are not a JPEG, PNG or WebP signature.
"""

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from coffee_ranker.domain import images
from coffee_ranker.problems import ProblemError

FIELD_NAME = "file"
#: Room for the multipart envelope (boundaries, part headers, small extra fields) above the file.
ENVELOPE_BYTES = 64 * 1024

NOT_AN_IMAGE = "The file is not a JPEG, PNG or WebP image (judged by its content, not its name or type)."
NOT_DECODABLE = "The file does not decode as the image it claims to be; send a JPEG, PNG or WebP photo."

#: The OpenAPI request body of the upload route (the route reads the stream itself).
MULTIPART_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD_NAME],
                    "properties": {
                        FIELD_NAME: {
                            "type": "string",
                            "format": "binary",
                            "description": "A JPEG, PNG or WebP image.",
                        }
                    },
                }
            }
        },
    }
}


@dataclass
class ReceivedFile:
    path: str
    size: int
    image_type: images.ImageType

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


@dataclass
class _Receiver:
    """The parser's callbacks: which part we are in, and where the file's bytes go."""

    max_bytes: int
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: Dict[bytes, bytes] = field(default_factory=dict)
    in_file: bool = False
    envelope_bytes: int = 0
    file: Optional["tempfile._TemporaryFileWrapper"] = None
    size: int = 0
    head: bytes = b""
    image_type: Optional[images.ImageType] = None
    done: List[bool] = field(default_factory=list)

    def callbacks(self) -> Dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.headers = {}
        self.in_file = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]
        self._count_envelope(end - start)

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]
        self._count_envelope(end - start)

    def on_header_end(self) -> None:
        self.headers[bytes(self.header_field).lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        if options.get(b"name") != FIELD_NAME.encode():
            return
        if self.file is not None:
            raise ProblemError(422, f"Send one file per request, in the form field '{FIELD_NAME}'.")
        self.in_file = True
        self.file = tempfile.NamedTemporaryFile(prefix="coffee-ranker-upload-", delete=False)  # noqa: SIM115

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self.in_file:
            self._count_envelope(end - start)
            return
        self.size += end - start
        if self.size > self.max_bytes:
            raise _too_large(self.max_bytes)
        chunk = data[start:end]
        if self.image_type is None and len(self.head) < images.SNIFF_BYTES:
            self.head += chunk[: images.SNIFF_BYTES - len(self.head)]
            if len(self.head) >= images.SNIFF_BYTES:
                self._sniff()
        assert self.file is not None  # noqa: S101 - set in on_headers_finished
        self.file.write(chunk)

    def on_part_end(self) -> None:
        if self.in_file:
            self.in_file = False
            self.done.append(True)

    def _count_envelope(self, length: int) -> None:
        self.envelope_bytes += length
        if self.envelope_bytes > ENVELOPE_BYTES:
            raise ProblemError(
                413,
                f"The form's other fields and headers exceed {ENVELOPE_BYTES} bytes; "
                f"send only the field '{FIELD_NAME}'.",
            )

    def _sniff(self) -> None:
        self.image_type = images.sniff(self.head)
        if self.image_type is None:
            raise ProblemError(415, NOT_AN_IMAGE)

    def close_file(self) -> None:
        if self.file is not None and not self.file.closed:
            self.file.close()

    def discard(self) -> None:
        self.close_file()
        if self.file is not None:
            ReceivedFile(self.file.name, 0, images.JPEG).discard()


def _too_large(max_bytes: int) -> ProblemError:
    return ProblemError(413, f"The photo is larger than the limit of {max_bytes} bytes.")


async def receive_photo(request: Request, max_bytes: int) -> ReceivedFile:
    """Spool the form's ``file`` to disk and tell its type; ProblemError for anything unacceptable."""
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise ProblemError(415, f"Send the photo as multipart/form-data, in the form field '{FIELD_NAME}'.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + ENVELOPE_BYTES:
        raise _too_large(max_bytes)

    receiver = _Receiver(max_bytes=max_bytes)
    try:
        parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        receiver.close_file()
    except MultipartParseError:
        receiver.discard()
        raise ProblemError(400, "The multipart/form-data body is malformed.") from None
    except BaseException:
        receiver.discard()
        raise

    if receiver.file is None or not receiver.done:
        receiver.discard()
        raise ProblemError(422, f"The form has no complete file in the field '{FIELD_NAME}'.")
    if receiver.image_type is None:  # shorter than a signature
        receiver.discard()
        raise ProblemError(415, NOT_AN_IMAGE)
    return ReceivedFile(path=receiver.file.name, size=receiver.size, image_type=receiver.image_type)


def clean_photo(received: ReceivedFile, max_pixels: int) -> ReceivedFile:
    """The photo decoded and re-encoded without its metadata, in a new spooled file (blocking)."""
    target = tempfile.NamedTemporaryFile(  # noqa: SIM115 - handed over to the caller as a ReceivedFile
        prefix="coffee-ranker-clean-", suffix="." + received.image_type.extension, delete=False
    )
    target.close()
    cleaned = ReceivedFile(target.name, 0, received.image_type)
    try:
        images.reencode(received.path, cleaned.path, received.image_type, max_pixels)
    except images.TooManyPixels:
        cleaned.discard()
        raise ProblemError(413, f"The photo has more than the limit of {max_pixels} pixels.") from None
    except images.NotAnImage:
        cleaned.discard()
        raise ProblemError(415, NOT_DECODABLE) from None
    except BaseException:
        cleaned.discard()
        raise
    cleaned.size = os.path.getsize(cleaned.path)
    return cleaned
