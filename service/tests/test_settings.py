"""Settings: every missing or invalid RANKER_* variable is named in a clear, one-line error."""

import os
import subprocess
import sys

import pytest

from coffee_ranker.settings import (
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_METRICS_PORT,
    DEFAULT_PORT,
    Settings,
    SettingsError,
)


@pytest.fixture
def valid(tmp_path) -> dict:
    return {
        "RANKER_BUCKET": "coffee-photos",
        "RANKER_AWS_REGION": "eu-central-1",
        "RANKER_WRITE_TOKEN": "a-long-enough-write-token",
        "RANKER_DB_PATH": str(tmp_path / "ranker.sqlite3"),
    }


def problems_of(environ: dict) -> list:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(environ)
    return raised.value.problems


def test_minimal_settings_take_the_documented_defaults(valid, tmp_path):
    settings = Settings.from_env(valid)
    assert settings.host == "0.0.0.0"
    assert settings.port == DEFAULT_PORT == 11373
    assert settings.metrics_port == DEFAULT_METRICS_PORT == 11374
    assert settings.workers == 1
    assert settings.max_upload_bytes == DEFAULT_MAX_UPLOAD_BYTES == 10 * 1024 * 1024
    assert settings.storage_backend == "sqlite"
    assert settings.db_path == str(tmp_path / "ranker.sqlite3")
    assert settings.s3_endpoint_url is None
    assert settings.media_base_url is None
    assert settings.media_prefix == "media/"
    assert (settings.max_json_bytes, settings.max_image_pixels) == (64 * 1024, 40_000_000)
    assert (settings.log_format, settings.cors_origins) == ("text", ())
    assert settings.write_token_also_accepted is None
    assert settings.accepted_write_tokens == (valid["RANKER_WRITE_TOKEN"],)


def test_every_variable_is_read(valid):
    valid.update(
        RANKER_S3_ENDPOINT_URL="http://127.0.0.1:5000/",
        RANKER_HOST="127.0.0.1",
        RANKER_PORT="8080",
        RANKER_MAX_UPLOAD_BYTES="1024",
        RANKER_MEDIA_BASE_URL="https://media.example.org/",
        RANKER_MEDIA_PREFIX="public/photos/",
        RANKER_DYNAMODB_TABLE="coffee-ranker",
        RANKER_DYNAMODB_ENDPOINT_URL="http://127.0.0.1:5000",
        RANKER_MAX_JSON_BYTES="2048",
        RANKER_MAX_IMAGE_PIXELS="1000000",
        RANKER_LOG_FORMAT="json",
        RANKER_CORS_ORIGINS="https://app.example.com, http://localhost:3000",
        RANKER_WRITE_TOKEN_ALSO_ACCEPTED="the-other-write-token",
        RANKER_METRICS_PORT="9464",
        RANKER_WORKERS="4",
    )
    settings = Settings.from_env(valid)
    assert (settings.metrics_port, settings.workers) == (9464, 4)
    assert settings.write_token_also_accepted == "the-other-write-token"
    assert settings.accepted_write_tokens == ("a-long-enough-write-token", "the-other-write-token")
    assert (settings.max_json_bytes, settings.max_image_pixels, settings.log_format) == (
        2048,
        1000000,
        "json",
    )
    assert settings.cors_origins == ("https://app.example.com", "http://localhost:3000")
    assert settings.s3_endpoint_url == "http://127.0.0.1:5000"
    assert (settings.host, settings.port, settings.max_upload_bytes) == ("127.0.0.1", 8080, 1024)
    assert settings.media_base_url == "https://media.example.org"
    assert settings.media_prefix == "public/photos/"
    assert settings.storage_backend == "dynamodb"
    assert settings.dynamodb_endpoint_url == "http://127.0.0.1:5000"


