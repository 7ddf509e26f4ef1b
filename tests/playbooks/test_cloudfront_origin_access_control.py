"""coffeeshop.ranker.cloudfront_origin_access_control: playbooks against the embedded AWS (check mode,
create, rerun, update, delete, in any region), read back with boto3; and the refusal of a control that a
distribution still uses, which moto does not reproduce, against botocore's Stubber.
"""

from __future__ import annotations

import datetime
import importlib.util
from pathlib import Path

import boto3
import pytest
from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper
from botocore.stub import Stubber

MODULE_PATH = Path(__file__).resolve().parents[2] / "plugins" / "modules" / "cloudfront_origin_access_control.py"
spec = importlib.util.spec_from_file_location("cloudfront_origin_access_control", MODULE_PATH)
oac_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(oac_module)

NAME = "coffee-ranker-media"

TASK = """
- name: Put the origin access control
  coffeeshop.ranker.cloudfront_origin_access_control:
    name: "{{ oac_name }}"
    description: "{{ oac_description | default(omit) }}"
    signing_behavior: "{{ oac_signing_behavior | default(omit) }}"
    state: "{{ oac_state | default(omit) }}"
    region: "{{ oac_region | default(omit) }}"
  register: module_answer
"""


@pytest.fixture
def put(run_module):
    """Run the module with those options (and ansible-playbook arguments); the module's answer."""

    def run(*args: str, **options) -> dict:
        variables = {"oac_name": NAME, **{f"oac_{k}": v for k, v in options.items()}}
        done, result = run_module(TASK, *args, extra_vars=variables)
        assert done.recap["changed"] == int(result["changed"])  # the module's answer is what the run reports
        return result

    return run


def controls(aws) -> dict[str, dict]:
    """The account's origin access controls by name: their config, with Id and ETag (GetOriginAccessControl)."""
    cloudfront = aws.client("cloudfront")
    found = {}
    for page in cloudfront.get_paginator("list_origin_access_controls").paginate():
        for summary in page["OriginAccessControlList"].get("Items") or []:
            read = cloudfront.get_origin_access_control(Id=summary["Id"])
            found[summary["Name"]] = dict(
                read["OriginAccessControl"]["OriginAccessControlConfig"],
                Id=summary["Id"],
                ETag=read["ETag"],
            )
    return found


def test_check_mode_creates_nothing_but_says_it_would(aws, put):
    result = put("--check", description="The CDN's access to the media bucket")

    assert result["changed"] is True
    assert result["origin_access_control"] == {
        "id": "",
        "etag": "",
        "name": NAME,
        "description": "The CDN's access to the media bucket",
        "origin_type": "s3",
        "signing_behavior": "always",
        "signing_protocol": "sigv4",
    }
    assert controls(aws) == {}


def test_it_is_created_then_a_rerun_changes_nothing(aws, put):
    created = put(description="The CDN's access to the media bucket")

    assert created["changed"] is True
    made = controls(aws)[NAME]
    assert made["Description"] == "The CDN's access to the media bucket"
    assert (made["OriginAccessControlOriginType"], made["SigningBehavior"], made["SigningProtocol"]) == (
        "s3",
        "always",
        "sigv4",
    )
    assert created["origin_access_control"]["id"] == made["Id"]
    assert created["origin_access_control"]["etag"] == made["ETag"]

    rerun = put(description="The CDN's access to the media bucket")

    assert rerun["changed"] is False
    assert rerun["origin_access_control"] == created["origin_access_control"]
    assert list(controls(aws)) == [NAME]


def test_a_changed_signing_behavior_is_updated_in_place(aws, put):
    created = put()

    planned = put("--check", signing_behavior="no-override")
    assert planned["changed"] is True
    assert controls(aws)[NAME]["SigningBehavior"] == "always"

    updated = put(signing_behavior="no-override")

    assert updated["changed"] is True
    read = controls(aws)
    assert read[NAME]["SigningBehavior"] == "no-override"
    assert read[NAME]["Id"] == created["origin_access_control"]["id"]  # the same control, not a new one
    assert updated["origin_access_control"]["signing_behavior"] == "no-override"
    assert put(signing_behavior="no-override")["changed"] is False


