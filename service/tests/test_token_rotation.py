"""Rotating the write token host by host never fails a request.

The operator's job rolls the hosts behind the load balancer through three phases, so two
neighbouring configurations serve side by side at any moment:

    before:   RANKER_WRITE_TOKEN=old
    phase 1:  RANKER_WRITE_TOKEN=old, RANKER_WRITE_TOKEN_ALSO_ACCEPTED=new
    phase 2:  RANKER_WRITE_TOKEN=new, RANKER_WRITE_TOKEN_ALSO_ACCEPTED=old
    phase 3:  RANKER_WRITE_TOKEN=new

Two hosts of neighbouring phases share one database here: a cursor one hands out is accepted by the
other, and a write token they both accept works on both.
"""

import contextlib
import hmac
import logging
import uuid

import httpx
import pytest

from coffee_ranker.api import deps
from coffee_ranker.api.deps import write_token_accepted
from coffee_ranker.app import create_app
from coffee_ranker.edge import EdgeMiddleware
from coffee_ranker.settings import Settings
from coffee_ranker.storage.cursors import CursorCodec, key_from_secret
from coffee_ranker.storage.factory import build_storage
from tests.support import create_table, serve_in_thread, service_environ
from tests.test_api_shops import assert_problem

OLD = "old-write-token-0123456789"
NEW = "new-write-token-9876543210"
PHASES = {
    "before": {"RANKER_WRITE_TOKEN": OLD},
    "phase 1": {"RANKER_WRITE_TOKEN": OLD, "RANKER_WRITE_TOKEN_ALSO_ACCEPTED": NEW},
    "phase 2": {"RANKER_WRITE_TOKEN": NEW, "RANKER_WRITE_TOKEN_ALSO_ACCEPTED": OLD},
    "phase 3": {"RANKER_WRITE_TOKEN": NEW},
}
#: Neighbouring phases, and the tokens both of them accept.
NEIGHBOURS = [
    ("before", "phase 1", [OLD]),
    ("phase 1", "phase 2", [OLD, NEW]),
    ("phase 2", "phase 3", [NEW]),
]
NEIGHBOUR_IDS = [f"{first} and {second}" for first, second, _ in NEIGHBOURS]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def phase_settings(backend, aws, tmp_path):
    """Settings of a host in a phase, read from the environment; every host shares one database."""
    shared = service_environ(aws.endpoint, tmp_path)
    del shared["RANKER_WRITE_TOKEN"]
    if backend == "dynamodb":
        table = f"ranker-{uuid.uuid4().hex[:12]}"
        create_table(aws.client("dynamodb"), table)
        shared.update(RANKER_DYNAMODB_TABLE=table, RANKER_DYNAMODB_ENDPOINT_URL=aws.endpoint)

    def settings_of(phase: str) -> Settings:
        return Settings.from_env({**shared, **PHASES[phase]})

    return settings_of


@pytest.fixture
def hosts(phase_settings):
    """Serves one host per phase given, each with its own settings and storage; their base URLs."""
    with contextlib.ExitStack() as stack:

        def serve(*phases: str):
            urls = []
            for phase in phases:
                settings = phase_settings(phase)
                storage = build_storage(settings)
                storage.open()
                stack.callback(storage.close)
                urls.append(stack.enter_context(serve_in_thread(create_app(settings, storage))))
            return urls

        yield serve


@pytest.mark.parametrize(("first", "second", "both_accept"), NEIGHBOURS, ids=NEIGHBOUR_IDS)
def test_neighbouring_phases_accept_each_others_cursors(hosts, first, second, both_accept, caplog):
    url_a, url_b = hosts(first, second)
    token = both_accept[0]
    shop = None
    for index in range(3):
        shop = httpx.post(f"{url_a}/shops", json={"name": f"S{index}", "address": "A"}, headers=bearer(token))
        assert shop.status_code == 201, shop.text
    for user in ("ann", "bob", "cid"):
        review = httpx.put(
            f"{url_a}/shops/{shop.json()['id']}/reviews/{user}", json={"stars": 4}, headers=bearer(token)
        )
        assert review.status_code == 201, review.text
    every_shop = [item["id"] for item in httpx.get(f"{url_a}/shops").json()["items"]]
    reviews = f"/shops/{shop.json()['id']}/reviews"

    for handed_out_by, followed_on in ((url_a, url_b), (url_b, url_a)):
        page = httpx.get(f"{handed_out_by}/shops", params={"limit": 1}).json()
        rest = httpx.get(f"{followed_on}/shops", params={"limit": 5, "cursor": page["next_cursor"]})
        assert rest.status_code == 200, rest.text
        assert [item["id"] for item in page["items"] + rest.json()["items"]] == every_shop

        page = httpx.get(f"{handed_out_by}{reviews}", params={"limit": 2}).json()
        rest = httpx.get(f"{followed_on}{reviews}", params={"limit": 2, "cursor": page["next_cursor"]})
        assert rest.status_code == 200, rest.text
        assert [item["user"] for item in rest.json()["items"]] == ["cid"]

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert OLD not in logged
    assert NEW not in logged


