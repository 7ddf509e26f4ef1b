"""Reviews over HTTP, on both backends: one per user per shop, aggregates and ranking."""

import pytest

from tests.support import AUTH
from tests.test_api_shops import assert_problem


def test_a_second_review_by_the_same_user_replaces_the_first(client, shop):
    url = f"/shops/{shop['id']}/reviews/alice"
    first = client.put(url, json={"stars": 2, "text": "Burnt."}, headers=AUTH)
    assert first.status_code == 201
    second = client.put(url, json={"stars": 5, "text": "New roaster, great now."}, headers=AUTH)
    assert second.status_code == 200
    assert second.json()["created_at"] == first.json()["created_at"]
    assert second.json()["updated_at"] > first.json()["updated_at"]

    reviews = client.get(f"/shops/{shop['id']}/reviews").json()["items"]
    assert [(r["user"], r["stars"], r["text"]) for r in reviews] == [("alice", 5, "New roaster, great now.")]
    after = client.get(f"/shops/{shop['id']}").json()
    assert (after["review_count"], after["average_stars"]) == (1, 5.0)
    assert after["score"] == pytest.approx((35 + 5) / 11)


def test_the_aggregates_follow_every_review(client, shop):
    for user, stars in [("a", 5), ("b", 4), ("c", 1), ("a", 3), ("b", 4)]:
        client.put(f"/shops/{shop['id']}/reviews/{user}", json={"stars": stars}, headers=AUTH)
    after = client.get(f"/shops/{shop['id']}").json()
    assert after["review_count"] == 3
    assert after["average_stars"] == pytest.approx((3 + 4 + 1) / 3)
    assert after["score"] == pytest.approx((35 + 8) / 13)


def test_one_five_star_review_does_not_outrank_fifty_reviews_averaging_four_point_eight(client):
    lucky = client.post("/shops", json={"name": "Lucky", "address": "A"}, headers=AUTH).json()["id"]
    steady = client.post("/shops", json={"name": "Steady", "address": "B"}, headers=AUTH).json()["id"]
    client.put(f"/shops/{lucky}/reviews/fan", json={"stars": 5}, headers=AUTH)
    for n in range(50):
        client.put(
            f"/shops/{steady}/reviews/user{n:02d}", json={"stars": 4 if n % 5 == 0 else 5}, headers=AUTH
        )
    ranked = client.get("/shops").json()["items"]
    assert [shop["id"] for shop in ranked] == [steady, lucky]
    assert ranked[0]["average_stars"] == pytest.approx(4.8)


@pytest.mark.parametrize(
    "body", [{"stars": 0}, {"stars": 6}, {"stars": "5"}, {"stars": 4.5}, {}, {"stars": 3, "text": "x" * 4001}]
)
def test_invalid_stars_or_text_are_refused(client, shop, body):
    assert_problem(client.put(f"/shops/{shop['id']}/reviews/alice", json=body, headers=AUTH), 422)
    assert client.get(f"/shops/{shop['id']}").json()["review_count"] == 0


def test_a_review_needs_the_token(client, shop):
    response = client.put(f"/shops/{shop['id']}/reviews/alice", json={"stars": 5})
    assert_problem(response, 401)
    assert client.get(f"/shops/{shop['id']}").json()["review_count"] == 0


def test_reviewing_an_unknown_shop_is_not_found(client):
    assert_problem(client.put(f"/shops/{'a' * 32}/reviews/alice", json={"stars": 5}, headers=AUTH), 404)
    assert_problem(client.get(f"/shops/{'a' * 32}/reviews"), 404)


def test_an_unusable_user_name_is_refused(client, shop):
    assert_problem(
        client.put(f"/shops/{shop['id']}/reviews/-dash-first", json={"stars": 5}, headers=AUTH), 422
    )


def test_reviews_are_paginated_by_user_without_gaps_or_repeats(client, shop):
    users = [f"user{n:02d}" for n in range(7)]
    for n, user in enumerate(reversed(users)):
        client.put(f"/shops/{shop['id']}/reviews/{user}", json={"stars": 1 + n % 5}, headers=AUTH)
    seen, cursor = [], None
    for _ in range(10):
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/shops/{shop['id']}/reviews", params=params).json()
        assert len(page["items"]) <= 3
        seen.extend(review["user"] for review in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == users


def test_a_shops_listing_cursor_is_refused_for_reviews(client, shop):
    for n in range(3):
        client.post("/shops", json={"name": f"S{n}", "address": "A"}, headers=AUTH)
    cursor = client.get("/shops", params={"limit": 1}).json()["next_cursor"]
    assert cursor
    assert_problem(client.get(f"/shops/{shop['id']}/reviews", params={"cursor": cursor}), 400)
