"""Storing a shop's photo: the file goes to the object store, its record to the database."""

import logging
import uuid

from coffee_ranker.domain.errors import StorageUnavailable
from coffee_ranker.domain.images import ImageType
from coffee_ranker.domain.models import Photo, utc_now
from coffee_ranker.domain.ports import ObjectStore, Repository

log = logging.getLogger("coffee_ranker")


def photo_key(prefix: str, shop_id: str, photo_id: str, image_type: ImageType) -> str:
    """Under ``prefix`` (RANKER_MEDIA_PREFIX), the one key prefix the bucket policy makes public."""
    return f"{prefix}shops/{shop_id}/{photo_id}.{image_type.extension}"


def store_photo(
    repository: Repository,
    object_store: ObjectStore,
    shop_id: str,
    path: str,
    size: int,
    image_type: ImageType,
    key_prefix: str,
) -> Photo:
    """Upload the photo spooled at ``path`` and record it; ShopNotFound if the shop went away."""
    photo_id = uuid.uuid4().hex
    photo = Photo(
        id=photo_id,
        shop_id=shop_id,
        key=photo_key(key_prefix, shop_id, photo_id, image_type),
        content_type=image_type.content_type,
        size=size,
        created_at=utc_now(),
    )
    object_store.put_file(photo.key, path, photo.content_type)
    try:
        repository.add_photo(photo)
    except BaseException:
        # No record points at the file: do not leave it behind in the bucket. If that fails too,
        # the original error is the one to answer with; the orphan is logged.
        try:
            object_store.delete(photo.key)
        except StorageUnavailable:
            log.warning("could not delete orphaned photo %s", photo.key, exc_info=True)
        raise
    return photo
