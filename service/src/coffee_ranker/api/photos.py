"""Photos of a shop: upload one (streamed to S3), list them with their public URLs."""

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from coffee_ranker.api.deps import Cursor, Limit, ShopId, StorageDep, get_settings, require_writer
from coffee_ranker.api.schemas import PhotoOut, PhotoPage
from coffee_ranker.api.uploads import MULTIPART_REQUEST_BODY, receive_photo
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
        "accepted, recognised by their content; larger than RANKER_MAX_UPLOAD_BYTES answers 413."
    ),
    dependencies=[Depends(require_writer)],
    openapi_extra=MULTIPART_REQUEST_BODY,
    responses=problem_responses(400, 401, 404, 413, 415, 422),
)
async def upload_photo(shop_id: ShopId, request: Request, storage: StorageDep) -> PhotoOut:
    # Refuse an unknown shop before reading a possibly large body.
    await run_in_threadpool(storage.repository.get_shop, shop_id)
    received = await receive_photo(request, get_settings(request).max_upload_bytes)
    try:
        photo = await run_in_threadpool(
            store_photo,
            storage.repository,
            storage.object_store,
            shop_id,
            received.path,
            received.size,
            received.image_type,
        )
    finally:
        received.discard()
    return PhotoOut.of(photo, storage.object_store.public_url(photo.key))


@router.get(
    "/shops/{shop_id}/photos",
    response_model=PhotoPage,
    summary="A shop's photos, oldest first",
    responses=problem_responses(400, 404, 422),
)
def list_photos(shop_id: ShopId, storage: StorageDep, limit: Limit = 20, cursor: Cursor = None) -> PhotoPage:
    page = storage.repository.list_photos(shop_id, limit, cursor)
    return PhotoPage(
        items=[PhotoOut.of(photo, storage.object_store.public_url(photo.key)) for photo in page.items],
        next_cursor=page.next_cursor,
    )
