"""The DynamoDB backend, for several hosts sharing one database.

Single-table design. The table has a string partition key ``pk`` and a string sort key ``sk``, no
secondary index. All shops share one partition; a second partition keeps a copy of every shop under
a sort key that orders it by rank, so the ranked listing is one Query of ``limit + 1`` items; each
shop's reviews and photos share a partition of their own:

=====================  =========================  ==================================================
Item                   pk / sk                    Attributes
=====================  =========================  ==================================================
shop                   SHOPS / SHOP#<id>          id, name, address, latitude?, longitude?,
                                                  review_count, star_sum, created_at
rank entry             RANKED / RANK#<rank>#<id>  the shop's attributes, as of its current rank
review (one per user)  SHOP#<id> / REVIEW#<user>  user, stars, text?, created_at, updated_at
photo                  SHOP#<id> / PHOTO#<created_at>#<photo id>
                                                  id, key, content_type, size, created_at
schema version         META / SCHEMA              version (a number: SCHEMA_VERSION)
=====================  =========================  ==================================================

The schema version item says which layout the table holds, so a restored table can be checked
against a release (by the service, and by the deployment, which reads SCHEMA_VERSION and the names
below). ``open`` puts it when it is missing (on condition that it still is, so concurrent openers and
a restored table that has one are left alone) and refuses a table whose version is newer than this
release's with SchemaTooNew, as the SQLite backend refuses a newer database; readiness fails when a
newer release migrates the table while this one runs. A table written before the item existed holds
version 1. The META partition is read by its key only: no listing queries it.

A review, its shop's aggregates and the shop's rank entry change together in one
``TransactWriteItems``: a new review is put on condition that none exists, a replacement on
condition that the stored stars are still the ones read; the shop's ``review_count`` and
``star_sum`` are set on condition that they are still the ones read, and its rank entry moves from
the old rank to the new one. When a concurrent writer got there first the transaction is
cancelled, and the write is retried from a fresh read, so concurrent reviews never corrupt a shop's
score or leave its rank entry behind.

Deleting a shop removes its item and rank entry in one transaction (on condition that its counts are
still the ones read, so the right rank entry goes), then every item of its partition.

Reviews of a shop are one Query (ordered by user); so are its photos (ordered by time). The ranked
listing is one Query of the RANKED partition from the cursor's rank on. ``open`` adds the rank
entries of shops written before they existed (each on condition that the shop did not change
meanwhile). The single SHOPS and RANKED partitions cap the write rate of reviews across all shops at
about a thousand per second; a GSI on a precomputed score would replace them when that matters.
"""

import random
import time
import uuid
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Dict, List, Optional

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from coffee_ranker.domain.errors import InvalidCursor, SchemaTooNew, ShopNotFound, StorageUnavailable
from coffee_ranker.domain.models import NewShop, Page, Photo, Review, ReviewWrite, Shop, timestamp, utc_now
from coffee_ranker.domain.ports import Repository
from coffee_ranker.domain.ranking import PRIOR_STAR_TOTAL, PRIOR_WEIGHT
from coffee_ranker.metrics import dependency_call
from coffee_ranker.storage import aws, cursors
from coffee_ranker.storage.cursors import CursorCodec

SHOPS_PK = "SHOPS"
SHOP_PREFIX = "SHOP#"
REVIEW_PREFIX = "REVIEW#"
PHOTO_PREFIX = "PHOTO#"
RANKED_PK = "RANKED"
RANK_PREFIX = "RANK#"
#: The key of the schema version item, and its attribute holding the version (a number).
SCHEMA_PK = "META"
SCHEMA_SK = "SCHEMA"
SCHEMA_VERSION_ATTRIBUTE = "version"
#: The table layout this release reads and writes. A release that changes the layout raises it and
#: migrates in ``open`` (raising the stored version on condition that it is still the old one).
SCHEMA_VERSION = 1
#: The score is kept to this many decimals in a rank: exact (no two different scores share a rank)
#: for shops with fewer than 10**10 reviews, since two such scores differ by at least 10**-20.
_SCORE_DIGITS = 20
#: How often a review write, or a shop's deletion, is retried when concurrent writers keep cancelling
#: its transaction.
MAX_REVIEW_ATTEMPTS = 25
#: The most items one TransactWriteItems may hold.
_MAX_TRANSACTION_ITEMS = 100

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def shop_pk(shop_id: str) -> str:
    """The partition of a shop's reviews and photos."""
    return SHOP_PREFIX + shop_id