@pytest.mark.parametrize("name", ["RANKER_BUCKET", "RANKER_AWS_REGION", "RANKER_WRITE_TOKEN"])
@pytest.mark.parametrize("absent", ["unset", "empty"])
def test_a_missing_required_variable_is_named(valid, name, absent):
    if absent == "unset":
        del valid[name]
    else:
        valid[name] = "  "
    problems = problems_of(valid)
    assert len(problems) == 1
    assert problems[0].startswith(f"{name} is required")


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("RANKER_BUCKET", "Not_A_Bucket", "not an S3 bucket name"),
        ("RANKER_AWS_REGION", "europe", "not an AWS region"),
        ("RANKER_WRITE_TOKEN", "short", "at least 16 characters"),
        ("RANKER_WRITE_TOKEN", "has a space in it here", "printable ASCII"),
        ("RANKER_WRITE_TOKEN_ALSO_ACCEPTED", "short", "at least 16 characters"),
        ("RANKER_WRITE_TOKEN_ALSO_ACCEPTED", "has a space in it here", "printable ASCII"),
        ("RANKER_WRITE_TOKEN_ALSO_ACCEPTED", "caf\u00e9-is-not-ascii-here", "printable ASCII"),
        ("RANKER_S3_ENDPOINT_URL", "127.0.0.1:5000", "not an http:// or https:// URL"),
        ("RANKER_MEDIA_BASE_URL", "ftp://media.example.org", "not an http:// or https:// URL"),
        ("RANKER_MEDIA_PREFIX", "media", "not a key prefix such as media/"),
        ("RANKER_MEDIA_PREFIX", "/", "not a key prefix such as media/"),
        ("RANKER_MEDIA_PREFIX", "/media/", "not a key prefix such as media/"),
        ("RANKER_MEDIA_PREFIX", "media//", "not a key prefix such as media/"),
        ("RANKER_MEDIA_PREFIX", "../", "not a key prefix such as media/"),
        ("RANKER_MEDIA_PREFIX", "media photos/", "not a key prefix such as media/"),
        ("RANKER_DYNAMODB_TABLE", "x", "not a DynamoDB table name"),
        ("RANKER_HOST", "not a host!", "neither an IP address nor a host name"),
        ("RANKER_PORT", "eighty", "not a whole number"),
        ("RANKER_PORT", "70000", "not a TCP port"),
        ("RANKER_METRICS_PORT", "70000", "not a TCP port (1-65535), nor 0 for no metrics"),
        ("RANKER_METRICS_PORT", "-1", "not a TCP port"),
        ("RANKER_METRICS_PORT", "metrics", "not a whole number"),
        ("RANKER_WORKERS", "0", "not a number of worker processes from 1 to 16"),
        ("RANKER_WORKERS", "17", "not a number of worker processes from 1 to 16"),
        ("RANKER_WORKERS", "two", "not a whole number"),
        ("RANKER_MAX_UPLOAD_BYTES", "0", "must be a positive number"),
        ("RANKER_MAX_UPLOAD_BYTES", "10MB", "not a whole number"),
        ("RANKER_DB_PATH", "/no/such/directory/ranker.sqlite3", "does not exist"),
        ("RANKER_MAX_JSON_BYTES", "-1", "must be a positive number"),
        ("RANKER_MAX_IMAGE_PIXELS", "many", "not a whole number"),
        ("RANKER_LOG_FORMAT", "xml", "not one of text, json"),
        ("RANKER_CORS_ORIGINS", "*", "not an origin"),
        ("RANKER_CORS_ORIGINS", "https://app.example.com/path", "not an origin"),
        ("RANKER_CORS_ORIGINS", "https://ok.example.com,app.example.com", "not an origin"),
    ],
)
def test_an_invalid_variable_is_named_with_the_reason(valid, name, value, says):
    valid[name] = value
    problems = problems_of(valid)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{name} is invalid")
    assert says in problems[0]


def test_metrics_port_zero_serves_no_metrics(valid):
    valid["RANKER_METRICS_PORT"] = "0"
    assert Settings.from_env(valid).metrics_port is None


def test_the_metrics_need_a_port_other_than_the_api(valid):
    valid.update(RANKER_PORT="8080", RANKER_METRICS_PORT="8080")
    (problem,) = problems_of(valid)
    assert problem.startswith("RANKER_METRICS_PORT is 8080, the same as RANKER_PORT")
    # The default collides when the API is moved onto it: said so, rather than failing to bind.
    valid.update(RANKER_PORT=str(DEFAULT_METRICS_PORT), RANKER_METRICS_PORT="")
    (problem,) = problems_of(valid)
    assert problem.startswith(
        f"RANKER_METRICS_PORT is not set and its default {DEFAULT_METRICS_PORT} is RANKER_PORT"
    )
    valid["RANKER_METRICS_PORT"] = "0"
    assert Settings.from_env(valid).port == DEFAULT_METRICS_PORT


