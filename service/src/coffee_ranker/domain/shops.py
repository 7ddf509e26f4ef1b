"""Deleting a shop: its records from the database, then its photos' files from the object store."""

import logging

from coffee_ranker.domain.errors import StorageUnavailable
from coffee_ranker.domain.ports import ObjectStore, Repository

log = logging.getLogger("coffee_ranker")


def delete_shop_with_photos(repository: Repository, object_store: ObjectStore, shop_id: str) -> None:
    """Delete the shop, its reviews and its photos, files included; ShopNotFound for an unknown shop.

    Records first: a photo uploaded meanwhile then finds no shop and removes its own file (store_photo),
    and a file whose deletion fails is one that no record points at any more, never a record whose
    file is gone. Such a file is logged by its key, and the error answered.
    """
    keys = repository.delete_shop(shop_id)
    for done, key in enumerate(keys):
        try:
            object_store.delete(key)
        except StorageUnavailable:
            left = " ".join(keys[done:])
            log.warning("shop %s deleted, but not the files of its photos: %s", shop_id, left)
            raise
