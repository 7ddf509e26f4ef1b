"""Shops: create one, list them in ranking order, read one, delete one."""

from fastapi import APIRouter, Depends, Request, Response

from coffee_ranker.api.deps import (
    Cursor,
    Limit,
    ShopId,
    StorageDep,
    read,
    reads_of,
    require_writer,
    storage_of,
)
from coffee_ranker.api.schemas import ShopCreate, ShopOut, ShopPage
from coffee_ranker.domain.models import NewShop
from coffee_ranker.domain.shops import delete_shop_with_photos
from coffee_ranker.problems import problem_responses

router = APIRouter(tags=["shops"])


@router.post(
    "/shops",
    status_code=201,
    response_model=ShopOut,
    summary="Add a coffee shop",
    dependencies=[Depends(require_writer)],
    responses=problem_responses(400, 401, 422),
)
def create_shop(body: ShopCreate, storage: StorageDep, response: Response) -> ShopOut:
    shop = storage.repository.create_shop(
        NewShop(name=body.name, address=body.address, latitude=body.latitude, longitude=body.longitude)
    )
    response.headers["Location"] = f"/shops/{shop.id}"
    return ShopOut.of(shop)


@router.get(
    "/shops",
    response_model=ShopPage,
    summary="Shops, best first",
    description=(
        "Ordered by the Bayesian score (highest first), then by review count (most first), then by id."
    ),
    responses={304: {"description": "Not Modified (If-None-Match)"}, **problem_responses(400, 422)},
)
async def list_shops(request: Request, limit: Limit = 20, cursor: Cursor = None) -> Response:
    storage = storage_of(request)

    async def page() -> dict:
        shops = await read(storage, storage.repository.list_shops, limit, cursor)
        return {"items": [ShopOut.plain(shop) for shop in shops.items], "next_cursor": shops.next_cursor}

    return await reads_of(request).read(request, storage, ("shops", limit, cursor), page)


@router.get(
    "/shops/{shop_id}",
    response_model=ShopOut,
    summary="One shop",
    responses={304: {"description": "Not Modified (If-None-Match)"}, **problem_responses(404)},
)
async def get_shop(request: Request, shop_id: ShopId) -> Response:
    storage = storage_of(request)

    async def shop() -> dict:
        return ShopOut.plain(await read(storage, storage.repository.get_shop, shop_id))

    return await reads_of(request).read(request, storage, ("shop", shop_id), shop)


@router.delete(
    "/shops/{shop_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a shop with its reviews and photos",
    description=(
        "The shop, its reviews, its photos' records and their files in the bucket. In a versioned bucket "
        "a file's earlier versions stay until the bucket's lifecycle rules expire them."
    ),
    dependencies=[Depends(require_writer)],
    responses=problem_responses(401, 404),
)
def delete_shop(shop_id: ShopId, storage: StorageDep) -> Response:
    delete_shop_with_photos(storage.repository, storage.object_store, shop_id)
    return Response(status_code=204)
