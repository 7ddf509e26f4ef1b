"""Shops: create one, list them in ranking order, read one."""

from fastapi import APIRouter, Depends, Response

from coffee_ranker.api.deps import Cursor, Limit, ShopId, StorageDep, require_writer
from coffee_ranker.api.schemas import ShopCreate, ShopOut, ShopPage
from coffee_ranker.domain.models import NewShop
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
    responses=problem_responses(400, 422),
)
def list_shops(storage: StorageDep, limit: Limit = 20, cursor: Cursor = None) -> ShopPage:
    page = storage.repository.list_shops(limit, cursor)
    return ShopPage(items=[ShopOut.of(shop) for shop in page.items], next_cursor=page.next_cursor)


@router.get(
    "/shops/{shop_id}", response_model=ShopOut, summary="One shop", responses=problem_responses(404, 422)
)
def get_shop(shop_id: ShopId, storage: StorageDep) -> ShopOut:
    return ShopOut.of(storage.repository.get_shop(shop_id))
