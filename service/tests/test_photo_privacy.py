"""Photos are decoded and re-encoded: what is stored is an image of the kind it claims, upright,
with no EXIF GPS (or any other metadata) left, as read back from the stored object."""

import io

import httpx
import pytest
from PIL import Image

from coffee_ranker.app import create_app
from tests.conftest import settings_for
from tests.support import AUTH, BUCKET, JPEG_BYTES, image_bytes, multipart, serve_in_thread
from tests.test_api_shops import assert_problem

GPS_IFD = 0x8825
ORIENTATION = 0x0112
#: EXIF orientation 6: the camera was turned; the picture must be rotated 90° clockwise to stand up.
ROTATE_CLOCKWISE = 6


def upload(client, shop_id: str, data: bytes):
    body, content_type = multipart("file", "photo.jpg", "image/jpeg", data)
    return client.post(
        f"/shops/{shop_id}/photos", content=body, headers={**AUTH, "Content-Type": content_type}
    )


def exif_with_gps_and_orientation() -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION] = ROTATE_CLOCKWISE
    exif[0x010F] = "PhoneMaker"  # camera make
    exif[GPS_IFD] = {1: "N", 2: (49.0, 24.0, 36.0), 3: "E", 4: (8.0, 42.0, 36.0)}
    return exif


def stored_object(aws, key: str) -> bytes:
    return aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()


@pytest.mark.parametrize("kind", ["JPEG", "PNG", "WEBP"])
def test_exif_gps_is_gone_from_the_stored_photo_and_the_orientation_applied(client, aws, shop, kind):
    original = image_bytes(kind, size=(40, 20), exif=exif_with_gps_and_orientation().tobytes())
    with Image.open(io.BytesIO(original)) as sent:
        assert sent.getexif().get_ifd(GPS_IFD), "the test photo really carries a location"

    response = upload(client, shop["id"], original)
    assert response.status_code == 201, response.text
    stored = stored_object(aws, response.json()["key"])
    assert b"PhoneMaker" not in stored
    with Image.open(io.BytesIO(stored)) as image:
        assert image.format == kind
        exif = image.getexif()
        assert not exif.get_ifd(GPS_IFD)
        assert GPS_IFD not in exif
        assert ORIENTATION not in exif, "orientation applied to the pixels, then dropped"
        assert image.size == (20, 40), "rotated upright"
        assert "icc_profile" not in image.info
        assert "exif" not in image.info


def test_comments_and_trailing_data_are_not_stored(client, aws, shop):
    original = image_bytes("JPEG", comment=b"home address: 1 Secret Lane") + b"<html>trailer</html>"
    response = upload(client, shop["id"], original)
    assert response.status_code == 201, response.text
    stored = stored_object(aws, response.json()["key"])
    assert b"Secret Lane" not in stored
    assert b"trailer" not in stored


@pytest.mark.parametrize(
    "data",
    [
        # A JPEG signature in front of an HTML page: sniffing says JPEG, decoding says no.
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01<html><script>alert(document.cookie)</script></html>",
        JPEG_BYTES[: len(JPEG_BYTES) // 2],  # truncated
        b"\x89PNG\r\n\x1a\n" + b"<svg onload=alert(1)>" * 10,
        image_bytes("PNG"),  # a real PNG, but the first bytes of a JPEG glued on front
    ],
    ids=["jpeg-headed-html", "truncated-jpeg", "png-headed-svg", "png-behind-jpeg-signature"],
)
def test_a_file_that_does_not_decode_is_unsupported_media(client, shop, data):
    if data.startswith(b"\x89PNG\r\n\x1a\n\x00"):
        data = b"\xff\xd8\xff" + data
    problem = assert_problem(upload(client, shop["id"], data), 415)
    assert "decode" in problem["detail"]
    assert client.get(f"/shops/{shop['id']}/photos").json()["items"] == []


def test_a_decompression_bomb_is_refused_before_it_is_decoded(
    settings, aws, tmp_path, storage, shop, backend
):
    tight = settings_for(backend, aws, tmp_path, RANKER_MAX_IMAGE_PIXELS="10000")
    bomb = image_bytes("PNG", size=(1000, 1000), color=(0, 0, 0))  # small file, a million pixels
    with serve_in_thread(create_app(tight, storage)) as url, httpx.Client(base_url=url) as http:
        problem = assert_problem(upload(http, shop["id"], bomb), 413)
        assert "10000 pixels" in problem["detail"]
        assert upload(http, shop["id"], image_bytes("PNG", size=(100, 100))).status_code == 201