def test_absent_deletes_it_and_then_changes_nothing(aws, put):
    put()
    assert put("--check", state="absent")["changed"] is True
    assert NAME in controls(aws)

    deleted = put(state="absent")

    assert deleted == {**deleted, "changed": True, "origin_access_control": {}}
    assert controls(aws) == {}
    assert put(state="absent")["changed"] is False


def test_another_control_is_left_alone(aws, put):
    other = aws.client("cloudfront").create_origin_access_control(
        OriginAccessControlConfig={
            "Name": f"{NAME}-other",
            "Description": "",
            "SigningProtocol": "sigv4",
            "SigningBehavior": "never",
            "OriginAccessControlOriginType": "s3",
        }
    )["OriginAccessControl"]

    put()
    put(state="absent")

    assert {name: control["Id"] for name, control in controls(aws).items()} == {f"{NAME}-other": other["Id"]}


@pytest.mark.parametrize("region", ["eu-west-1", ""], ids=["eu-west-1", "no-region"])
def test_the_region_does_not_matter(aws, put, monkeypatch, region):
    # No region from this machine either, nor from the play (aws_environment): "" is then no region at all.
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    no_play_region = ("-e", '{"aws_environment": {}}')

    created = put(*no_play_region, region=region)

    assert created["changed"] is True
    # CloudFront is global: the control is the one a us-east-1 client reads, and found again from there.
    assert controls(aws)[NAME]["Id"] == created["origin_access_control"]["id"]
    assert put(*no_play_region, region=region)["changed"] is False
    assert put(*no_play_region, state="absent", region=region)["changed"] is True
    assert controls(aws) == {}


# A control that an origin still uses: CloudFront refuses to delete it (moto does not), and the module
# names the distribution. botocore's Stubber checks the calls and the answers against CloudFront's model.

CONTROL_ID, DISTRIBUTION_ID = "E1OACEXAMPLE", "E2DISTEXAMPLE"
CONFIG = {
    "Name": NAME,
    "Description": "",
    "SigningProtocol": "sigv4",
    "SigningBehavior": "always",
    "OriginAccessControlOriginType": "s3",
}


def distribution_summary(distribution_id: str, control_id: str) -> dict:
    origin = {"Id": "media", "DomainName": "media.s3.us-east-1.amazonaws.com", "OriginAccessControlId": control_id}
    return {
        "Id": distribution_id,
        "ARN": f"arn:aws:cloudfront::123456789012:distribution/{distribution_id}",
        "Status": "Deployed",
        "LastModifiedTime": datetime.datetime(2026, 12, 6, tzinfo=datetime.UTC),
        "DomainName": f"{distribution_id.lower()}.cloudfront.net",
        "Aliases": {"Quantity": 0},
        "Origins": {"Quantity": 1, "Items": [origin]},
        "DefaultCacheBehavior": {"TargetOriginId": "media", "ViewerProtocolPolicy": "https-only"},
        "CacheBehaviors": {"Quantity": 0},
        "CustomErrorResponses": {"Quantity": 0},
        "Comment": "",
        "PriceClass": "PriceClass_100",
        "Enabled": False,
        "ViewerCertificate": {},
        "Restrictions": {"GeoRestriction": {"RestrictionType": "none", "Quantity": 0}},
        "WebACLId": "",
        "HttpVersion": "http2",
        "IsIPV6Enabled": True,
        "Staging": False,
    }


class Exited(Exception):
    def __init__(self, failed: bool, result: dict):
        super().__init__(result.get("msg", ""))
        self.failed, self.result = failed, result


class FakeModule:
    """What the module's functions use of AnsibleAWSModule; exit_json and fail_json raise Exited."""

    def __init__(self, **params):
        defaults = dict(description="", origin_type="s3", signing_behavior="always", signing_protocol="sigv4")
        self.params = {**defaults, "state": "present", **params}
        self.check_mode = False

    def exit_json(self, **result):
        raise Exited(False, result)

    def fail_json(self, **result):
        raise Exited(True, result)


