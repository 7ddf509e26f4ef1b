"""Concurrent reviews of one shop, through a real uvicorn server, never corrupt its aggregates."""

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support import AUTH

WRITERS = 20


def run_together(count: int, work) -> list:
    """Run ``work(index)`` on ``count`` threads released at the same instant."""
    start = threading.Barrier(count)

    def worker(index: int):
        start.wait()
        return work(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(worker, range(count)))


def test_twenty_writers_reviewing_one_shop_at_once_leave_the_exact_count_and_sum(api_url, shop):
    url = f"{api_url}/shops/{shop['id']}/reviews"

    def review(index: int) -> int:
        with httpx.Client(timeout=60) as client:
            return client.put(
                f"{url}/writer{index:02d}", json={"stars": 1 + index % 5}, headers=AUTH
            ).status_code

    assert run_together(WRITERS, review) == [201] * WRITERS
    after = httpx.get(f"{api_url}/shops/{shop['id']}").json()
    assert after["review_count"] == WRITERS
    assert after["average_stars"] * WRITERS == sum(1 + index % 5 for index in range(WRITERS))


def test_writers_racing_to_replace_the_same_reviews_keep_the_sum_equal_to_the_reviews(api_url, shop):
    # Twenty writers, four users: every review is replaced concurrently several times over.
    url = f"{api_url}/shops/{shop['id']}/reviews"

    def review(index: int) -> list:
        with httpx.Client(timeout=60) as client:
            return [
                client.put(
                    f"{url}/user{(index + round_) % 4}",
                    json={"stars": 1 + (index + round_) % 5},
                    headers=AUTH,
                ).status_code
                for round_ in range(3)
            ]

    statuses = [status for statuses in run_together(WRITERS, review) for status in statuses]
    assert statuses.count(201) == 4, "each of the four users was created exactly once"
    assert set(statuses) == {200, 201}
    reviews = httpx.get(url, params={"limit": 100}).json()["items"]
    after = httpx.get(f"{api_url}/shops/{shop['id']}").json()
    assert after["review_count"] == len(reviews) == 4
    assert after["average_stars"] * 4 == sum(review["stars"] for review in reviews)
