"""The OpenAPI document is truthful: schemathesis generates requests from it, on both backends,
and every response must be documented, match its schema and never be a server error."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from coffee_ranker.app import create_app
from coffee_ranker.domain.models import NewShop
from tests.support import AUTH

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: Requests generated per backend and mode, spread over all operations; bounded to keep the suite fast.
EXAMPLES = 300


@pytest.fixture
def api_schema(settings, storage, shop_for_schemathesis):
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(settings, storage))


@pytest.fixture
def shop_for_schemathesis(storage):
    """One shop with a review, so that generated requests sometimes find something."""
    shop = storage.repository.create_shop(NewShop(name="Seed", address="Seed Street 1"))
    storage.repository.put_review(shop.id, "seed", 4, "Seeded.")
    return shop


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_every_operation_answers_as_documented(api_schema, mode):
    # schemathesis' own pytest plugin does not support pytest 9 yet: drive its strategy with hypothesis.
    @given(case=api_schema.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def answers_as_documented(case):
        case.call_and_validate(headers=AUTH, checks=CHECKS)

    answers_as_documented()


def test_the_document_describes_every_route_and_problem_type(api_schema):
    document = api_schema.raw_schema
    assert set(document["paths"]) == {
        "/healthz",
        "/readyz",
        "/shops",
        "/shops/{shop_id}",
        "/shops/{shop_id}/reviews/{user}",
        "/shops/{shop_id}/reviews",
        "/shops/{shop_id}/photos",
    }
    upload = document["paths"]["/shops/{shop_id}/photos"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {"413", "415", "401"} <= set(upload["responses"])
    for path in document["paths"].values():
        for operation in path.values():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(response["content"]) == ["application/problem+json"], (status, operation)
