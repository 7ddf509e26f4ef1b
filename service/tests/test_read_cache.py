"""Rendered reads are reused only while the data under them is unchanged, whoever changed it."""

import pytest

from coffee_ranker.domain.models import NewShop
from coffee_ranker.storage.dynamodb import DynamoDbRepository
from coffee_ranker.storage.sqlite import SqliteRepository
from tests.support import AUTH, REGION


def other_writer(settings, aws):
    """Another connection to the same database, as another process or host would have."""
    if settings.storage_backend == "sqlite":
        return SqliteRepository(settings.db_path)
    return DynamoDbRepository(settings.dynamodb_table, REGION, aws.endpoint)


def test_a_write_through_the_api_is_read_back_at_once(client, shop):
    for stars in (5, 1, 4):
        before = client.get("/shops").json()
        client.put(f"/shops/{shop['id']}/reviews/ann", json={"stars": stars}, headers=AUTH)
        after = client.get("/shops").json()
        assert after != before
        assert after["items"][0]["average_stars"] == stars
        assert client.get(f"/shops/{shop['id']}").json()["average_stars"] == stars


def test_a_write_by_another_connection_is_read_back_at_once(client, shop, settings, aws):
    assert client.get("/shops").json()["items"][0]["review_count"] == 0
    assert client.get(f"/shops/{shop['id']}").json()["review_count"] == 0
    writer = other_writer(settings, aws)
    writer.open()
    try:
        writer.put_review(shop["id"], "bob", 2, None)
        added = writer.create_shop(NewShop(name="Second", address="Elsewhere"))
    finally:
        writer.close()
    listed = client.get("/shops").json()["items"]
    assert {item["id"] for item in listed} == {shop["id"], added.id}
    assert client.get(f"/shops/{shop['id']}").json()["review_count"] == 1


@pytest.mark.parametrize("backend", ["dynamodb"])
def test_a_backend_shared_by_hosts_is_never_cached(storage):
    assert storage.repository.change_token() is None
