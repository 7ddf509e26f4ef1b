"""Photos through CloudFront (media_cdn): the bucket stays private, the media distribution alone reads it.

Provisioning against the embedded AWS, whose CloudFront data plane (sandbox/cloudfront.py) serves each
distribution on 127.0.0.1 at a port of its own and reads the bucket only as the bucket policy grants that
distribution; its record (<state>/cloudfront/<id>.json) gives the URL. The unkind mode keeps a new or changed
distribution InProgress for a while (the probe waits), and refuses to delete one that is enabled or still
deploying (teardown disables it, waits, then deletes).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STATE_DIR = Path(os.environ.get("SANDBOX_STATE_DIR") or REPO / ".sandbox").resolve()
PROJECT = "ranker-cdn"
ACCOUNT = "123456789012"  # moto's
BUCKET = f"sandbox-{PROJECT}-media-{ACCOUNT}"
PROBE = "media/probe/public-read.txt"
CDN = {"project_name": PROJECT, "media_cdn": True}
NO_CDN = {"project_name": PROJECT, "media_cdn": False}
CLOUDFRONT_ZONE = "Z2FDTNDATAQYW2"


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def distributions(aws) -> list[dict]:
    listed = aws.client("cloudfront").list_distributions()["DistributionList"].get("Items") or []
    return [d for d in listed if d["Comment"] == f"{PROJECT} media"]


def the_distribution(aws) -> dict:
    found = distributions(aws)
    assert len(found) == 1, found
    return found[0]


def distribution_url(distribution: dict) -> str:
    return json.loads((STATE_DIR / "cloudfront" / f"{distribution['Id']}.json").read_text())["url"]


def bucket_is_private_to(aws, distribution: dict) -> None:
    s3 = aws.client("s3")
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert all(block.values()), block
    statements = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"]
    assert statements == [
        {
            "Sid": "CloudFrontReadsMediaOnly",
            "Effect": "Allow",
            "Principal": {"Service": "cloudfront.amazonaws.com"},
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/media/*",
            "Condition": {"StringEquals": {"AWS:SourceArn": distribution["ARN"]}},
        }
    ]


def served_from_the_bucket_anonymously(aws) -> int:
    status, _ = get(f"{aws.endpoint}/{BUCKET}/{PROBE}")
    return status


def test_media_cdn_serves_photos_through_the_distribution_keeps_the_bucket_private_and_tears_down(run_playbook, aws):
    dry = run_playbook("playbooks/provision.yml", "--check", "--diff", extra_vars=CDN)
    assert dry.returncode == 0, dry.output[-3000:]
    assert aws.is_empty()
    assert distributions(aws) == []

    made = run_playbook("playbooks/provision.yml", extra_vars=CDN)
    assert made.returncode == 0, made.output[-3000:]

    distribution = the_distribution(aws)
    assert distribution["Enabled"]
    origin = distribution["Origins"]["Items"][0]
    assert origin["DomainName"] == f"{BUCKET}.s3.us-east-1.amazonaws.com"
    controls = aws.client("cloudfront").list_origin_access_controls()["OriginAccessControlList"]["Items"]
    assert [(c["Name"], c["SigningBehavior"], c["SigningProtocol"], c["OriginAccessControlOriginType"])
            for c in controls] == [(f"{PROJECT}-media", "always", "sigv4", "s3")]  # fmt: skip
    assert origin["OriginAccessControlId"] == controls[0]["Id"]
    behavior = distribution["DefaultCacheBehavior"]
    assert (behavior["ViewerProtocolPolicy"], behavior["Compress"], distribution["PriceClass"]) == (
        "redirect-to-https",
        True,
        "PriceClass_100",
    )
    tags = aws.client("cloudfront").list_tags_for_resource(Resource=distribution["ARN"])["Tags"]["Items"]
    assert {t["Key"]: t["Value"] for t in tags} == {"Project": PROJECT, "Role": "media"}
    bucket_is_private_to(aws, distribution)

    # The probe through the distribution, and not from the bucket itself.
    status, body = get(f"{distribution_url(distribution)}/{PROBE}")
    assert status == 200, (status, body)
    assert body.decode().startswith(f"{PROJECT} media is publicly readable"), body
    assert served_from_the_bucket_anonymously(aws) == 403

    again = run_playbook("playbooks/provision.yml", extra_vars=CDN)
    assert again.returncode == 0, again.output[-3000:]
    assert again.recap["changed"] == 0, again.output[-3000:]
    assert [d["Id"] for d in distributions(aws)] == [distribution["Id"]]

    checked = run_playbook("playbooks/provision.yml", "--check", "--diff", extra_vars=CDN)
    assert checked.returncode == 0, checked.output[-3000:]
    assert checked.recap["changed"] == 0, checked.output[-3000:]

    removed = run_playbook("playbooks/teardown.yml", extra_vars={"project_name": PROJECT})
    assert removed.returncode == 0, removed.output[-3000:]
    left = aws.project_resources(PROJECT)
    assert left["distributions"] == [], left
    assert left["origin_access_controls"] == [], left
    assert left["buckets"] == [BUCKET]  # the photos are data: kept without teardown_delete_data
    assert not (STATE_DIR / "cloudfront" / f"{distribution['Id']}.json").exists()

    again = run_playbook("playbooks/teardown.yml", extra_vars={"project_name": PROJECT})
    assert again.returncode == 0, again.output[-3000:]
    assert again.recap["changed"] == 0, again.output[-3000:]


def test_switching_media_cdn_on_and_off_converges_in_one_run_each_way(run_playbook, aws):
    public = run_playbook("playbooks/provision.yml", extra_vars=NO_CDN)
    assert public.returncode == 0, public.output[-3000:]
    assert served_from_the_bucket_anonymously(aws) == 200
    assert distributions(aws) == []

    on = run_playbook("playbooks/provision.yml", extra_vars=CDN)
    assert on.returncode == 0, on.output[-3000:]
    distribution = the_distribution(aws)
    bucket_is_private_to(aws, distribution)
    assert served_from_the_bucket_anonymously(aws) == 403
    assert get(f"{distribution_url(distribution)}/{PROBE}")[0] == 200

    off = run_playbook("playbooks/provision.yml", extra_vars=NO_CDN)
    assert off.returncode == 0, off.output[-3000:]
    assert distributions(aws) == []
    assert aws.project_resources(PROJECT)["origin_access_controls"] == []
    assert not (STATE_DIR / "cloudfront" / f"{distribution['Id']}.json").exists()
    assert served_from_the_bucket_anonymously(aws) == 200
    block = aws.client("s3").get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    public = {key: value for key, value in block.items() if key in ("BlockPublicPolicy", "RestrictPublicBuckets")}
    assert public == {"BlockPublicPolicy": False, "RestrictPublicBuckets": False}
    assert block["BlockPublicAcls"]

    settled = run_playbook("playbooks/provision.yml", extra_vars=NO_CDN)
    assert settled.returncode == 0, settled.output[-3000:]
    assert settled.recap["changed"] == 0, settled.output[-3000:]


def test_media_domain_name_gets_a_us_east_1_certificate_an_alias_and_records(run_playbook, aws):
    """In eu-west-1: CloudFront takes certificates from us-east-1 only."""
    route53 = aws.client("route53")
    zone = route53.create_hosted_zone(Name="example.com", CallerReference="media-cdn-test")["HostedZone"]["Id"]
    variables = {**CDN, "aws_region": "eu-west-1", "media_domain_name": "media.example.com"}

    made = run_playbook("playbooks/provision.yml", extra_vars=variables)
    assert made.returncode == 0, made.output[-3000:]

    distribution = the_distribution(aws)
    assert distribution["Aliases"]["Items"] == ["media.example.com"]
    assert distribution["Origins"]["Items"][0]["DomainName"] == f"{BUCKET}.s3.eu-west-1.amazonaws.com"
    certificate_arn = distribution["ViewerCertificate"]["ACMCertificateArn"]
    assert certificate_arn.startswith("arn:aws:acm:us-east-1:")
    acm = aws.client("acm")  # us-east-1
    assert acm.describe_certificate(CertificateArn=certificate_arn)["Certificate"]["Status"] == "ISSUED"
    records = route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    aliases = {r["Type"]: r["AliasTarget"] for r in records if r["Name"] == "media.example.com."}
    assert set(aliases) == {"A", "AAAA"}
    for target in aliases.values():
        assert target["HostedZoneId"] == CLOUDFRONT_ZONE
        assert target["DNSName"].rstrip(".") == distribution["DomainName"]

    again = run_playbook("playbooks/provision.yml", extra_vars=variables)
    assert again.returncode == 0, again.output[-3000:]
    assert again.recap["changed"] == 0, again.output[-3000:]

    removed = run_playbook("playbooks/teardown.yml", extra_vars={"project_name": PROJECT, "aws_region": "eu-west-1"})
    assert removed.returncode == 0, removed.output[-3000:]
    assert distributions(aws) == []
    left = [r for r in route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
            if r["Type"] not in ("NS", "SOA")]  # fmt: skip
    assert left == []
    assert acm.list_certificates()["CertificateSummaryList"] == []


@pytest.mark.parametrize(
    ("variables", "rule"),
    [
        ({"media_domain_name": "media.example.com"}, "media_domain_name 'media.example.com' needs media_cdn=true"),
        ({"media_cdn": True, "media_domain_name": "Media_Photos"}, "must be a DNS name such as media.example.com"),
        ({"media_cdn": True, "aws_region": "us-gov-west-1"}, "not available in the aws-us-gov partition"),
    ],
    ids=["domain-without-cdn", "malformed-domain", "govcloud"],
)
def test_bad_media_cdn_input_fails_before_any_aws_call(run_playbook, aws, variables, rule):
    result = run_playbook("playbooks/provision.yml", extra_vars={"project_name": PROJECT, **variables})

    assert result.returncode != 0
    assert rule in result.text.replace("''", "'"), result.output[-3000:]
    assert aws.is_empty()


@pytest.fixture
def quick_unkind_aws(unkind_aws):
    """The unkind mode with a distribution InProgress for 10 s after each change (AWS: minutes: longer than
    the rest of provisioning takes here, so that the probe meets it), and the other delays short (this test
    is about CloudFront); its settings back as they were afterwards (the server is the session's)."""
    quick = {"cdn_deploy_delay": 10, "iam_delay": 2, "pitr_delay": 2, "policy_delay": 1, "sg_delay": 2}
    before = unkind_aws.realism()
    unkind_aws.realism(**quick)
    yield unkind_aws
    unkind_aws.realism(**{setting: before[setting] for setting in quick})


def test_unkind_an_account_that_blocks_public_policies_provisions_with_media_cdn_and_tears_down(
    quick_unkind_aws, run_unkind_playbook
):
    """The account's Block Public Access stays on; the probe waits while the new distribution deploys (503),
    and teardown waits until the disabled distribution has deployed before deleting it (CloudFront refuses
    DeleteDistribution before: DistributionNotDisabled)."""
    aws = quick_unkind_aws
    aws.s3control().put_public_access_block(
        AccountId=ACCOUNT,
        PublicAccessBlockConfiguration={key: True for key in (
            "BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")},
    )  # fmt: skip

    made = run_unkind_playbook("playbooks/provision.yml", extra_vars=CDN)

    assert made.returncode == 0, made.output[-3000:]
    # The probe through the new distribution was retried while it deployed (503), then served.
    assert "FAILED - RETRYING: [localhost]: Fetch the uploaded probe anonymously at its public URL" in made.output
    distribution = the_distribution(aws)
    assert get(f"{distribution_url(distribution)}/{PROBE}")[0] == 200

    removed = run_unkind_playbook("playbooks/teardown.yml", extra_vars={"project_name": PROJECT})
    assert removed.returncode == 0, removed.output[-3000:]
    # Deleted only once disabled and deployed: CloudFront refuses before (DistributionNotDisabled).
    assert "FAILED - RETRYING: [localhost]: Wait until the disabled distribution is deployed" in removed.output
    assert distributions(aws) == []
    assert aws.project_resources(PROJECT)["origin_access_controls"] == []
