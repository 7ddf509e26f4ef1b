"""Photos of a shop: upload one (streamed to S3), list them with their public URLs."""

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from coffee_ranker.api.deps import (
    Cursor,
    Limit,
    ShopId,
    StorageDep,
    get_settings,
    read,
    reads_of,
    require_writer,
    storage_of,
)
from coffee_ranker.api.schemas import PhotoOut, PhotoPage
from coffee_ranker.api.uploads import MULTIPART_REQUEST_BODY, clean_photo, receive_photo
from coffee_ranker.domain.photos import store_photo
from coffee_ranker.problems import problem_responses

router = APIRouter(tags=["photos"])


@router.post(
    "/shops/{shop_id}/photos",
    status_code=201,
    response_model=PhotoOut,
    summary="Upload a photo of a shop",
    description=(
        "A multipart/form-data body with the image in the field `file`. JPEG, PNG and WebP are "
        "accepted, recognised by their content and decoded: a file that does not decode answers 415. "
        "The photo is stored re-encoded in its own format, upright, without EXIF (GPS), XMP or other "
        "metadata. Larger than RANKER_MAX_UPLOAD_BYTES or RANKER_MAX_IMAGE_PIXELS answers 413."
    ),
    dependencies=[Depends(require_writer)],
    openapi_extra=MULTIPART_REQUEST_BODY,
    responses=problem_responses(400, 401, 404, 413, 415, 422),
)
async def upload_photo(shop_id: ShopId, request: Request, storage: StorageDep) -> PhotoOut:
    # Refuse an unknown shop before reading a possibly large body.
    await run_in_threadpool(storage.repository.get_shop, shop_id)
    settings = get_settings(request)
    received = await receive_photo(request, settings.max_upload_bytes)
    try:
        cleaned = await run_in_threadpool(clean_photo, received, settings.max_image_pixels)
    finally:
        received.discard()
    try:
        photo = await run_in_threadpool(
            store_photo,
            storage.repository,
            storage.object_store,
            shop_id,
            cleaned.path,
            cleaned.size,
            cleaned.image_type,
            settings.media_prefix,
        )
    finally:
        cleaned.discard()
    return PhotoOut.of(photo, storage.object_store.public_url(photo.key))


@router.get(
    "/shops/{shop_id}/photos",
    response_model=PhotoPage,
    summary="A shop's photos, oldest first",
    responses={304: {"description": "Not Modified (If-None-Match)"}, **problem_responses(400, 404, 422)},
)
async def list_photos(
    request: Request, shop_id: ShopId, limit: Limit = 20, cursor: Cursor = None
) -> Response:
    storage = storage_of(request)

    async def page() -> dict:
        photos = await read(storage, storage.repository.list_photos, shop_id, limit, cursor)
        items = [PhotoOut.plain(photo, storage.object_store.public_url(photo.key)) for photo in photos.items]
        return {"items": items, "next_cursor": photos.next_cursor}

    return await reads_of(request).read(request, storage, ("photos", shop_id, limit, cursor), page)