def shop_key(shop_id: str) -> Dict[str, str]:
    """The key of the shop's own item, with its aggregates."""
    return {"pk": SHOPS_PK, "sk": SHOP_PREFIX + shop_id}


def schema_key() -> Dict[str, str]:
    return {"pk": SCHEMA_PK, "sk": SCHEMA_SK}


def shop_item(shop: Shop) -> Dict[str, Any]:
    item: Dict[str, Any] = {
        **shop_key(shop.id),
        "id": shop.id,
        "name": shop.name,
        "address": shop.address,
        "review_count": shop.review_count,
        "star_sum": shop.star_sum,
        "created_at": timestamp(shop.created_at),
    }
    if shop.latitude is not None and shop.longitude is not None:
        item["latitude"] = Decimal(repr(shop.latitude))
        item["longitude"] = Decimal(repr(shop.longitude))
    return item


def rank_sort_key(star_sum: int, review_count: int, shop_id: str) -> str:
    """A sort key whose string order is the ranking: score and review count descending, id ascending."""
    scaled_score = (PRIOR_STAR_TOTAL + star_sum) * 10**_SCORE_DIGITS // (PRIOR_WEIGHT + review_count)
    # Complements to 10**k - 1 keep every field at a fixed width, so larger values sort first.
    return f"{RANK_PREFIX}{10**22 - 1 - scaled_score:022d}#{10**13 - 1 - review_count:013d}#{shop_id}"


def rank_key(shop: Shop) -> Dict[str, str]:
    return {"pk": RANKED_PK, "sk": rank_sort_key(shop.star_sum, shop.review_count, shop.id)}


def rank_item(shop: Shop) -> Dict[str, Any]:
    """The shop's entry in the ranked listing: a copy of the shop, under its rank."""
    return {**shop_item(shop), **rank_key(shop)}


def review_item(review: Review) -> Dict[str, Any]:
    item: Dict[str, Any] = {
        "pk": shop_pk(review.shop_id),
        "sk": REVIEW_PREFIX + review.user,
        "user": review.user,
        "stars": review.stars,
        "created_at": timestamp(review.created_at),
        "updated_at": timestamp(review.updated_at),
    }
    if review.text is not None:
        item["text"] = review.text
    return item


def photo_item(photo: Photo) -> Dict[str, Any]:
    created_at = timestamp(photo.created_at)
    return {
        "pk": shop_pk(photo.shop_id),
        "sk": f"{PHOTO_PREFIX}{created_at}#{photo.id}",
        "id": photo.id,
        "key": photo.key,
        "content_type": photo.content_type,
        "size": photo.size,
        "created_at": created_at,
    }


def _shop_from(item: Dict[str, Any]) -> Shop:
    latitude = item.get("latitude")
    longitude = item.get("longitude")
    return Shop(
        id=item["id"],
        name=item["name"],
        address=item["address"],
        latitude=float(latitude) if latitude is not None else None,
        longitude=float(longitude) if longitude is not None else None,
        review_count=int(item["review_count"]),
        star_sum=int(item["star_sum"]),
        created_at=datetime.fromisoformat(item["created_at"]),
    )


def _review_from(shop_id: str, item: Dict[str, Any]) -> Review:
    return Review(
        shop_id=shop_id,
        user=item["user"],
        stars=int(item["stars"]),
        text=item.get("text"),
        created_at=datetime.fromisoformat(item["created_at"]),
        updated_at=datetime.fromisoformat(item["updated_at"]),
    )


