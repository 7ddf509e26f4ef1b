"""Reviews: one per user per shop; writing again replaces the earlier one."""

from fastapi import APIRouter, Depends, Response

from coffee_ranker.api.deps import Cursor, Limit, ShopId, StorageDep, User, require_writer
from coffee_ranker.api.schemas import ReviewIn, ReviewOut, ReviewPage
from coffee_ranker.problems import problem_responses

router = APIRouter(tags=["reviews"])


@router.put(
    "/shops/{shop_id}/reviews/{user}",
    status_code=200,
    response_model=ReviewOut,
    summary="Write a user's review of a shop",
    description="201 when the user had not reviewed the shop yet, 200 when the review replaced theirs.",
    dependencies=[Depends(require_writer)],
    responses={201: {"model": ReviewOut, "description": "Created"}, **problem_responses(400, 401, 404, 422)},
)
def put_review(
    shop_id: ShopId, user: User, body: ReviewIn, storage: StorageDep, response: Response
) -> ReviewOut:
    written = storage.repository.put_review(shop_id, user, body.stars, body.text)
    if not written.replaced:
        response.status_code = 201
    return ReviewOut.of(written.review)


@router.get(
    "/shops/{shop_id}/reviews",
    response_model=ReviewPage,
    summary="A shop's reviews, by user",
    responses=problem_responses(400, 404, 422),
)
def list_reviews(
    shop_id: ShopId, storage: StorageDep, limit: Limit = 20, cursor: Cursor = None
) -> ReviewPage:
    page = storage.repository.list_reviews(shop_id, limit, cursor)
    return ReviewPage(items=[ReviewOut.of(review) for review in page.items], next_cursor=page.next_cursor)
