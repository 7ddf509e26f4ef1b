"""Deleting a shop over HTTP, on both backends: the token, 404, and everything of the shop goes (its
reviews and photo records in the database, its photos' files in the bucket), nothing of another shop;
a dependency failing on the way is a 503."""

import sqlite3

import httpx
import pytest
from botocore.exceptions import ClientError

from coffee_ranker.app import create_app
from coffee_ranker.storage.dynamodb import _partition, shop_pk
from tests.support import AUTH, BUCKET, PNG_BYTES, WRITE_TOKEN, serve_in_thread
from tests.test_api_photos import upload
from tests.test_api_shops import assert_problem
from tests.test_faults import assert_unavailable, client_error


def records_of(settings, aws, shop_id: str) -> list:
    """Whatever the database still holds of the shop's reviews and photos, read past the API."""
    if settings.dynamodb_table:
        dynamodb = aws.client("dynamodb")
        return dynamodb.query(TableName=settings.dynamodb_table, **_partition(shop_pk(shop_id)))["Items"]
    with sqlite3.connect(settings.db_path) as db:
        return db.execute(
            "SELECT 'review', user_id FROM reviews WHERE shop_id = ? UNION ALL"
            " SELECT 'photo', key FROM photos WHERE shop_id = ?",
            (shop_id, shop_id),
        ).fetchall()


def versions_of(aws, key: str) -> list:
    listed = aws.client("s3").list_object_versions(Bucket=BUCKET, Prefix=key)
    return [entry for kind in ("Versions", "DeleteMarkers") for entry in listed.get(kind, [])]


def test_deleting_a_shop_removes_its_reviews_photos_and_files(client, aws, settings, shop):
    for user, stars in (("ann", 5), ("bob", 2)):
        client.put(f"/shops/{shop['id']}/reviews/{user}", json={"stars": stars}, headers=AUTH)
    photos = [upload(client, shop["id"], PNG_BYTES).json() for _ in range(2)]
    assert len(records_of(settings, aws, shop["id"])) == 4

    response = client.delete(f"/shops/{shop['id']}", headers=AUTH)

    assert response.status_code == 204, response.text
    assert response.content == b""
    assert_problem(client.get(f"/shops/{shop['id']}"), 404)
    assert_problem(client.get(f"/shops/{shop['id']}/reviews"), 404)
    assert_problem(client.get(f"/shops/{shop['id']}/photos"), 404)
    assert client.get("/shops").json()["items"] == []
    assert records_of(settings, aws, shop["id"]) == []
    s3 = aws.client("s3")
    for photo in photos:
        with pytest.raises(ClientError) as missing:
            s3.head_object(Bucket=BUCKET, Key=photo["key"])
        assert missing.value.response["Error"]["Code"] == "404"
        assert httpx.get(photo["url"]).status_code in (403, 404), "no longer public"
    assert_problem(client.delete(f"/shops/{shop['id']}", headers=AUTH), 404)


def test_deleting_a_shop_leaves_other_shops_as_they_were(client, aws, settings, shop):
    other = client.post("/shops", json={"name": "Rösterei", "address": "Hauptstraße 1"}, headers=AUTH).json()
    client.put(f"/shops/{other['id']}/reviews/ann", json={"stars": 5}, headers=AUTH)
    kept_photo = upload(client, other["id"], PNG_BYTES).json()
    client.put(f"/shops/{shop['id']}/reviews/ann", json={"stars": 1}, headers=AUTH)
    before = client.get(f"/shops/{other['id']}").json()

    assert client.delete(f"/shops/{shop['id']}", headers=AUTH).status_code == 204

    assert client.get(f"/shops/{other['id']}").json() == before
    assert [listed["id"] for listed in client.get("/shops").json()["items"]] == [other["id"]]
    reviews = client.get(f"/shops/{other['id']}/reviews").json()["items"]
    assert [review["user"] for review in reviews] == ["ann"]
    assert client.get(f"/shops/{other['id']}/photos").json()["items"] == [kept_photo]
    assert httpx.get(kept_photo["url"]).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {WRITE_TOKEN}"}],
    ids=["no header", "wrong token", "wrong scheme"],
)
def test_deleting_needs_the_token(client, shop, headers):
    response = client.delete(f"/shops/{shop['id']}", headers=headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert client.get(f"/shops/{shop['id']}").status_code == 200, "nothing was deleted"


@pytest.mark.parametrize("shop_id", ["0" * 32, "not-an-id", "F" * 32], ids=lambda v: v[:12])
def test_deleting_an_unknown_or_malformed_shop_is_not_found(client, shop, shop_id):
    problem = assert_problem(client.delete(f"/shops/{shop_id}", headers=AUTH), 404)
    assert problem["detail"] == "There is no coffee shop with this id.", "the id is not echoed"
    assert [listed["id"] for listed in client.get("/shops").json()["items"]] == [shop["id"]]


def test_a_bucket_that_refuses_the_delete_is_503_and_the_files_key_is_logged(
    settings, storage, shop, monkeypatch, caplog
):
    def refuse(*args, **kwargs):
        raise client_error("AccessDenied", "DeleteObject")

    app = create_app(settings, storage)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        photo = upload(client, shop["id"], PNG_BYTES).json()
        monkeypatch.setattr(storage.object_store._client, "delete_object", refuse)
        assert_unavailable(client.delete(f"/shops/{shop['id']}", headers=AUTH))
    assert any(photo["key"] in record.getMessage() for record in caplog.records), "the orphan is named"


@pytest.mark.parametrize("backend", ["dynamodb"])
def test_a_dynamodb_failure_during_the_delete_is_503_and_keeps_the_shop(settings, storage, shop, monkeypatch):
    def fail(*args, **kwargs):
        raise client_error("InternalServerError", "TransactWriteItems")

    monkeypatch.setattr(storage.repository._client, "transact_write_items", fail)
    with serve_in_thread(create_app(settings, storage)) as url:
        assert_unavailable(httpx.delete(f"{url}/shops/{shop['id']}", headers=AUTH, timeout=30))
        assert httpx.get(f"{url}/shops/{shop['id']}").status_code == 200