@pytest.mark.parametrize(("first", "second", "both_accept"), NEIGHBOURS, ids=NEIGHBOUR_IDS)
def test_a_token_both_neighbours_accept_writes_on_either(hosts, first, second, both_accept):
    urls = hosts(first, second)
    for url in urls:
        for token in both_accept:
            response = httpx.post(f"{url}/shops", json={"name": "S", "address": "A"}, headers=bearer(token))
            assert response.status_code == 201, (url, response.text)


@pytest.mark.parametrize(
    ("phase", "accepted", "refused"),
    [
        ("before", [OLD], [NEW]),
        ("phase 1", [OLD, NEW], []),
        ("phase 2", [NEW, OLD], []),
        ("phase 3", [NEW], [OLD]),
    ],
)
def test_each_phase_accepts_exactly_its_tokens(hosts, phase, accepted, refused):
    (url,) = hosts(phase)
    for token in accepted:
        response = httpx.post(f"{url}/shops", json={"name": "S", "address": "A"}, headers=bearer(token))
        assert response.status_code == 201, response.text
    for token in [*refused, "stranger-token-0123456789", OLD + NEW]:
        response = httpx.post(f"{url}/shops", json={"name": "S", "address": "A"}, headers=bearer(token))
        problem = assert_problem(response, 401)
        assert OLD not in response.text
        assert NEW not in response.text
        assert "Bearer" in problem["detail"]
    assert len(httpx.get(f"{url}/shops").json()["items"]) == len(accepted)


def test_new_cursors_are_signed_with_the_write_token_only(hosts):
    """Phase 2 signs with the new token's key, so phase 3 (new only) accepts its cursors and the
    hosts still on the old token alone (before the rotation) do not: they are not neighbours."""
    before, phase_2, phase_3 = hosts("before", "phase 2", "phase 3")
    for index in range(2):
        httpx.post(f"{phase_2}/shops", json={"name": f"S{index}", "address": "A"}, headers=bearer(NEW))
    cursor = httpx.get(f"{phase_2}/shops", params={"limit": 1}).json()["next_cursor"]
    assert httpx.get(f"{phase_3}/shops", params={"cursor": cursor}).status_code == 200
    assert_problem(httpx.get(f"{before}/shops", params={"cursor": cursor}), 400)


def test_a_cursor_signed_with_neither_token_is_refused(hosts):
    (url,) = hosts("phase 1")
    for index in range(2):
        httpx.post(f"{url}/shops", json={"name": f"S{index}", "address": "A"}, headers=bearer(OLD))
    stranger = CursorCodec(key_from_secret("stranger-token-0123456789")).encode(
        "shops", {"s": 0, "n": 0, "id": "a"}
    )
    assert_problem(httpx.get(f"{url}/shops", params={"cursor": stranger}), 400)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_route_dependency_accepts_both_tokens_without_the_edge(phase_settings, aws):
    """The routes' own check (there for a server without the edge middleware) agrees with the edge."""
    settings = phase_settings("phase 2")
    storage = build_storage(settings)
    storage.open()
    app = create_app(settings, storage)
    app.user_middleware = [entry for entry in app.user_middleware if entry.cls is not EdgeMiddleware]
    try:
        with serve_in_thread(app) as url:
            for token in (NEW, OLD):
                response = httpx.post(
                    f"{url}/shops", json={"name": "S", "address": "A"}, headers=bearer(token)
                )
                assert response.status_code == 201, response.text
            response = httpx.post(
                f"{url}/shops", json={"name": "S", "address": "A"}, headers=bearer("x" * 20)
            )
            assert_problem(response, 401)
            assert "x-request-id" not in response.headers, "served without the edge"
    finally:
        storage.close()


def test_the_token_check_compares_with_every_accepted_token(monkeypatch):
    compared = []
    real = hmac.compare_digest

    def counting(offered, token):
        compared.append(token)
        return real(offered, token)

    monkeypatch.setattr(deps.hmac, "compare_digest", counting)
    assert write_token_accepted(OLD.encode(), [OLD.encode(), NEW.encode()])
    assert compared == [OLD.encode(), NEW.encode()], "a match on the first does not skip the second"
    assert write_token_accepted(NEW.encode(), [OLD.encode(), NEW.encode()])
    assert not write_token_accepted(b"", [OLD.encode(), NEW.encode()])
    assert not write_token_accepted(OLD.encode(), [])


def test_no_token_reaches_the_startup_log(phase_settings, caplog):
    settings = phase_settings("phase 1")
    with caplog.at_level(logging.DEBUG):
        storage = build_storage(settings)
        storage.open()
        try:
            with serve_in_thread(create_app(settings, storage)) as url:
                httpx.post(
                    f"{url}/shops",
                    json={"name": "S", "address": "A"},
                    headers=bearer("wrong-token-0123456789"),
                )
        finally:
            storage.close()
    logged = "\n".join(record.getMessage() for record in caplog.records) + repr(settings)
    assert OLD not in logged
    assert NEW not in logged
