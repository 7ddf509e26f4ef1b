"""The DynamoDB backend's ranked listing: a maintained order, read a page at a time, that a shop's
deletion leaves as if the shop had never been; and its schema version item, which a table from a
newer release is refused by, and which no listing ever shows."""

import os
import random
import subprocess
import sys
import threading
import uuid
from datetime import timedelta

import pytest

from coffee_ranker.domain.errors import SchemaTooNew, ShopNotFound, StorageUnavailable
from coffee_ranker.domain.models import NewShop, Photo, Shop, utc_now
from coffee_ranker.storage.dynamodb import (
    RANKED_PK,
    SCHEMA_PK,
    SCHEMA_SK,
    SCHEMA_VERSION,
    SCHEMA_VERSION_ATTRIBUTE,
    SHOP_PREFIX,
    DynamoDbRepository,
    _partition,
    _wire,
    rank_item,
    rank_sort_key,
    shop_item,
)
from tests.conftest import settings_for
from tests.support import REGION, create_table, service_environ


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


# -- the schema version item ---------------------------------------------------------------------


@pytest.fixture
def fresh_table(aws):
    """A table as the deployment creates it, that no release has opened yet."""
    table = f"ranker-{uuid.uuid4().hex[:12]}"
    create_table(aws.client("dynamodb"), table)
    return table


def schema_item(aws, table):
    response = aws.client("dynamodb").get_item(
        TableName=table, Key=_wire({"pk": SCHEMA_PK, "sk": SCHEMA_SK}), ConsistentRead=True
    )
    return response.get("Item")


def put_schema_version(aws, table, version) -> None:
    aws.client("dynamodb").put_item(
        TableName=table, Item=_wire({"pk": SCHEMA_PK, "sk": SCHEMA_SK, SCHEMA_VERSION_ATTRIBUTE: version})
    )


def test_the_schema_item_is_where_the_deployment_looks_for_it():
    # The deployment reads these names and the version: renaming one breaks its check of a restore.
    assert (SCHEMA_PK, SCHEMA_SK, SCHEMA_VERSION_ATTRIBUTE, SCHEMA_VERSION) == (
        "META",
        "SCHEMA",
        "version",
        1,
    )


def test_opening_a_new_table_puts_the_schema_version(aws, fresh_table):
    assert schema_item(aws, fresh_table) is None
    repo = DynamoDbRepository(fresh_table, REGION, aws.endpoint)
    repo.open()
    repo.close()
    assert schema_item(aws, fresh_table) == {
        "pk": {"S": "META"},
        "sk": {"S": "SCHEMA"},
        "version": {"N": "1"},
    }


