"""Builds the storage the settings ask for."""

from dataclasses import dataclass

from coffee_ranker.domain.ports import ObjectStore, Repository
from coffee_ranker.settings import Settings
from coffee_ranker.storage.cursors import CursorCodec, key_from_secret
from coffee_ranker.storage.dynamodb import DynamoDbRepository
from coffee_ranker.storage.s3 import S3ObjectStore
from coffee_ranker.storage.sqlite import SqliteRepository


@dataclass
class Storage:
    repository: Repository
    object_store: ObjectStore

    def open(self) -> None:
        self.repository.open()

    def close(self) -> None:
        self.repository.close()
        self.object_store.close()


def build_storage(settings: Settings) -> Storage:
    repository: Repository
    # Signed with RANKER_WRITE_TOKEN's key; during a rotation the other token's key is accepted too,
    # so a cursor handed out by a host one phase ahead or behind still works here.
    codec = CursorCodec(
        key_from_secret(settings.write_token),
        [key_from_secret(token) for token in settings.accepted_write_tokens[1:]],
    )
    if settings.dynamodb_table:
        repository = DynamoDbRepository(
            settings.dynamodb_table, settings.aws_region, settings.dynamodb_endpoint_url, codec
        )
    else:
        repository = SqliteRepository(settings.db_path, codec)
    object_store = S3ObjectStore(
        settings.bucket, settings.aws_region, settings.s3_endpoint_url, settings.media_base_url
    )
    return Storage(repository=repository, object_store=object_store)
