"""The embedded AWS's CloudFront distributions serve their S3 origin as CloudFront would (sandbox/cloudfront.py).

Each test talks to the CloudFront and S3 APIs only (boto3, endpoint our own server) and sends real HTTP to the
distribution's URL from ``<state>/cloudfront/<id>.json``: only what the bucket policy grants the distribution
through its origin access control is served, cached for the TTL the object and the cache policy give, gzipped
when the behaviour compresses. The unkind mode (SANDBOX_AWS_REALISM=1) adds the minutes a deployment takes,
here shortened to DEPLOY seconds, and CloudFront's refusals to delete what is still in use.
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest
from botocore.exceptions import ClientError
from conftest import EmbeddedAws, embedded_aws_server, wait_for

BUCKET = "coffee-media"
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
DEPLOY = 2.0  # cdn_deploy_delay of the unkind server, in seconds (AWS: minutes)
RECORD_KEYS = {"id", "arn", "domain_name", "aliases", "enabled", "status", "url", "server_pid"}


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def cache(self) -> str:
        return self.headers.get("X-Cache", "")


def request(url: str, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> Answer:
    """What a viewer gets from the distribution (no decompression, no redirects)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, path, body=b"{}" if method in ("POST", "PUT") else None, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def refuses_connections(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


class Stack:
    """A private media bucket and distributions in front of it, as roles/ would make them."""

    def __init__(self, aws: EmbeddedAws):
        self.aws, self.state = aws, aws.state
        self.cf, self.s3 = aws.client("cloudfront"), aws.client("s3")
        self.s3.create_bucket(Bucket=BUCKET)
        self.references = 0

    def put(self, key: str, body: bytes, content_type: str = "image/jpeg", **extra) -> None:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType=content_type, **extra)

    def access_control(self, signing: str = "always") -> str:
        self.references += 1
        config = {
            "Name": f"media-{self.references}",
            "SigningProtocol": "sigv4",
            "SigningBehavior": signing,
            "OriginAccessControlOriginType": "s3",
        }
        return self.cf.create_origin_access_control(OriginAccessControlConfig=config)["OriginAccessControl"]["Id"]

    def config(self, access_control: str | None, cache_policy: str = CACHING_OPTIMIZED, compress: bool = True) -> dict:
        self.references += 1
        origin = {
            "Id": "media",
            "DomainName": f"{BUCKET}.s3.us-east-1.amazonaws.com",
            "S3OriginConfig": {"OriginAccessIdentity": ""},
        }
        if access_control:
            origin["OriginAccessControlId"] = access_control
        return {
            "CallerReference": f"media-{self.references}",
            "Comment": "media photos",
            "Enabled": True,
            "Aliases": {"Quantity": 1, "Items": [f"media{self.references}.coffee.example"]},
            "Origins": {"Quantity": 1, "Items": [origin]},
            "DefaultCacheBehavior": {
                "TargetOriginId": "media",
                "ViewerProtocolPolicy": "redirect-to-https",
                "CachePolicyId": cache_policy,
                "Compress": compress,
            },
        }

    def distribution(self, access_control: str | None = "new", **settings) -> dict:
        """A new distribution (with a new OAC unless told which, or None for none)."""
        if access_control == "new":
            access_control = self.access_control()
        return self.cf.create_distribution(DistributionConfig=self.config(access_control, **settings))["Distribution"]

    def grant(self, *arns: str, extra: list[dict] | None = None) -> None:
        """The bucket policy of the OAC documentation: read media/ for these distributions only."""
        statements = [
            {
                "Sid": "AllowCloudFrontServicePrincipalReadOnly",
                "Effect": "Allow",
                "Principal": {"Service": "cloudfront.amazonaws.com"},
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{BUCKET}/media/*",
                "Condition": {"StringEquals": {"AWS:SourceArn": list(arns)}},
            },
            *(extra or []),
        ]
        self.s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": statements}))

    def record(self, distribution_id: str) -> dict:
        return json.loads((self.state / "cloudfront" / f"{distribution_id}.json").read_text())

    def url(self, distribution_id: str) -> str:
        return self.record(distribution_id)["url"]

    def update(self, distribution_id: str, **changes) -> dict:
        current = self.cf.get_distribution_config(Id=distribution_id)
        config = {**current["DistributionConfig"], **changes}
        return self.cf.update_distribution(Id=distribution_id, IfMatch=current["ETag"], DistributionConfig=config)[
            "Distribution"
        ]

    def delete(self, distribution_id: str) -> None:
        etag = self.cf.get_distribution(Id=distribution_id)["ETag"]
        self.cf.delete_distribution(Id=distribution_id, IfMatch=etag)


def _server(tmp_path_factory, realism: bool, **environment: str):
    state = tmp_path_factory.mktemp("state")
    with embedded_aws_server(realism=realism, SANDBOX_STATE_DIR=str(state), **environment) as aws:
        aws.state = state
        yield aws


@pytest.fixture(scope="module")
def kind_server(tmp_path_factory):
    yield from _server(tmp_path_factory, realism=False)


@pytest.fixture(scope="module")
def unkind_server(tmp_path_factory):
    yield from _server(tmp_path_factory, realism=True, SANDBOX_AWS_REALISM_CDN_DEPLOY_DELAY=str(DEPLOY))


@pytest.fixture
def stack(kind_server) -> Stack:
    """Plain moto with the data plane, emptied, with the media bucket."""
    kind_server.reset()
    return Stack(kind_server)


@pytest.fixture
def unkind(unkind_server) -> Stack:
    """The unkind mode, emptied, with the media bucket; deployments take DEPLOY seconds."""
    unkind_server.reset()
    unkind_server.realism(cdn_deploy_delay=DEPLOY)
    return Stack(unkind_server)


# --- the data plane (both modes; plain moto here) --------------------------------------------------------


def test_a_distribution_serves_the_photos_its_access_control_and_the_bucket_policy_grant(stack):
    stack.put("media/espresso.jpg", b"\xff\xd8 espresso photo", "image/jpeg")
    distribution = stack.distribution()
    stack.grant(distribution["ARN"])

    record = stack.record(distribution["Id"])
    assert set(record) == RECORD_KEYS
    assert record["id"] == distribution["Id"]
    assert record["arn"] == distribution["ARN"]
    assert record["domain_name"] == distribution["DomainName"]
    assert record["aliases"] == distribution["DistributionConfig"]["Aliases"]["Items"]
    assert record["enabled"] is True
    assert record["url"].startswith("http://127.0.0.1:")

    answer = request(record["url"], "/media/espresso.jpg")
    assert (answer.status, answer.body) == (200, b"\xff\xd8 espresso photo")
    assert answer.headers["Content-Type"] == "image/jpeg"
    assert answer.headers["ETag"] == stack.s3.head_object(Bucket=BUCKET, Key="media/espresso.jpg")["ETag"]
    assert answer.cache == "Miss from cloudfront"
    head = request(record["url"], "/media/espresso.jpg", "HEAD")
    assert (head.status, head.body, head.headers["Content-Length"]) == (200, b"", str(len(answer.body)))


def _no_policy(stack: Stack, distribution: dict) -> None:
    pass


def _policy_for_another_distribution(stack: Stack, distribution: dict) -> None:
    other = stack.distribution()
    stack.grant(other["ARN"])
    assert request(stack.url(other["Id"]), "/media/espresso.jpg").status == 200  # the policy itself works


def _origin_without_access_control(stack: Stack, distribution: dict) -> None:
    stack.grant(distribution["ARN"])
    origins = stack.cf.get_distribution_config(Id=distribution["Id"])["DistributionConfig"]["Origins"]
    origins["Items"][0]["OriginAccessControlId"] = ""
    stack.update(distribution["Id"], Origins=origins)


def _access_control_that_never_signs(stack: Stack, distribution: dict) -> None:
    stack.grant(distribution["ARN"])
    origins = stack.cf.get_distribution_config(Id=distribution["Id"])["DistributionConfig"]["Origins"]
    origins["Items"][0]["OriginAccessControlId"] = stack.access_control(signing="never")
    stack.update(distribution["Id"], Origins=origins)


def _a_deny_statement_wins(stack: Stack, distribution: dict) -> None:
    deny = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": f"arn:aws:s3:::{BUCKET}/media/espresso.*",
    }
    stack.grant(distribution["ARN"], extra=[deny])


@pytest.mark.parametrize(
    "setup",
    [
        _no_policy,
        _policy_for_another_distribution,
        _origin_without_access_control,
        _access_control_that_never_signs,
        _a_deny_statement_wins,
    ],
    ids=lambda setup: setup.__name__.strip("_").replace("_", " "),
)
def test_without_a_grant_to_this_distribution_s3_refuses_and_cloudfront_passes_the_403_on(stack, setup):
    stack.put("media/espresso.jpg", b"espresso photo")
    distribution = stack.distribution()
    setup(stack, distribution)

    answer = request(stack.url(distribution["Id"]), "/media/espresso.jpg")
    assert answer.status == 403
    assert answer.headers["Content-Type"] == "application/xml"
    assert b"<Code>AccessDenied</Code><Message>Access Denied</Message>" in answer.body
    assert answer.cache == "Error from cloudfront"


def test_a_missing_key_is_403_unless_the_distribution_may_list_the_bucket(stack):
    distribution = stack.distribution()
    stack.grant(distribution["ARN"])
    url = stack.url(distribution["Id"])
    assert request(url, "/media/missing.jpg").status == 403  # S3 hides what does not exist

    may_list = {
        "Effect": "Allow",
        "Principal": {"Service": "cloudfront.amazonaws.com"},
        "Action": "s3:ListBucket",
        "Resource": f"arn:aws:s3:::{BUCKET}",
        "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:cloudfront::*:distribution/*"}},
    }
    stack.grant(distribution["ARN"], extra=[may_list])
    answer = request(url, "/media/missing.jpg")
    assert answer.status == 404
    assert b"<Code>NoSuchKey</Code>" in answer.body


def test_the_bucket_itself_refuses_anonymous_readers_that_only_cloudfront_may_read(stack):
    stack.put("media/espresso.jpg", b"espresso photo")

    def anonymous() -> int:
        try:
            with urllib.request.urlopen(f"{stack.aws.endpoint}/{BUCKET}/media/espresso.jpg", timeout=10):
                return 200
        except urllib.error.HTTPError as error:
            return error.code

    assert anonymous() == 403  # no bucket policy: private, as on AWS
    distribution = stack.distribution()
    stack.grant(distribution["ARN"])
    # The policy names the CloudFront service principal only: still 403 from the bucket, as on AWS (moto
    # alone lets any Allow through: cloudfront.install_anonymous_bucket_policy), and 200 through the edge.
    assert anonymous() == 403
    assert request(stack.url(distribution["Id"]), "/media/espresso.jpg").status == 200
    s3 = stack.aws.client("s3")
    s3.put_bucket_policy(
        Bucket=BUCKET,
        Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/media/*",
        }]}),
    )  # fmt: skip
    assert anonymous() == 200  # a statement for everyone is public


def test_a_cached_photo_is_served_until_its_ttl_ends_whatever_the_origin_does(stack):
    stack.put("media/menu.jpg", b"menu v1", CacheControl="max-age=1")
    stack.put("media/logo.jpg", b"logo v1")  # nothing said: the policy's default TTL (CachingOptimized: a day)
    stack.put("media/beans.jpg", b"beans", CacheControl="max-age=1")
    distribution = stack.distribution()
    stack.grant(distribution["ARN"])
    url = stack.url(distribution["Id"])
    for path in ("/media/menu.jpg", "/media/logo.jpg", "/media/beans.jpg"):
        assert request(url, path).cache == "Miss from cloudfront"

    stack.put("media/menu.jpg", b"menu v2", CacheControl="max-age=1")
    stack.put("media/logo.jpg", b"logo v2")
    menu, logo = request(url, "/media/menu.jpg"), request(url, "/media/logo.jpg")
    assert (menu.body, menu.cache) == (b"menu v1", "Hit from cloudfront")
    assert (logo.body, logo.cache) == (b"logo v1", "Hit from cloudfront")
    assert menu.headers["Cache-Control"] == "max-age=1"
    assert menu.headers["Age"] == "0"

    time.sleep(1.2)
    menu, logo, beans = (
        request(url, "/media/menu.jpg"),
        request(url, "/media/logo.jpg"),
        request(url, "/media/beans.jpg"),
    )
    assert (menu.body, menu.cache) == (b"menu v2", "Miss from cloudfront")
    assert (logo.body, logo.cache) == (b"logo v1", "Hit from cloudfront")
    assert int(logo.headers["Age"]) >= 1
    assert (beans.body, beans.cache) == (b"beans", "RefreshHit from cloudfront")  # asked the origin: unchanged

    stack.cf.create_invalidation(
        DistributionId=distribution["Id"],
        InvalidationBatch={"Paths": {"Quantity": 1, "Items": ["/media/*"]}, "CallerReference": "logo-v2"},
    )
    logo = request(url, "/media/logo.jpg")
    assert (logo.body, logo.cache) == (b"logo v2", "Miss from cloudfront")


def test_caching_disabled_asks_the_origin_every_time(stack):
    stack.put("media/menu.jpg", b"menu v1", CacheControl="max-age=3600")
    distribution = stack.distribution(cache_policy=CACHING_DISABLED)
    stack.grant(distribution["ARN"])
    url = stack.url(distribution["Id"])
    assert request(url, "/media/menu.jpg").body == b"menu v1"
    stack.put("media/menu.jpg", b"menu v2", CacheControl="max-age=3600")
    answer = request(url, "/media/menu.jpg")
    assert (answer.body, answer.cache) == (b"menu v2", "Miss from cloudfront")


def test_compressible_objects_are_gzipped_for_viewers_that_accept_it(stack):
    menu = json.dumps([{"drink": f"espresso {n}", "price": 2.5} for n in range(100)]).encode()
    assert 1_000 <= len(menu) <= 10_000_000
    stack.put("media/menu.json", menu, "application/json")
    stack.put("media/small.json", b'{"drink": "espresso"}', "application/json")
    stack.put("media/photo.jpg", menu, "image/jpeg")
    distribution = stack.distribution()
    plain = stack.distribution(access_control=None, compress=False)  # same origin, Compress off
    stack.grant(distribution["ARN"])
    url = stack.url(distribution["Id"])
    gzip_please = {"Accept-Encoding": "gzip, deflate, br"}

    answer = request(url, "/media/menu.json", headers=gzip_please)
    assert answer.headers["Content-Encoding"] == "gzip"
    assert answer.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(answer.body) == menu
    assert int(answer.headers["Content-Length"]) == len(answer.body) < len(menu)
    assert answer.headers["ETag"].startswith('W/"')

    for path, headers in (
        ("/media/menu.json", {}),
        ("/media/small.json", gzip_please),
        ("/media/photo.jpg", gzip_please),
    ):
        answer = request(url, path, headers=headers)
        assert answer.status == 200
        assert "Content-Encoding" not in answer.headers, path
    public = {  # the distribution without OAC reads anonymously
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{BUCKET}/media/menu.json",
    }
    stack.grant(distribution["ARN"], extra=[public])
    answer = request(stack.url(plain["Id"]), "/media/menu.json", headers=gzip_please)
    assert (answer.status, answer.body) == (200, menu)
    assert "Content-Encoding" not in answer.headers


def test_only_cachable_methods_pass_and_a_disabled_distribution_answers_403(stack):
    stack.put("media/espresso.jpg", b"espresso photo")
    distribution = stack.distribution()
    stack.grant(distribution["ARN"])
    url = stack.url(distribution["Id"])
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        answer = request(url, "/media/espresso.jpg", method)
        assert answer.status == 403, method
        assert b"not configured to allow the HTTP request method" in answer.body
        assert answer.cache == "Error from cloudfront"
    assert stack.s3.get_object(Bucket=BUCKET, Key="media/espresso.jpg")["Body"].read() == b"espresso photo"

    stack.update(distribution["Id"], Enabled=False)
    assert stack.record(distribution["Id"])["enabled"] is False
    assert stack.record(distribution["Id"])["url"] == url  # the port is the distribution's for its lifetime
    assert request(url, "/media/espresso.jpg").status == 403
    stack.update(distribution["Id"], Enabled=True)
    assert request(url, "/media/espresso.jpg").status == 200


def test_an_origin_that_is_not_an_s3_bucket_answers_502(stack):
    config = stack.config(None)
    (origin,) = config["Origins"]["Items"]
    del origin["S3OriginConfig"]
    origin["DomainName"] = "api.coffee.example"
    origin["CustomOriginConfig"] = {"HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "https-only"}
    distribution = stack.cf.create_distribution(DistributionConfig=config)["Distribution"]
    answer = request(stack.url(distribution["Id"]), "/menu?lang=en")
    assert (answer.status, answer.cache) == (502, "Error from cloudfront")


def test_deleting_a_distribution_removes_its_record_and_closes_its_port(stack):
    distribution = stack.distribution()
    url = stack.url(distribution["Id"])
    stack.update(distribution["Id"], Enabled=False)
    stack.delete(distribution["Id"])
    assert not (stack.state / "cloudfront" / f"{distribution['Id']}.json").exists()
    assert refuses_connections(url)


def test_a_reset_stops_every_distribution(stack):
    urls = [stack.url(stack.distribution()["Id"]) for _ in range(2)]
    stack.aws.reset()
    assert list((stack.state / "cloudfront").glob("*.json")) == []
    assert all(refuses_connections(url) for url in urls)


def test_origin_access_control_id_and_s3_origin_config_round_trip(stack):
    access_control = stack.access_control()
    distribution = stack.distribution(access_control)
    for answer in (
        distribution["DistributionConfig"],
        stack.cf.get_distribution(Id=distribution["Id"])["Distribution"]["DistributionConfig"],
        stack.cf.get_distribution_config(Id=distribution["Id"])["DistributionConfig"],
    ):
        (origin,) = answer["Origins"]["Items"]
        assert origin["OriginAccessControlId"] == access_control
        assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}

    without = stack.distribution(access_control=None)
    (origin,) = stack.cf.get_distribution_config(Id=without["Id"])["DistributionConfig"]["Origins"]["Items"]
    assert origin["OriginAccessControlId"] == ""  # as AWS answers for an origin without one

    with pytest.raises(ClientError) as excinfo:
        stack.cf.delete_origin_access_control(Id="E000000000000")
    assert excinfo.value.response["Error"]["Code"] == "NoSuchOriginAccessControl"  # moto: a 500 (KeyError)


def test_without_the_unkind_mode_moto_deploys_at_the_first_read_and_deletes_at_once(stack):
    access_control = stack.access_control()
    distribution = stack.distribution(access_control)
    assert distribution["Status"] == "InProgress"
    assert stack.record(distribution["Id"])["status"] == "InProgress"
    assert stack.cf.get_distribution(Id=distribution["Id"])["Distribution"]["Status"] == "Deployed"
    wait_for(lambda: stack.record(distribution["Id"])["status"] == "Deployed", 3, "the record to say Deployed")
    assert request(stack.url(distribution["Id"]), "/media/espresso.jpg").status == 403  # served at once

    stack.cf.delete_origin_access_control(Id=access_control)  # still named by the origin: moto does not mind
    stack.delete(distribution["Id"])  # enabled: moto does not mind either
    assert stack.cf.list_distributions()["DistributionList"]["Quantity"] == 0


# --- the unkind mode --------------------------------------------------------------------------------------


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def statuses(stack: Stack, distribution_id: str) -> set[str]:
    """What GetDistribution, ListDistributions and the record say of the distribution's status."""
    listed = stack.cf.list_distributions()["DistributionList"]["Items"]
    return {
        stack.cf.get_distribution(Id=distribution_id)["Distribution"]["Status"],
        *(item["Status"] for item in listed if item["Id"] == distribution_id),
        stack.record(distribution_id)["status"],
    }


def test_a_new_distribution_deploys_for_a_while_and_answers_503_until_then(unkind):
    assert unkind.aws.realism()["cdn_deploy_delay"] == DEPLOY
    unkind.put("media/espresso.jpg", b"espresso photo")
    distribution = unkind.distribution()
    created = time.monotonic()
    unkind.grant(distribution["ARN"])
    url = unkind.url(distribution["Id"])

    assert distribution["Status"] == "InProgress"
    assert statuses(unkind, distribution["Id"]) == {"InProgress"}
    answer = request(url, "/media/espresso.jpg")
    assert answer.status == 503
    assert answer.cache == "Error from cloudfront"

    waiter = unkind.cf.get_waiter("distribution_deployed")
    waiter.wait(Id=distribution["Id"], WaiterConfig={"Delay": 0.25, "MaxAttempts": 40})
    assert time.monotonic() - created >= DEPLOY - 0.1
    wait_for(lambda: unkind.record(distribution["Id"])["status"] == "Deployed", 2, "the record to say Deployed")
    assert statuses(unkind, distribution["Id"]) == {"Deployed"}
    assert request(url, "/media/espresso.jpg").body == b"espresso photo"


def test_an_update_deploys_again_while_the_distribution_keeps_serving(unkind):
    unkind.put("media/espresso.jpg", b"espresso photo")
    distribution = unkind.distribution()
    unkind.grant(distribution["ARN"])
    url = unkind.url(distribution["Id"])
    wait_for(lambda: statuses(unkind, distribution["Id"]) == {"Deployed"}, DEPLOY + 2, "the first deployment")

    updated = unkind.update(distribution["Id"], Comment="media photos, v2")
    assert updated["Status"] == "InProgress"
    assert statuses(unkind, distribution["Id"]) == {"InProgress"}
    assert request(url, "/media/espresso.jpg").status == 200
    wait_for(lambda: statuses(unkind, distribution["Id"]) == {"Deployed"}, DEPLOY + 2, "the update's deployment")


def test_a_distribution_is_deleted_only_once_disabled_and_deployed(unkind):
    distribution = unkind.distribution()
    wait_for(lambda: statuses(unkind, distribution["Id"]) == {"Deployed"}, DEPLOY + 2, "the first deployment")
    not_disabled = (
        "DistributionNotDisabled",
        409,
        "The distribution you are trying to delete has not been disabled.",
    )
    with pytest.raises(unkind.cf.exceptions.DistributionNotDisabled) as excinfo:  # enabled and deployed
        unkind.delete(distribution["Id"])
    assert error_of(excinfo) == not_disabled

    unkind.update(distribution["Id"], Enabled=False)
    with pytest.raises(unkind.cf.exceptions.DistributionNotDisabled) as excinfo:  # disabled, still InProgress
        unkind.delete(distribution["Id"])
    assert error_of(excinfo) == not_disabled
    assert unkind.record(distribution["Id"])["status"] == "InProgress"

    wait_for(lambda: statuses(unkind, distribution["Id"]) == {"Deployed"}, DEPLOY + 2, "the disabling's deployment")
    url = unkind.url(distribution["Id"])
    unkind.delete(distribution["Id"])
    assert unkind.cf.list_distributions()["DistributionList"]["Quantity"] == 0
    assert not (unkind.state / "cloudfront" / f"{distribution['Id']}.json").exists()
    assert refuses_connections(url)


def test_an_origin_access_control_in_use_is_not_deleted(unkind):
    access_control = unkind.access_control()
    distribution = unkind.distribution(access_control)
    with pytest.raises(unkind.cf.exceptions.OriginAccessControlInUse) as excinfo:
        unkind.cf.delete_origin_access_control(Id=access_control)
    assert error_of(excinfo) == (
        "OriginAccessControlInUse",
        409,
        "Cannot delete the origin access control because it's in use by one or more distributions.",
    )

    origins = unkind.cf.get_distribution_config(Id=distribution["Id"])["DistributionConfig"]["Origins"]
    origins["Items"][0]["OriginAccessControlId"] = ""
    unkind.update(distribution["Id"], Origins=origins)
    unkind.cf.delete_origin_access_control(Id=access_control)
    assert unkind.cf.list_origin_access_controls()["OriginAccessControlList"]["Quantity"] == 0


def test_the_server_exit_removes_the_records(tmp_path):
    state = tmp_path / "state"
    with embedded_aws_server(realism=False, SANDBOX_STATE_DIR=str(state)) as aws:
        aws.state = state
        stack = Stack(aws)
        url = stack.url(stack.distribution()["Id"])
    assert list((state / "cloudfront").glob("*.json")) == []
    assert refuses_connections(url)


def test_records_left_by_a_dead_server_are_removed_at_start(tmp_path):
    records = tmp_path / "state" / "cloudfront"
    records.mkdir(parents=True)
    stale = records / "E2STALE000000.json"
    stale.write_text(json.dumps({"id": "E2STALE000000", "url": "http://127.0.0.1:1", "server_pid": 2**22 + 1}))
    with embedded_aws_server(realism=False, SANDBOX_STATE_DIR=str(tmp_path / "state")):
        assert not stale.exists()