def test_concurrent_openers_share_one_item_and_leave_a_restored_one_alone(aws, fresh_table):
    client = aws.client("dynamodb")
    # A restored table keeps its item as it was: nobody overwrites it.
    restored = _wire({"pk": SCHEMA_PK, "sk": SCHEMA_SK, SCHEMA_VERSION_ATTRIBUTE: 1, "note": "restored"})
    openers = [DynamoDbRepository(fresh_table, REGION, aws.endpoint) for _ in range(6)]
    failures = []

    def open_one(repo, first):
        try:
            if first:
                client.put_item(TableName=fresh_table, Item=restored)
            repo.open()
        except Exception as error:  # collected and asserted below
            failures.append(error)

    threads = [threading.Thread(target=open_one, args=(repo, n == 3)) for n, repo in enumerate(openers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for repo in openers:
        repo.close()
    assert failures == []
    items = client.query(**_partition(SCHEMA_PK), TableName=fresh_table)["Items"]
    assert len(items) == 1
    assert items[0][SCHEMA_VERSION_ATTRIBUTE] == {"N": "1"}
    assert items[0]["note"] == {"S": "restored"}, "no opener overwrote the restored item"


def test_a_table_from_a_newer_release_is_refused_before_anything_is_written(aws, fresh_table):
    put_schema_version(aws, fresh_table, SCHEMA_VERSION + 1)
    older = Shop("a" * 32, "Old", "A", None, None, 2, 9, utc_now())  # no rank entry: open would add one
    aws.client("dynamodb").put_item(TableName=fresh_table, Item=_wire(shop_item(older)))
    repo = DynamoDbRepository(fresh_table, REGION, aws.endpoint)
    with pytest.raises(SchemaTooNew, match=r"schema version 2, newer than this release knows \(1\)"):
        repo.open()
    assert repo._query_all(**_partition(RANKED_PK)) == [], "nothing was written"
    assert schema_item(aws, fresh_table)[SCHEMA_VERSION_ATTRIBUTE] == {"N": "2"}
    repo.close()


def test_an_opener_that_loses_the_race_to_a_newer_release_refuses(aws, fresh_table):
    repo = DynamoDbRepository(fresh_table, REGION, aws.endpoint)
    read = repo._client.get_item
    reads = []

    def a_newer_release_opens_meanwhile(**params):
        response = read(**params)
        if not reads:
            put_schema_version(aws, fresh_table, SCHEMA_VERSION + 1)  # after our read, before our put
        reads.append(response)
        return response

    repo._client.get_item = a_newer_release_opens_meanwhile
    with pytest.raises(SchemaTooNew):
        repo.open()
    assert "Item" not in reads[0], "the first read found no item"
    assert schema_item(aws, fresh_table)[SCHEMA_VERSION_ATTRIBUTE] == {"N": "2"}, "not overwritten"
    repo.close()


@pytest.mark.parametrize("version", [{"S": "1"}, {"N": "1.5"}, {"N": "0"}, None], ids=str)
def test_a_schema_item_without_a_whole_version_is_refused(aws, fresh_table, version):
    item = {"pk": {"S": SCHEMA_PK}, "sk": {"S": SCHEMA_SK}}
    if version is not None:
        item[SCHEMA_VERSION_ATTRIBUTE] = version
    aws.client("dynamodb").put_item(TableName=fresh_table, Item=item)
    repo = DynamoDbRepository(fresh_table, REGION, aws.endpoint)
    with pytest.raises(StorageUnavailable, match="not a whole number"):
        repo.open()
    repo.close()


def test_a_table_a_newer_release_migrated_meanwhile_is_not_ready(aws, repository):
    repository.ping()
    put_schema_version(aws, repository.table, SCHEMA_VERSION + 1)
    with pytest.raises(StorageUnavailable, match="schema version 2, newer than this release"):
        repository.ping()


def test_a_table_that_lost_its_item_is_still_ready(aws, repository):
    # A restore from a backup taken before the item existed: the layout is version 1 all the same.
    aws.client("dynamodb").delete_item(
        TableName=repository.table, Key=_wire({"pk": SCHEMA_PK, "sk": SCHEMA_SK})
    )
    repository.ping()


def test_no_listing_sees_the_schema_item(aws, repository):
    assert repository.list_shops(10).items == []
    shop = repository.create_shop(NewShop(name="S", address="A"))
    repository.put_review(shop.id, "ann", 4, None)
    photo = Photo("b" * 32, shop.id, "media/shops/x.jpg", "image/jpeg", 10, utc_now() + timedelta(seconds=1))
    repository.add_photo(photo)
    assert [listed.id for listed in repository.list_shops(10).items] == [shop.id]
    assert [review.user for review in repository.list_reviews(shop.id, 10).items] == ["ann"]
    assert [listed.id for listed in repository.list_photos(shop.id, 10).items] == [photo.id]
    with pytest.raises(ShopNotFound):
        repository.get_shop(SCHEMA_PK)

    reopened = DynamoDbRepository(repository.table, REGION, aws.endpoint)
    reopened.open()  # the rank entries' repair reads SHOPS and RANKED only
    assert [listed.id for listed in reopened.list_shops(10).items] == [shop.id]
    reopened.close()

    assert repository.delete_shop(shop.id) == [photo.key]
    left = aws.client("dynamodb").scan(TableName=repository.table)["Items"]
    assert left == [schema_item(aws, repository.table)], "only the schema item stays"
    assert repository.list_shops(10).items == []


def test_the_command_refuses_a_newer_table_with_one_line(aws, fresh_table, tmp_path):
    put_schema_version(aws, fresh_table, SCHEMA_VERSION + 1)
    environ = {key: value for key, value in os.environ.items() if not key.startswith("RANKER_")}
    environ.update(
        service_environ(aws.endpoint, tmp_path),
        RANKER_DYNAMODB_TABLE=fresh_table,
        RANKER_DYNAMODB_ENDPOINT_URL=aws.endpoint,
    )
    finished = subprocess.run(
        [sys.executable, "-m", "coffee_ranker"], env=environ, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 1
    assert "Traceback" not in finished.stderr
    # botocore may log where it found credentials first; the refusal is the last line, and whole.
    assert finished.stderr.strip().splitlines()[-1] == (
        f"coffee-ranker-api: cannot open the database: the DynamoDB table {fresh_table} has schema "
        f"version {SCHEMA_VERSION + 1}, newer than this release knows ({SCHEMA_VERSION}); "
        "run a newer coffee-ranker-api"
    )
