"""Photo uploads over HTTP, on both backends, into the embedded S3."""

import io
import re
import urllib.error
import urllib.request

import httpx
import pytest
from PIL import Image

from coffee_ranker.app import create_app
from coffee_ranker.storage.factory import Storage, build_storage
from coffee_ranker.storage.s3 import S3ObjectStore
from tests.conftest import settings_for
from tests.support import AUTH, BUCKET, JPEG_BYTES, PNG_BYTES, REGION, WEBP_BYTES, multipart, serve_in_thread
from tests.test_api_shops import assert_problem


def upload(client, shop_id: str, data: bytes, claimed_type: str = "image/jpeg", headers=AUTH):
    body, content_type = multipart("file", "photo.bin", claimed_type, data)
    return client.post(
        f"/shops/{shop_id}/photos", content=body, headers={**headers, "Content-Type": content_type}
    )


@pytest.mark.parametrize(
    ("data", "content_type", "extension"),
    [(JPEG_BYTES, "image/jpeg", "jpg"), (PNG_BYTES, "image/png", "png"), (WEBP_BYTES, "image/webp", "webp")],
    ids=["jpeg", "png", "webp"],
)
def test_an_uploaded_photo_is_public_at_its_url_with_its_real_type(
    client, aws, shop, data, content_type, extension
):
    # The client claims a wrong type: the content decides.
    response = upload(client, shop["id"], data, claimed_type="application/octet-stream")
    assert response.status_code == 201, response.text
    photo = response.json()
    assert re.fullmatch(rf"media/shops/{shop['id']}/[0-9a-f]{{32}}\.{extension}", photo["key"])
    assert photo["content_type"] == content_type
    assert photo["url"] == f"{aws.endpoint}/{BUCKET}/{photo['key']}"

    # Anonymous: no signature, only the bucket policy lets this through.
    with urllib.request.urlopen(photo["url"], timeout=10) as fetched:  # noqa: S310 - our own test URL
        stored = fetched.read()
        assert fetched.headers["Content-Type"] == content_type
    # What is stored is the re-encoded image: same kind and pixels' size, its own byte count.
    assert len(stored) == photo["size"]
    with Image.open(io.BytesIO(stored)) as image:
        assert (image.format, image.size) == (extension.replace("jpg", "jpeg").upper(), (32, 24))

    listed = client.get(f"/shops/{shop['id']}/photos").json()
    assert listed == {"items": [photo], "next_cursor": None}


def test_the_bucket_outside_media_is_not_public(aws, shop):
    aws.client("s3").put_object(Bucket=BUCKET, Key="private/secret.txt", Body=b"secret")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{aws.endpoint}/{BUCKET}/private/secret.txt", timeout=10)  # noqa: S310
    assert refused.value.code == 403


@pytest.mark.parametrize(
    "data",
    [
        b"GIF89a" + b"\x00" * 100,
        b"%PDF-1.7\n" + b"\x00" * 100,
        b"RIFF\x00\x00\x00\x00WAVEfmt ",
        b"\xff\xd8",
        b"",
    ],
    ids=["gif", "pdf", "riff-wave", "truncated-jpeg", "empty"],
)
def test_a_file_that_is_not_a_supported_image_is_refused_whatever_it_claims(client, aws, shop, data):
    problem = assert_problem(upload(client, shop["id"], data, claimed_type="image/png"), 415)
    assert "JPEG, PNG or WebP" in problem["detail"]
    assert client.get(f"/shops/{shop['id']}/photos").json()["items"] == []


def test_a_body_that_is_not_multipart_is_refused(client, shop):
    response = client.post(
        f"/shops/{shop['id']}/photos", content=JPEG_BYTES, headers={**AUTH, "Content-Type": "image/jpeg"}
    )
    assert_problem(response, 415)


def test_a_form_without_the_file_field_is_refused(client, shop):
    body, content_type = multipart("picture", "a.jpg", "image/jpeg", JPEG_BYTES)
    response = client.post(
        f"/shops/{shop['id']}/photos", content=body, headers={**AUTH, "Content-Type": content_type}
    )
    assert "'file'" in assert_problem(response, 422)["detail"]