@pytest.fixture
def stubbed():
    client = boto3.client(
        "cloudfront", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    with Stubber(client) as stubber:
        yield stubber, RetryingBotoClientWrapper(client, oac_module.RETRY)
        stubber.assert_no_pending_responses()


def stub_existing_control(stubber):
    summary = dict(CONFIG, Id=CONTROL_ID)
    listing = {"Marker": "", "MaxItems": 100, "IsTruncated": False, "Quantity": 1, "Items": [summary]}
    stubber.add_response("list_origin_access_controls", {"OriginAccessControlList": listing}, {})
    control = {"Id": CONTROL_ID, "OriginAccessControlConfig": CONFIG}
    stubber.add_response(
        "get_origin_access_control", {"OriginAccessControl": control, "ETag": "ETAG1"}, {"Id": CONTROL_ID}
    )


def test_a_control_in_use_is_not_deleted_and_its_distribution_is_named(stubbed):
    stubber, client = stubbed
    stub_existing_control(stubber)
    stubber.add_client_error(
        "delete_origin_access_control",
        service_error_code="OriginAccessControlInUse",
        service_message="The origin access control is in use.",
        http_status_code=409,
        expected_params={"Id": CONTROL_ID, "IfMatch": "ETAG1"},
    )
    unrelated = distribution_summary("E3OTHEREXAMPLE", "E9SOMEOTHEROAC")
    using = distribution_summary(DISTRIBUTION_ID, CONTROL_ID)
    listing = {"Marker": "", "MaxItems": 100, "IsTruncated": False, "Quantity": 2, "Items": [unrelated, using]}
    stubber.add_response("list_distributions", {"DistributionList": listing}, {})

    with pytest.raises(Exited) as exited:
        oac_module.absent(FakeModule(name=NAME, state="absent"), client)

    assert exited.value.failed
    message = exited.value.result["msg"]
    assert f"Origin access control {NAME} ({CONTROL_ID}) is still used by distribution {DISTRIBUTION_ID}" in message
    assert "e2distexample.cloudfront.net" in message
    assert "E3OTHEREXAMPLE" not in message
    assert "delete the distribution first" in message
    assert exited.value.result["distributions"] == [f"{DISTRIBUTION_ID} (e2distexample.cloudfront.net)"]


def test_a_control_in_use_by_a_distribution_that_cannot_be_listed_still_fails_clearly(stubbed):
    stubber, client = stubbed
    stub_existing_control(stubber)
    stubber.add_client_error(
        "delete_origin_access_control", service_error_code="OriginAccessControlInUse", http_status_code=409
    )
    stubber.add_client_error("list_distributions", service_error_code="AccessDenied", http_status_code=403)

    with pytest.raises(Exited) as exited:
        oac_module.absent(FakeModule(name=NAME, state="absent"), client)

    assert exited.value.failed
    assert "is still used by a distribution" in exited.value.result["msg"]
    assert "delete the distribution first" in exited.value.result["msg"]


def test_an_update_names_the_etag_it_read(stubbed):
    stubber, client = stubbed
    stub_existing_control(stubber)
    wanted = dict(CONFIG, SigningBehavior="never")
    control = {"Id": CONTROL_ID, "OriginAccessControlConfig": wanted}
    stubber.add_response(
        "update_origin_access_control",
        {"OriginAccessControl": control, "ETag": "ETAG2"},
        {"Id": CONTROL_ID, "IfMatch": "ETAG1", "OriginAccessControlConfig": wanted},
    )

    with pytest.raises(Exited) as exited:
        oac_module.present(FakeModule(name=NAME, signing_behavior="never"), client)

    assert not exited.value.failed
    assert exited.value.result["changed"] is True
    assert exited.value.result["origin_access_control"]["etag"] == "ETAG2"


@pytest.mark.parametrize(
    ("region", "signing_region"),
    [(None, "us-east-1"), ("", "us-east-1"), ("eu-west-1", "us-east-1"), ("cn-north-1", "cn-northwest-1")],
)
def test_the_client_signs_for_cloudfronts_region_of_the_partition(region, signing_region):
    assert oac_module.cloudfront_region(region) == signing_region
