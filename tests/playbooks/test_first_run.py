"""A first run on a real account, as the unkind embedded AWS plays it (sandbox/aws_realism.py).

Each test meets what real AWS does and plain moto does not: deprecated images, IAM's eventual
consistency, point-in-time recovery not yet available, bucket policies that are refused and then seen
late, a zone that does not offer t2.micro, a security group held by a terminating instance, a bucket
name another account owns, the account's Block Public Access, an account without a default VPC. The
run either succeeds or stops in preflight, before anything is created, saying what to change.
"""

import json

PROJECT = "ranker-first"
VARS = {"project_name": PROJECT}
ACCOUNT = "123456789012"  # moto's
BUCKET = f"sandbox-{PROJECT}-media-{ACCOUNT}"


def _instances(aws):
    return [
        instance
        for reservation in aws.client("ec2").describe_instances(
            Filters=[
                {"Name": "tag:Project", "Values": [PROJECT]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )["Reservations"]
        for instance in reservation["Instances"]
    ]


def test_a_first_run_succeeds_through_the_unkind_aws_reruns_unchanged_and_tears_down(run_unkind_playbook, unkind_aws):
    aws = unkind_aws
    settings = aws.realism()
    assert settings["iam_delay"] > 10, "longer than ec2_instance's own single retry, as on AWS"
    ec2 = aws.client("ec2")
    bionic = ec2.describe_images(
        Owners=["099720109477"],
        IncludeDeprecated=True,
        Filters=[{"Name": "name", "Values": ["ubuntu/images/hvm-ssd*/ubuntu-*-18.04-amd64-server-*"]}],
    )["Images"]
    assert bionic, "the sandbox's image list has Ubuntu 18.04"
    assert not ec2.describe_images(
        Owners=["099720109477"],
        Filters=[{"Name": "name", "Values": ["ubuntu/images/hvm-ssd*/ubuntu-*-18.04-amd64-server-*"]}],
    )["Images"], "every Ubuntu 18.04 image is deprecated, so a plain lookup finds none"

    # A new bucket policy reaches anonymous readers 15 s late here (AWS: seconds): longer than the tasks
    # between the policy and the probe take on a busy machine, so the probe's retry is really taken.
    aws.realism(policy_visible_delay=15)
    try:
        first = run_unkind_playbook("playbooks/provision.yml", extra_vars=VARS)
    finally:
        aws.realism(policy_visible_delay=settings["policy_visible_delay"])

    assert first.returncode == 0, first.output[-4000:]
    # The unkind paths were really taken: the launch waited for IAM, the probe for the bucket policy.
    assert "FAILED - RETRYING: [localhost]: Launch API instances into their subnets" in first.output
    assert "FAILED - RETRYING: [localhost]: Fetch the uploaded probe anonymously at its public URL" in first.output
    assert "was deprecated by its publisher" in first.text
    assert "Ubuntu 18.04 left standard support on 2023-05-31" in first.text
    (instance,) = _instances(aws)
    assert instance["ImageId"] == max(bionic, key=lambda image: image["CreationDate"])["ImageId"]
    assert instance["Placement"]["AvailabilityZone"] != "us-east-1a", "us-east-1a offers no t2.micro here"
    backups = aws.client("dynamodb").describe_continuous_backups(TableName=f"{PROJECT}-data")
    assert backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == (
        "ENABLED"
    )
    policy = json.loads(aws.client("s3").get_bucket_policy(Bucket=BUCKET)["Policy"])
    assert policy["Statement"][0]["Principal"] == "*"

    again = run_unkind_playbook("playbooks/provision.yml", extra_vars=VARS)
    assert again.returncode == 0, again.output[-4000:]
    assert again.recap["changed"] == 0, again.output[-4000:]

    # The group is still held by the instance terminated just before (DependencyViolation for a while).
    # On AWS that lasts until the instance has fully terminated, often a minute; 30 s here, so that the
    # retry is taken however long the tasks between the termination and the deletion take on a busy machine
    # (the stack's alarms and dashboard are deleted in between).
    aws.realism(sg_delay=30)
    try:
        removed = run_unkind_playbook("playbooks/teardown.yml", extra_vars={**VARS, "teardown_delete_data": True})
    finally:
        aws.realism(sg_delay=settings["sg_delay"])
    assert removed.returncode == 0, removed.output[-4000:]
    assert "FAILED - RETRYING: [localhost]: Delete the API security group" in removed.output
    assert not any(aws.project_resources(PROJECT).values())


def test_a_bucket_name_taken_by_another_account_stops_the_run_in_preflight(run_unkind_playbook, unkind_aws):
    unkind_aws.realism(foreign_buckets=[BUCKET])

    result = run_unkind_playbook("playbooks/provision.yml", extra_vars=VARS)

    assert result.returncode != 0
    assert f"media_bucket_name '{BUCKET}' is taken by another account: set media_bucket_name" in result.text.replace(
        "''", "'"
    )
    assert unkind_aws.is_empty()


def test_the_accounts_block_public_access_is_explained_before_the_bucket_is_made(run_unkind_playbook, unkind_aws):
    unkind_aws.s3control().put_public_access_block(
        AccountId=ACCOUNT,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )

    result = run_unkind_playbook("playbooks/provision.yml", extra_vars=VARS)

    assert result.returncode != 0
    message = result.text.replace("''", "'")  # YAML's quoting of the message
    assert "The account's S3 Block Public Access" in message
    # The way that keeps the account private comes first (tests/playbooks/test_media_cdn.py runs it).
    assert "Set media_cdn=true: the photos are then served through CloudFront" in message
    assert "turn BlockPublicPolicy and RestrictPublicBuckets off for account 123456789012" in message
    assert unkind_aws.is_empty()


def test_an_account_without_a_default_vpc_needs_api_vpc_id_then_uses_the_subnets_that_offer_the_type(
    run_unkind_playbook, unkind_aws
):
    aws = unkind_aws
    aws.remove_default_vpc("us-east-1")

    without = run_unkind_playbook("playbooks/provision.yml", extra_vars=VARS)

    assert without.returncode != 0
    assert "this region of the account has no default VPC in us-east-1: set api_vpc_id" in without.text
    assert aws.is_empty()

    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.80.0.0/16")["Vpc"]["VpcId"]
    subnets = {}
    for zone, cidr in (("us-east-1a", "10.80.1.0/24"), ("us-east-1b", "10.80.2.0/24")):
        subnets[zone] = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
        ec2.modify_subnet_attribute(SubnetId=subnets[zone], MapPublicIpOnLaunch={"Value": True})

    only_unoffered = run_unkind_playbook(
        "playbooks/provision.yml", extra_vars={**VARS, "api_vpc_id": vpc, "api_subnet_ids": [subnets["us-east-1a"]]}
    )
    assert only_unoffered.returncode != 0
    assert f"No subnet of {vpc} can take the instances: {subnets['us-east-1a']} (us-east-1a): t2.micro not offered" in (
        only_unoffered.text
    )
    assert aws.is_empty()

    both = {**VARS, "api_vpc_id": vpc, "api_subnet_ids": list(subnets.values()), "api_instance_count": 2}
    result = run_unkind_playbook("playbooks/provision.yml", extra_vars=both)

    assert result.returncode == 0, result.output[-4000:]
    assert {i["SubnetId"] for i in _instances(aws)} == {subnets["us-east-1b"]}
    (group,) = ec2.describe_security_groups(Filters=[{"Name": "tag:Project", "Values": [PROJECT]}])["SecurityGroups"]
    assert group["VpcId"] == vpc