def test_a_malformed_multipart_body_is_a_bad_request(client, shop):
    response = client.post(
        f"/shops/{shop['id']}/photos",
        content=b"this is not multipart at all",
        headers={**AUTH, "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert "malformed" in assert_problem(response, 400)["detail"]


def test_uploading_needs_the_token(client, shop):
    response = upload(client, shop["id"], JPEG_BYTES, headers={})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_uploading_to_an_unknown_shop_is_not_found(client):
    assert_problem(upload(client, "f" * 32, JPEG_BYTES), 404)


@pytest.fixture
def small_limit_url(backend, aws, tmp_path, storage):
    limited = settings_for(backend, aws, tmp_path, RANKER_MAX_UPLOAD_BYTES="4096")
    with serve_in_thread(create_app(limited, storage)) as url:
        yield url


def test_a_photo_over_the_limit_declared_up_front_is_refused(small_limit_url, shop):
    with httpx.Client(base_url=small_limit_url) as client:
        response = upload(client, shop["id"], JPEG_BYTES + b"\x00" * 200_000)
        assert "4096 bytes" in assert_problem(response, 413)["detail"]
        assert client.get(f"/shops/{shop['id']}/photos").json()["items"] == []


def test_a_streamed_photo_that_grows_over_the_limit_is_refused(small_limit_url, shop):
    body, content_type = multipart("file", "big.jpg", "image/jpeg", JPEG_BYTES + b"\x00" * 6000)

    def chunks():  # no Content-Length: the limit must hold while reading
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    with httpx.Client(base_url=small_limit_url) as client:
        response = client.post(
            f"/shops/{shop['id']}/photos", content=chunks(), headers={**AUTH, "Content-Type": content_type}
        )
        assert_problem(response, 413)
        # Exactly at the limit is still accepted.
        exact = upload(client, shop["id"], JPEG_BYTES + b"\x00" * (4096 - len(JPEG_BYTES)))
        assert exact.status_code == 201, exact.text


def test_photos_are_paginated_oldest_first(client, shop):
    keys = [upload(client, shop["id"], PNG_BYTES).json()["key"] for _ in range(5)]
    seen, cursor = [], None
    for _ in range(5):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/shops/{shop['id']}/photos", params=params).json()
        seen.extend(photo["key"] for photo in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == keys


def test_the_media_base_url_replaces_the_bucket_url(settings, aws, storage, shop):
    behind_a_cdn = Storage(
        repository=storage.repository,
        object_store=S3ObjectStore(BUCKET, REGION, aws.endpoint, media_base_url="https://media.example.org/"),
    )
    with serve_in_thread(create_app(settings, behind_a_cdn)) as url, httpx.Client(base_url=url) as client:
        photo = upload(client, shop["id"], JPEG_BYTES).json()
        assert photo["url"] == f"https://media.example.org/{photo['key']}"
        assert client.get(f"/shops/{shop['id']}/photos").json()["items"][0]["url"] == photo["url"]


def test_photos_are_stored_under_the_media_prefix(aws, tmp_path):
    settings = settings_for("sqlite", aws, tmp_path, RANKER_MEDIA_PREFIX="public/photos/")
    storage = build_storage(settings)
    storage.open()
    try:
        with serve_in_thread(create_app(settings, storage)) as url, httpx.Client(base_url=url) as client:
            shop = client.post("/shops", json={"name": "Kaffeebar", "address": "Marktplatz 3"}, headers=AUTH)
            photo = upload(client, shop.json()["id"], JPEG_BYTES).json()
    finally:
        storage.close()
    assert photo["key"].startswith(f"public/photos/shops/{shop.json()['id']}/")
    stored = aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="public/photos/")["Contents"]
    assert [entry["Key"] for entry in stored] == [photo["key"]]


@pytest.mark.parametrize(
    ("bucket", "endpoint", "base", "expected"),
    [
        ("photos", None, None, "https://photos.s3.eu-west-1.amazonaws.com/media/a.jpg"),
        (
            "photos.example.org",
            None,
            None,
            "https://s3.eu-west-1.amazonaws.com/photos.example.org/media/a.jpg",
        ),
        ("photos", "http://127.0.0.1:5000/", None, "http://127.0.0.1:5000/photos/media/a.jpg"),
        ("photos", "http://127.0.0.1:5000", "https://cdn.example.org", "https://cdn.example.org/media/a.jpg"),
    ],
)
def test_public_urls_take_the_documented_shape(bucket, endpoint, base, expected):
    store = S3ObjectStore(bucket, "eu-west-1", endpoint, base)
    assert store.public_url("media/a.jpg") == expected
