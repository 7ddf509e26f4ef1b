import os
import uuid
from pathlib import Path

import httpx
import hypothesis
import pytest
from hypothesis.database import DirectoryBasedExampleDatabase

from coffee_ranker.app import create_app
from coffee_ranker.settings import Settings
from coffee_ranker.storage.factory import build_storage
from tests.support import (
    AUTH,
    BUCKET,
    REGION,
    EmbeddedAws,
    create_table,
    public_read_policy,
    serve_in_thread,
    service_environ,
)

# Hypothesis keeps its examples in service/.hypothesis, wherever pytest is started from.
hypothesis.settings.register_profile(
    "service",
    database=DirectoryBasedExampleDatabase(str(Path(__file__).resolve().parent.parent / ".hypothesis")),
)
hypothesis.settings.load_profile("service")


@pytest.fixture(scope="session", autouse=True)
def _dummy_aws_credentials():
    """Credentials for the embedded AWS only; no file or instance metadata may leak in."""
    names = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {name: os.environ.get(name) for name in [*names, "AWS_PROFILE", "AWS_SESSION_TOKEN"]}
    os.environ.update(names)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def aws(_dummy_aws_credentials):
    embedded = EmbeddedAws().start()
    s3 = embedded.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_policy(Bucket=BUCKET, Policy=public_read_policy(BUCKET))
    yield embedded
    embedded.stop()


def settings_for(backend: str, aws: EmbeddedAws, tmp_path, **overrides: str) -> Settings:
    environ = service_environ(aws.endpoint, tmp_path)
    if backend == "dynamodb":
        table = f"ranker-{uuid.uuid4().hex[:12]}"
        create_table(aws.client("dynamodb"), table)
        environ.update(RANKER_DYNAMODB_TABLE=table, RANKER_DYNAMODB_ENDPOINT_URL=aws.endpoint)
    environ.update(overrides)
    return Settings.from_env(environ)


@pytest.fixture(params=["sqlite", "dynamodb"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def settings(backend, aws, tmp_path) -> Settings:
    return settings_for(backend, aws, tmp_path)


@pytest.fixture
def storage(settings):
    built = build_storage(settings)
    built.open()
    yield built
    built.close()


@pytest.fixture
def api_url(settings, storage):
    with serve_in_thread(create_app(settings, storage)) as url:
        yield url


@pytest.fixture
def client(api_url):
    with httpx.Client(base_url=api_url, timeout=30) as http:
        yield http


@pytest.fixture
def shop(client) -> dict:
    response = client.post("/shops", json={"name": "Kaffeebar", "address": "Marktplatz 3"}, headers=AUTH)
    assert response.status_code == 201, response.text
    return response.json()