def _photo_from(shop_id: str, item: Dict[str, Any]) -> Photo:
    return Photo(
        id=item["id"],
        shop_id=shop_id,
        key=item["key"],
        content_type=item["content_type"],
        size=int(item["size"]),
        created_at=datetime.fromisoformat(item["created_at"]),
    )


def _wire(item: Dict[str, Any]) -> Dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in item.items()}


def _plain(item: Dict[str, Any]) -> Dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def _partition(pk: str) -> Dict[str, Any]:
    """Query parameters for every item of one partition."""
    return {"KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": _wire({":pk": pk})}


def _error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def _lost_a_race(error: ClientError) -> bool:
    """True when a transaction was cancelled because another writer changed what it was conditioned on."""
    code = _error_code(error)
    if code == "TransactionCanceledException":
        reasons = {reason.get("Code") for reason in error.response.get("CancellationReasons", [])}
        return bool(reasons & {"ConditionalCheckFailed", "TransactionConflict"})
    return code == "TransactionConflictException"


def _back_off(attempt: int) -> None:
    time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))  # noqa: S311 - jitter, not crypto


#: Each call of the datastore is timed, and counted when it fails (metrics.py).
_measured = dependency_call("dynamodb")


class DynamoDbRepository(Repository):
    def __init__(
        self,
        table: str,
        region: str,
        endpoint_url: Optional[str] = None,
        cursors: Optional[CursorCodec] = None,
    ) -> None:
        self.table = table
        self._cursors = cursors if cursors is not None else CursorCodec()
        self._opened = False
        self._client = aws.session().client(
            "dynamodb",
            region_name=region,
            endpoint_url=endpoint_url,
            config=Config(
                retries={"mode": "standard", "max_attempts": 4},
                connect_timeout=3,
                read_timeout=10,
                max_pool_connections=50,
            ),
        )

    def open(self) -> None:
        """Check the table's schema version (putting it when missing), then give every shop its rank
        entry and drop entries of ranks shops have left.

        The table is created by the deployment (an Ansible role). Each change is conditional on the
        shop still having the counts read here, so a host starting beside busy ones never undoes a
        concurrent review's move. SchemaTooNew, before anything is written, when a newer release
        wrote the table; StorageUnavailable when the table does not answer.
        """
        if self._opened:
            return
        try:
            version = self._schema_version(consistent=True)
            if version is None:
                version = self._put_schema_version()
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"the DynamoDB table {self.table} has schema version {version}, newer than this "
                    f"release knows ({SCHEMA_VERSION}); run a newer coffee-ranker-api"
                )
            self._add_missing_rank_entries()
        except (ClientError, BotoCoreError) as error:
            raise StorageUnavailable(f"DynamoDB table {self.table} does not answer: {error}") from error
        self._opened = True

    def _schema_version(self, consistent: bool) -> Optional[int]:
        """The version the schema item holds; None without one (a table no release has opened yet,
        or one written before the item existed)."""
        response = self._client.get_item(
            TableName=self.table, Key=_wire(schema_key()), ConsistentRead=consistent
        )
        if "Item" not in response:
            return None
        version = _plain(response["Item"]).get(SCHEMA_VERSION_ATTRIBUTE)
        if not isinstance(version, Decimal) or version != version.to_integral_value() or version < 1:
            raise StorageUnavailable(
                f"DynamoDB table {self.table} has a schema item ({SCHEMA_PK} / {SCHEMA_SK}) whose "
                f"{SCHEMA_VERSION_ATTRIBUTE} is not a whole number from 1 up"
            )
        return int(version)

    def _put_schema_version(self) -> int:
        """Put this release's version if the table has none yet; the version the table then holds."""
        try:
            self._client.put_item(
                TableName=self.table,
                Item=_wire({**schema_key(), SCHEMA_VERSION_ATTRIBUTE: SCHEMA_VERSION}),
                ConditionExpression="attribute_not_exists(pk)",
            )
            return SCHEMA_VERSION
        except ClientError as error:
            if _error_code(error) != "ConditionalCheckFailedException":
                raise
        # Another host put one since we looked (perhaps a newer release's): that one counts.
        version = self._schema_version(consistent=True)
        if version is None:  # deleted again at once: nothing sensible to check against
            raise StorageUnavailable(f"DynamoDB table {self.table} lost its schema item while opening")
        return version

    def _add_missing_rank_entries(self) -> None:
        shops = {
            rank_sort_key(shop.star_sum, shop.review_count, shop.id): shop
            for shop in map(_shop_from, self._query_all(**_partition(SHOPS_PK)))
        }
        entries = {item["sk"]: item for item in self._query_all(**_partition(RANKED_PK))}
        for sort_key, shop in shops.items():
            if sort_key not in entries:
                self._if_counts(
                    shop.id, "=", shop, {"Put": {"TableName": self.table, "Item": _wire(rank_item(shop))}}
                )
        for sort_key, item in entries.items():
            if sort_key not in shops:
                stale = _shop_from(item)
                self._if_counts(
                    stale.id,
                    "<>",
                    stale,
                    {"Delete": {"TableName": self.table, "Key": _wire(rank_key(stale))}},
                )

    def _if_counts(self, shop_id: str, comparison: str, shop: Shop, change: Dict[str, Any]) -> None:
        """Apply ``change`` if the shop's counts still are (=) or are no longer (<>) those of ``shop``."""
        condition = (
            "review_count = :n AND star_sum = :s"
            if comparison == "="
            else "attribute_not_exists(pk) OR review_count <> :n OR star_sum <> :s"
        )
        check = {
            "TableName": self.table,
            "Key": _wire(shop_key(shop_id)),
            "ConditionExpression": condition,
            "ExpressionAttributeValues": _wire({":n": shop.review_count, ":s": shop.star_sum}),
        }
        try:
            self._client.transact_write_items(TransactItems=[{"ConditionCheck": check}, change])
        except ClientError as error:
            if _error_code(error) not in ("TransactionCanceledException", "TransactionConflictException"):
                raise

    def close(self) -> None:
        self._client.close()

    @_measured
    def ping(self) -> None:
        """StorageUnavailable unless the table answers and holds no newer schema than this release's
        (a newer release migrated it meanwhile, or a newer table was restored under this name)."""
        # GetItem rather than DescribeTable: it needs no permission beyond what the service uses.
        try:
            version = self._schema_version(consistent=False)
        except (ClientError, BotoCoreError) as error:
            raise StorageUnavailable(f"DynamoDB table {self.table} does not answer: {error}") from error
        if version is not None and version > SCHEMA_VERSION:
            raise StorageUnavailable(
                f"DynamoDB table {self.table} has schema version {version}, newer than this release "
                f"knows ({SCHEMA_VERSION})"
            )

    # -- shops -----------------------------------------------------------------------------------

    @_measured
    def create_shop(self, new_shop: NewShop) -> Shop:
        shop = Shop(
            id=uuid.uuid4().hex,
            name=new_shop.name,
            address=new_shop.address,
            latitude=new_shop.latitude,
            longitude=new_shop.longitude,
            review_count=0,
            star_sum=0,
            created_at=utc_now(),
        )
        self._client.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": _wire(shop_item(shop)),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {"Put": {"TableName": self.table, "Item": _wire(rank_item(shop))}},
            ]
        )
        return shop

    @_measured
    def get_shop(self, shop_id: str) -> Shop:
        response = self._client.get_item(
            TableName=self.table, Key=_wire(shop_key(shop_id)), ConsistentRead=True
        )
        if "Item" not in response:
            raise ShopNotFound(shop_id)
        return _shop_from(_plain(response["Item"]))

    @_measured
    def list_shops(self, limit: int, cursor: Optional[str] = None) -> Page[Shop]:
        params = _partition(RANKED_PK)
        if cursor is not None:
            position = self._cursors.decode("shops", cursor, {"s": int, "n": int, "id": str})
            params["ExclusiveStartKey"] = _wire(
                {"pk": RANKED_PK, "sk": rank_sort_key(position["s"], position["n"], position["id"])}
            )
        shops = [_shop_from(item) for item in self._query(limit + 1, **params)]
        return cursors.page_of(
            shops,
            limit,
            lambda last: self._cursors.encode(
                "shops", {"s": last.star_sum, "n": last.review_count, "id": last.id}
            ),
        )

    def _query_all(self, **params: Any) -> List[Dict[str, Any]]:
        items: List[Dict[str, Any]] = []
        paginator = self._client.get_paginator("query")
        for page in paginator.paginate(TableName=self.table, **params):
            items.extend(_plain(item) for item in page.get("Items", []))
        return items

    def _query(self, limit: int, **params: Any) -> List[Dict[str, Any]]:
        """Up to ``limit`` items of a Query, following pages that DynamoDB cut at 1 MB."""
        items: List[Dict[str, Any]] = []
        while len(items) < limit:
            try:
                response = self._client.query(TableName=self.table, Limit=limit - len(items), **params)
            except ClientError as error:
                # A forged cursor can name a start key DynamoDB refuses.
                if _error_code(error) == "ValidationException" and "ExclusiveStartKey" in params:
                    raise InvalidCursor() from error
                raise
            items.extend(_plain(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return items

    @_measured
    def delete_shop(self, shop_id: str) -> List[str]:
        """The shop and its rank entry first, in one transaction: from then on no review or photo can
        be added (their transactions need the shop), so the sweep of its partition that follows finds
        every review and photo record it ever got."""
        for attempt in range(MAX_REVIEW_ATTEMPTS):
            shop = self.get_shop(shop_id)
            try:
                self._client.transact_write_items(
                    TransactItems=[
                        {
                            "Delete": {
                                "TableName": self.table,
                                "Key": _wire(shop_key(shop_id)),
                                # The rank entry below is the one of these counts.
                                "ConditionExpression": "review_count = :n AND star_sum = :s",
                                "ExpressionAttributeValues": _wire(
                                    {":n": shop.review_count, ":s": shop.star_sum}
                                ),
                            }
                        },
                        {"Delete": {"TableName": self.table, "Key": _wire(rank_key(shop))}},
                    ]
                )
                break
            except ClientError as error:
                if not _lost_a_race(error):
                    raise
            # A review moved the shop's rank meanwhile (or another delete won): read it again.
            _back_off(attempt)
        else:
            raise StorageUnavailable(f"Could not delete shop {shop_id}: too many concurrent writers.")
        items = self._query_all(**_partition(shop_pk(shop_id)))
        # Plain deletes (no conditions), up to the 100 items a transaction may hold; the same
        # dynamodb:DeleteItem permission as the deletes above, none more.
        for start in range(0, len(items), _MAX_TRANSACTION_ITEMS):
            self._client.transact_write_items(
                TransactItems=[
                    {"Delete": {"TableName": self.table, "Key": _wire({"pk": item["pk"], "sk": item["sk"]})}}
                    for item in items[start : start + _MAX_TRANSACTION_ITEMS]
                ]
            )
        return [item["key"] for item in items if item["sk"].startswith(PHOTO_PREFIX)]

    # -- reviews ---------------------------------------------------------------------------------

    @_measured
    def put_review(self, shop_id: str, user: str, stars: int, text: Optional[str]) -> ReviewWrite:
        key = {"pk": shop_pk(shop_id), "sk": REVIEW_PREFIX + user}
        for attempt in range(MAX_REVIEW_ATTEMPTS):
            shop = self.get_shop(shop_id)
            stored = self._client.get_item(TableName=self.table, Key=_wire(key), ConsistentRead=True)
            previous = _plain(stored["Item"]) if "Item" in stored else None
            now = utc_now()
            review = Review(
                shop_id=shop_id,
                user=user,
                stars=stars,
                text=text,
                created_at=datetime.fromisoformat(previous["created_at"]) if previous else now,
                updated_at=now,
            )
            if previous is None:
                put_condition: Dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
                moved = replace(shop, review_count=shop.review_count + 1, star_sum=shop.star_sum + stars)
            else:
                put_condition = {
                    "ConditionExpression": "stars = :read",
                    "ExpressionAttributeValues": _wire({":read": previous["stars"]}),
                }
                moved = replace(shop, star_sum=shop.star_sum + stars - int(previous["stars"]))
            items: List[Dict[str, Any]] = [
                {"Put": {"TableName": self.table, "Item": _wire(review_item(review)), **put_condition}}
            ]
            if moved == shop:  # same stars again: the shop and its rank stay
                items.append(
                    {
                        "ConditionCheck": {
                            "TableName": self.table,
                            "Key": _wire(shop_key(shop_id)),
                            "ConditionExpression": "attribute_exists(pk)",
                        }
                    }
                )
            else:
                items += [
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": _wire(shop_key(shop_id)),
                            "UpdateExpression": "SET review_count = :n, star_sum = :s",
                            "ConditionExpression": "review_count = :read_n AND star_sum = :read_s",
                            "ExpressionAttributeValues": _wire(
                                {
                                    ":n": moved.review_count,
                                    ":s": moved.star_sum,
                                    ":read_n": shop.review_count,
                                    ":read_s": shop.star_sum,
                                }
                            ),
                        }
                    },
                    {"Delete": {"TableName": self.table, "Key": _wire(rank_key(shop))}},
                    {"Put": {"TableName": self.table, "Item": _wire(rank_item(moved))}},
                ]
            try:
                self._client.transact_write_items(TransactItems=items)
                return ReviewWrite(review=review, replaced=previous is not None)
            except ClientError as error:
                if not _lost_a_race(error):
                    raise
            # Another writer changed this review or this shop between our reads and our write: read
            # again (a shop deleted meanwhile is ShopNotFound there).
            _back_off(attempt)
        raise StorageUnavailable(
            f"Could not save the review of {user} for shop {shop_id}: too many concurrent writers."
        )

    @_measured
    def list_reviews(self, shop_id: str, limit: int, cursor: Optional[str] = None) -> Page[Review]:
        self.get_shop(shop_id)
        params: Dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": _wire({":pk": shop_pk(shop_id), ":prefix": REVIEW_PREFIX}),
        }
        if cursor is not None:
            user = self._cursors.decode(f"reviews/{shop_id}", cursor, {"user": str})["user"]
            params["ExclusiveStartKey"] = _wire({"pk": shop_pk(shop_id), "sk": REVIEW_PREFIX + user})
        reviews = [_review_from(shop_id, item) for item in self._query(limit + 1, **params)]
        return cursors.page_of(
            reviews, limit, lambda last: self._cursors.encode(f"reviews/{shop_id}", {"user": last.user})
        )

    # -- photos ----------------------------------------------------------------------------------

    @_measured
    def add_photo(self, photo: Photo) -> None:
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": self.table,
                            "Key": _wire(shop_key(photo.shop_id)),
                            "ConditionExpression": "attribute_exists(pk)",
                        }
                    },
                    {"Put": {"TableName": self.table, "Item": _wire(photo_item(photo))}},
                ]
            )
        except ClientError as error:
            if _error_code(error) == "TransactionCanceledException":
                reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    raise ShopNotFound(photo.shop_id) from error
            raise

    @_measured
    def list_photos(self, shop_id: str, limit: int, cursor: Optional[str] = None) -> Page[Photo]:
        self.get_shop(shop_id)
        params: Dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": _wire({":pk": shop_pk(shop_id), ":prefix": PHOTO_PREFIX}),
        }
        if cursor is not None:
            position = self._cursors.decode(f"photos/{shop_id}", cursor, {"t": str, "id": str})
            params["ExclusiveStartKey"] = _wire(
                {"pk": shop_pk(shop_id), "sk": f"{PHOTO_PREFIX}{position['t']}#{position['id']}"}
            )
        photos = [_photo_from(shop_id, item) for item in self._query(limit + 1, **params)]
        return cursors.page_of(
            photos,
            limit,
            lambda last: self._cursors.encode(
                f"photos/{shop_id}", {"t": timestamp(last.created_at), "id": last.id}
            ),
        )
