"""The DynamoDB backend's ranked listing: a maintained order, read a page at a time, that a shop's
deletion leaves as if the shop had never been."""

import random

import pytest

from coffee_ranker.domain.errors import ShopNotFound
from coffee_ranker.domain.models import NewShop, Shop, utc_now
from coffee_ranker.storage.dynamodb import (
    RANKED_PK,
    SHOP_PREFIX,
    DynamoDbRepository,
    _partition,
    _wire,
    rank_item,
    rank_sort_key,
    shop_item,
)
from tests.conftest import settings_for
from tests.support import REGION


@pytest.fixture
def repository(aws, tmp_path):
    settings = settings_for("dynamodb", aws, tmp_path)
    repo = DynamoDbRepository(settings.dynamodb_table, REGION, aws.endpoint)
    repo.open()
    yield repo
    repo.close()


def test_rank_sort_keys_sort_as_the_exact_ranking():
    rng = random.Random(7)
    shops = [
        Shop(f"{n:032x}", "S", "A", None, None, count, rng.randint(count, 5 * count), utc_now())
        for n, count in enumerate(rng.choice([0, 1, 2, 3, 10, 50, 10**6]) for _ in range(400))
    ]
    by_sort_key = sorted(shops, key=lambda shop: rank_sort_key(shop.star_sum, shop.review_count, shop.id))
    assert by_sort_key == sorted(shops, key=lambda shop: shop.rank_key.sort_key())


def test_the_listing_reads_one_page_not_every_shop(repository):
    shops = [repository.create_shop(NewShop(name=f"S{n}", address="A")) for n in range(12)]
    for n, shop in enumerate(shops):
        repository.put_review(shop.id, "ann", 1 + n % 5, None)
    queries = []
    query = repository._client.query

    def counted(**params):
        response = query(**params)
        queries.append((params, response["Count"]))
        return response

    repository._client.query = counted
    page = repository.list_shops(3)
    second = repository.list_shops(3, page.next_cursor)
    assert [(params["Limit"], count) for params, count in queries] == [(4, 4), (4, 4)]
    assert all(params["ExpressionAttributeValues"][":pk"] == {"S": RANKED_PK} for params, _ in queries)
    listed = page.items + second.items
    assert [shop.id for shop in listed] == [
        shop.id for shop in sorted(listed, key=lambda shop: shop.rank_key.sort_key())
    ]


def test_every_review_moves_the_shops_rank_entry_and_leaves_no_other(repository):
    shop = repository.create_shop(NewShop(name="S", address="A"))
    for stars in (5, 1, 3, 3):
        repository.put_review(shop.id, "ann", stars, None)
    repository.put_review(shop.id, "bob", 4, None)
    entries = repository._query_all(**_partition(RANKED_PK))
    current = repository.get_shop(shop.id)
    assert [entry["sk"] for entry in entries] == [rank_sort_key(7, 2, shop.id)]
    assert (entries[0]["review_count"], entries[0]["star_sum"]) == (current.review_count, current.star_sum)


def test_opening_adds_rank_entries_of_older_shops_and_drops_stale_ones(aws, repository):
    # A shop as the previous release wrote it (no rank entry), and a rank entry left at an old rank.
    older = Shop("a" * 32, "Old", "A", None, None, 2, 9, utc_now())
    moved = repository.create_shop(NewShop(name="Moved", address="A"))
    client = repository._client
    client.put_item(TableName=repository.table, Item=_wire(shop_item(older)))
    stale = Shop(moved.id, "Moved", "A", None, None, 5, 25, moved.created_at)
    client.put_item(TableName=repository.table, Item=_wire(rank_item(stale)))
    assert {shop.id for shop in repository.list_shops(10).items} == {moved.id}, "older is missing"

    reopened = DynamoDbRepository(repository.table, REGION, aws.endpoint)
    reopened.open()
    listed = reopened.list_shops(10).items
    assert [shop.id for shop in listed] == [older.id, moved.id]
    assert [shop.review_count for shop in listed] == [2, 0], "the stale entry is gone"
    reopened.close()


def test_a_review_landing_during_a_delete_leaves_nothing_of_the_shop(repository):
    shop = repository.create_shop(NewShop(name="S", address="A"))
    read = repository.get_shop
    raced = []

    def read_then_a_review_lands(shop_id):
        found = read(shop_id)
        if not raced:
            raced.append(shop_id)
            repository.put_review(shop_id, "ann", 5, None)  # moves the rank entry the delete just read
        return found

    repository.get_shop = read_then_a_review_lands
    assert repository.delete_shop(shop.id) == []
    assert raced == [shop.id]
    assert repository._query_all(**_partition(RANKED_PK)) == [], "no rank entry left behind"
    assert repository._query_all(**_partition(SHOP_PREFIX + shop.id)) == [], "nor its review"
    with pytest.raises(ShopNotFound):
        read(shop.id)