def test_a_dynamodb_endpoint_without_a_table_is_refused(valid):
    valid["RANKER_DYNAMODB_ENDPOINT_URL"] = "http://127.0.0.1:5000"
    (problem,) = problems_of(valid)
    assert problem.startswith("RANKER_DYNAMODB_ENDPOINT_URL is set but RANKER_DYNAMODB_TABLE is not")


def test_the_db_path_is_not_needed_with_dynamodb(valid):
    valid["RANKER_DB_PATH"] = "/no/such/directory/ranker.sqlite3"
    valid["RANKER_DYNAMODB_TABLE"] = "coffee-ranker"
    assert Settings.from_env(valid).storage_backend == "dynamodb"


def test_the_default_db_path_needs_its_directory(valid):
    del valid["RANKER_DB_PATH"]
    if os.path.isdir("/var/lib/coffee-ranker"):
        pytest.skip("this machine has the default state directory")
    (problem,) = problems_of(valid)
    assert problem.startswith("RANKER_DB_PATH is not set and the directory of its default")


def test_all_problems_are_reported_at_once():
    problems = problems_of({"RANKER_PORT": "0", "RANKER_DB_PATH": "/tmp/x.sqlite3"})
    named = sorted(problem.split()[0] for problem in problems)
    assert named == ["RANKER_AWS_REGION", "RANKER_BUCKET", "RANKER_PORT", "RANKER_WRITE_TOKEN"]


def test_an_empty_second_token_counts_as_unset(valid):
    valid["RANKER_WRITE_TOKEN_ALSO_ACCEPTED"] = " "
    settings = Settings.from_env(valid)
    assert settings.write_token_also_accepted is None
    assert settings.accepted_write_tokens == (valid["RANKER_WRITE_TOKEN"],)


def test_a_second_token_equal_to_the_first_is_a_configuration_problem(valid):
    valid["RANKER_WRITE_TOKEN_ALSO_ACCEPTED"] = valid["RANKER_WRITE_TOKEN"]
    valid["RANKER_PORT"] = "eighty"
    problems = problems_of(valid)
    assert [problem.split()[0] for problem in problems] == ["RANKER_PORT", "RANKER_WRITE_TOKEN_ALSO_ACCEPTED"]
    assert problems[1].startswith("RANKER_WRITE_TOKEN_ALSO_ACCEPTED is the same as RANKER_WRITE_TOKEN")
    assert valid["RANKER_WRITE_TOKEN"] not in " ".join(problems), "the token is not echoed"


def test_an_invalid_token_is_not_echoed(valid):
    valid["RANKER_WRITE_TOKEN"] = "secret with space"
    valid["RANKER_WRITE_TOKEN_ALSO_ACCEPTED"] = "secret-too-short"[:12]
    problems = problems_of(valid)
    assert len(problems) == 2
    assert "secret" not in " ".join(problems)


def test_the_tokens_never_appear_in_the_settings_repr(valid):
    assert valid["RANKER_WRITE_TOKEN"] not in repr(Settings.from_env(valid))
    valid["RANKER_WRITE_TOKEN_ALSO_ACCEPTED"] = "the-other-write-token"
    shown = repr(Settings.from_env(valid))
    assert valid["RANKER_WRITE_TOKEN"] not in shown
    assert "the-other-write-token" not in shown
    assert "write_token_also_accepted=<hidden>" in shown, "only whether a rotation is under way"


def test_the_command_exits_with_one_line_per_bad_variable_and_no_traceback(tmp_path):
    environ = {key: value for key, value in os.environ.items() if not key.startswith("RANKER_")}
    environ.update(RANKER_BUCKET="coffee-photos", RANKER_PORT="eighty", RANKER_DB_PATH=str(tmp_path / "x"))
    finished = subprocess.run(
        [sys.executable, "-m", "coffee_ranker"], env=environ, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 2
    lines = finished.stderr.strip().splitlines()
    assert "Traceback" not in finished.stderr
    assert lines == [
        "coffee-ranker-api: configuration error: RANKER_AWS_REGION is required but not set "
        "(the AWS region, e.g. eu-west-1)",
        "coffee-ranker-api: configuration error: RANKER_WRITE_TOKEN is required but not set "
        "(the bearer token that authorises writes)",
        "coffee-ranker-api: configuration error: RANKER_PORT is invalid: 'eighty' is not a whole number",
    ]
