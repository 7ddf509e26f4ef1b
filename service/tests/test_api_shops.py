"""Shops over HTTP, on both storage backends: creation, validation, auth, ranking and pagination."""

import pytest

from tests.support import AUTH, WRITE_TOKEN

PROBLEM = "application/problem+json"


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    assert body["detail"].endswith("."), "detail is a sentence"
    return body


def test_a_created_shop_can_be_read_back(client):
    response = client.post(
        "/shops",
        json={"name": " Rösterei ", "address": "Hauptstraße 1", "latitude": 49.41, "longitude": 8.69},
        headers=AUTH,
    )
    assert response.status_code == 201
    created = response.json()
    assert response.headers["location"] == f"/shops/{created['id']}"
    assert created["name"] == "Rösterei"
    assert (created["review_count"], created["average_stars"], created["score"]) == (0, None, 3.5)
    fetched = client.get(f"/shops/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == created


def test_coordinates_are_kept_to_seven_decimals_on_every_backend(client):
    body = {"name": "Tiny", "address": "Null Island", "latitude": 1e-300, "longitude": -8.123456789}
    created = client.post("/shops", json=body, headers=AUTH).json()
    assert (created["latitude"], created["longitude"]) == (0.0, -8.1234568)
    fetched = client.get(f"/shops/{created['id']}").json()
    assert (fetched["latitude"], fetched["longitude"]) == (0.0, -8.1234568)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"address": "Somewhere 1"}, "name"),
        ({"name": "", "address": "Somewhere 1"}, "name"),
        ({"name": "A", "address": "B", "latitude": 91, "longitude": 0}, "latitude"),
        ({"name": "A", "address": "B", "latitude": 0, "longitude": -180.5}, "longitude"),
        ({"name": "A", "address": "B", "latitude": 10}, "latitude and longitude must be given together"),
        ({"name": "A\u0000", "address": "B"}, "control characters"),
        ({"name": "A", "address": "B", "owner": "me"}, "owner"),
    ],
)
def test_an_invalid_shop_is_refused_with_a_problem_naming_the_field(client, body, field):
    problem = assert_problem(client.post("/shops", json=body, headers=AUTH), 422)
    assert field in problem["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": f"Basic {WRITE_TOKEN}"},
        {"Authorization": f"Bearer {WRITE_TOKEN}x"},
    ],
    ids=["no header", "wrong token", "wrong scheme", "token plus one"],
)
def test_writing_without_the_token_is_unauthorized(client, headers):
    response = client.post("/shops", json={"name": "A", "address": "B"}, headers=headers)
    problem = assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization" in problem["detail"]
    assert client.get("/shops").json()["items"] == [], "nothing was written"


@pytest.mark.parametrize(
    "shop_id", ["0" * 32, "not-an-id", "F" * 32, "0" * 33, "%00", "x" * 2000], ids=lambda v: v[:12]
)
@pytest.mark.parametrize("suffix", ["", "/reviews", "/photos"])
def test_an_unknown_or_malformed_shop_id_is_not_found(client, shop_id, suffix):
    problem = assert_problem(client.get(f"/shops/{shop_id}{suffix}"), 404)
    assert problem["detail"] == "There is no coffee shop with this id.", "the id is not echoed"


def test_an_unknown_route_is_a_problem(client):
    assert_problem(client.get("/coffee"), 404)


def test_shops_are_listed_best_first_and_paginated_without_gaps(client):
    # Eleven shops; shop i gets i reviews of 5 stars, so more reviews means a higher score.
    ids = []
    for index in range(11):
        shop = client.post(
            "/shops", json={"name": f"Shop {index}", "address": "Street 1"}, headers=AUTH
        ).json()
        ids.append(shop["id"])
        for user in range(index):
            client.put(f"/shops/{shop['id']}/reviews/user{user}", json={"stars": 5}, headers=AUTH)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = client.get("/shops", params=params).json()
        seen.extend(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [shop["id"] for shop in seen] == list(reversed(ids))
    scores = [shop["score"] for shop in seen]
    assert scores == sorted(scores, reverse=True)


def test_equal_scores_are_ordered_by_review_count_then_id(client):
    created = [
        client.post("/shops", json={"name": f"Tie {n}", "address": "Street"}, headers=AUTH).json()["id"]
        for n in range(3)
    ]
    # Two reviews of 3.5 on average equal the prior exactly: score 3.5 like a shop without reviews.
    client.put(f"/shops/{created[0]}/reviews/ann", json={"stars": 3}, headers=AUTH)
    client.put(f"/shops/{created[0]}/reviews/bob", json={"stars": 4}, headers=AUTH)
    listed = [shop["id"] for shop in client.get("/shops").json()["items"]]
    assert listed == [created[0], *sorted(created[1:])]


@pytest.mark.parametrize("cursor", ["nonsense", "e30", "eyJsIjoicmV2aWV3cyIsInAiOnsidXNlciI6ImEifX0"])
def test_a_forged_cursor_is_a_bad_request(client, shop, cursor):
    problem = assert_problem(client.get("/shops", params={"cursor": cursor}), 400)
    assert "cursor" in problem["detail"]


@pytest.mark.parametrize("limit", [0, 101, "ten"])
def test_the_page_size_is_bounded(client, limit):
    assert_problem(client.get("/shops", params={"limit": limit}), 422)
