"""The unkind mode of the embedded AWS (SANDBOX_AWS_REALISM=1) answers as real AWS does where moto does not.

This module starts its own servers on free loopback ports, whatever the environment says, and sets short
delays through the control endpoint so that each "fails now, works a moment later" runs in seconds.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import EmbeddedAws, embedded_aws_server

ACCOUNT = "123456789012"
CANONICAL = "099720109477"
BIONIC = "ami-029fe30bcdd31602a"  # ubuntu-bionic-18.04 of 2023-05-31: deprecated since 2025-05-30
NOBLE = "ami-02ecac1fbf21dc85a"  # ubuntu-noble-24.04 of 2025-03-05: deprecated on 2027-03-05
DELAY = 1.5  # every delay, in seconds
SHORT = {name: DELAY for name in ("iam_delay", "pitr_delay", "policy_delay", "policy_visible_delay", "sg_delay")}
PUBLIC_READ = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::{}/*"}],
}


@pytest.fixture(scope="module")
def unkind_server():
    with embedded_aws_server(
        realism=True, SANDBOX_AWS_REALISM_SG_DELAY="7", SANDBOX_AWS_REALISM_FOREIGN_BUCKETS="theirs-1, theirs-2"
    ) as aws:
        aws.settings_at_start = aws.realism()
        yield aws


@pytest.fixture
def aws(unkind_server):
    """The unkind server, emptied, with every delay DELAY seconds."""
    unkind_server.reset()
    unkind_server.realism(**SHORT, foreign_buckets=[], unoffered={"t2.micro": ["<region>a"]})
    return unkind_server


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def subnet_in(aws: EmbeddedAws, zone: str) -> str:
    filters = [{"Name": "default-for-az", "Values": ["true"]}, {"Name": "availability-zone", "Values": [zone]}]
    return aws.client("ec2").describe_subnets(Filters=filters)["Subnets"][0]["SubnetId"]


def anonymous(aws: EmbeddedAws, path: str, method: str = "GET") -> int:
    """The status of an unsigned request, as a browser or curl would send it."""
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{aws.endpoint}{path}", method=method), timeout=10):
            return 200
    except urllib.error.HTTPError as error:
        return error.code


def test_settings_come_from_the_environment_and_the_control_endpoint(unkind_server):
    assert unkind_server.realism_enabled
    assert unkind_server.settings_at_start["sg_delay"] == 7
    assert unkind_server.settings_at_start["iam_delay"] == 25  # the default: longer than ec2_instance's retry
    assert unkind_server.settings_at_start["foreign_buckets"] == ["theirs-1", "theirs-2"]
    assert unkind_server.realism(pitr_delay=3)["pitr_delay"] == 3
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        unkind_server.realism(pitr_dealy=3)
    assert excinfo.value.code == 400


def test_deprecated_images_are_left_out_unless_asked_for(aws):
    ec2 = aws.client("ec2")
    listed = {i["ImageId"]: i for i in ec2.describe_images(Owners=[CANONICAL])["Images"]}
    assert BIONIC not in listed
    assert NOBLE in listed
    assert listed[NOBLE]["DeprecationTime"] == "2027-03-05T10:00:00.000Z"

    with_deprecated = ec2.describe_images(Owners=[CANONICAL], IncludeDeprecated=True)["Images"]
    assert BIONIC in {i["ImageId"] for i in with_deprecated}
    (bionic,) = ec2.describe_images(ImageIds=[BIONIC])["Images"]
    created = datetime.fromisoformat(bionic["CreationDate"].replace("Z", "+00:00"))
    assert bionic["DeprecationTime"] == (created + timedelta(days=730)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert datetime.fromisoformat(bionic["DeprecationTime"].replace("Z", "+00:00")) < datetime.now(UTC)


def test_run_instances_waits_for_a_new_instance_profile(aws):
    ec2, iam = aws.client("ec2"), aws.client("iam")
    iam.create_role(RoleName="web", AssumeRolePolicyDocument="{}")
    arn = iam.create_instance_profile(InstanceProfileName="web")["InstanceProfile"]["Arn"]
    iam.add_role_to_instance_profile(InstanceProfileName="web", RoleName="web")
    launch = {"ImageId": NOBLE, "MinCount": 1, "MaxCount": 1, "InstanceType": "t3.micro"}

    with pytest.raises(ClientError) as excinfo:
        ec2.run_instances(**launch, IamInstanceProfile={"Arn": arn})
    assert error_of(excinfo) == (
        "InvalidParameterValue",
        400,
        f"Value ({arn}) for parameter iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN",
    )
    with pytest.raises(ClientError) as excinfo:
        ec2.run_instances(**launch, IamInstanceProfile={"Name": "web"})
    assert error_of(excinfo) == (
        "InvalidParameterValue",
        400,
        "Value (web) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name",
    )

    time.sleep(DELAY)
    (instance,) = ec2.run_instances(**launch, IamInstanceProfile={"Arn": arn})["Instances"]
    assert instance["IamInstanceProfile"]["Arn"] == arn


def test_t2_micro_is_not_offered_in_the_first_zone(aws):
    ec2 = aws.client("ec2")
    offerings = ec2.describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": ["t2.micro", "t3.micro"]}]
    )["InstanceTypeOfferings"]
    zones = {(o["InstanceType"], o["Location"]) for o in offerings}
    assert ("t2.micro", "us-east-1a") not in zones
    assert {("t2.micro", "us-east-1b"), ("t3.micro", "us-east-1a")} <= zones

    launch = {"ImageId": NOBLE, "MinCount": 1, "MaxCount": 1, "InstanceType": "t2.micro"}
    message = (
        "Your requested instance type (t2.micro) is not supported in your requested Availability Zone (us-east-1a)."
        " Please retry your request by not specifying an Availability Zone or choosing"
        " us-east-1b, us-east-1c, us-east-1d, us-east-1e, us-east-1f."
    )
    for where in ({"SubnetId": subnet_in(aws, "us-east-1a")}, {"Placement": {"AvailabilityZone": "us-east-1a"}}):
        with pytest.raises(ClientError) as excinfo:
            ec2.run_instances(**launch, **where)
        assert error_of(excinfo) == ("Unsupported", 400, message)

    (in_b,) = ec2.run_instances(**launch, SubnetId=subnet_in(aws, "us-east-1b"))["Instances"]
    assert in_b["Placement"]["AvailabilityZone"] == "us-east-1b"
    (anywhere,) = ec2.run_instances(**launch)["Instances"]  # AWS picks a zone that offers it; moto took 1a
    assert anywhere["Placement"]["AvailabilityZone"] != "us-east-1a"
    ec2.run_instances(**{**launch, "InstanceType": "t3.micro"}, SubnetId=subnet_in(aws, "us-east-1a"))


def test_point_in_time_recovery_waits_after_create_table(aws):
    dynamodb = aws.client("dynamodb")
    dynamodb.create_table(
        TableName="ratings",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    assert dynamodb.describe_table(TableName="ratings")["Table"]["TableStatus"] == "ACTIVE"
    pitr = {"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}}

    with pytest.raises(ClientError) as excinfo:
        dynamodb.update_continuous_backups(TableName="ratings", **pitr)
    assert error_of(excinfo) == (
        "ContinuousBackupsUnavailableException",
        400,
        "Backups are being enabled for the table: ratings. Please retry later",
    )

    time.sleep(DELAY)
    answer = dynamodb.update_continuous_backups(TableName="ratings", **pitr)
    assert answer["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == (
        "ENABLED"
    )


def test_bucket_policy_right_after_public_access_block_is_denied(aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="menus")
    s3.put_public_access_block(
        Bucket="menus",
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": False,
            "IgnorePublicAcls": False,
            "BlockPublicPolicy": False,
            "RestrictPublicBuckets": False,
        },
    )
    policy = json.dumps(PUBLIC_READ).replace("{}", "menus")

    with pytest.raises(ClientError) as excinfo:
        s3.put_bucket_policy(Bucket="menus", Policy=policy)
    assert error_of(excinfo) == ("AccessDenied", 403, "Access Denied")

    time.sleep(DELAY)
    s3.put_bucket_policy(Bucket="menus", Policy=policy)
    assert json.loads(s3.get_bucket_policy(Bucket="menus")["Policy"]) == json.loads(policy)


def test_a_new_bucket_policy_reaches_anonymous_readers_late(aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="menus")
    s3.put_object(Bucket="menus", Key="index.html", Body=b"<h1>menu</h1>")
    s3.put_bucket_policy(Bucket="menus", Policy=json.dumps(PUBLIC_READ).replace("{}", "menus"))

    assert anonymous(aws, "/menus/index.html") == 403
    assert anonymous(aws, "/menus/index.html", "HEAD") == 403
    assert s3.get_object(Bucket="menus", Key="index.html")["Body"].read() == b"<h1>menu</h1>"  # signed: at once

    time.sleep(DELAY)
    assert anonymous(aws, "/menus/index.html") == 200
    assert anonymous(aws, "/menus/index.html", "HEAD") == 200


def test_account_block_public_access_refuses_public_policies(aws):
    s3, control = aws.client("s3"), aws.s3control()
    s3.create_bucket(Bucket="menus")
    with pytest.raises(ClientError) as excinfo:
        control.get_public_access_block(AccountId=ACCOUNT)
    assert error_of(excinfo)[:2] == ("NoSuchPublicAccessBlockConfiguration", 404)
    control.put_public_access_block(AccountId=ACCOUNT, PublicAccessBlockConfiguration={"BlockPublicPolicy": True})
    assert control.get_public_access_block(AccountId=ACCOUNT)["PublicAccessBlockConfiguration"]["BlockPublicPolicy"]

    for principal in ("*", {"AWS": "*"}):
        policy = json.loads(json.dumps(PUBLIC_READ).replace("{}", "menus"))
        policy["Statement"][0]["Principal"] = principal
        with pytest.raises(ClientError) as excinfo:
            s3.put_bucket_policy(Bucket="menus", Policy=json.dumps(policy))
        code, status, message = error_of(excinfo)
        assert (code, status) == ("AccessDenied", 403)
        assert message.endswith(
            'on resource: "arn:aws:s3:::menus" because public policies are blocked by the'
            " BlockPublicPolicy block public access setting."
        )

    policy["Statement"][0]["Principal"] = {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    s3.put_bucket_policy(Bucket="menus", Policy=json.dumps(policy))


def test_bucket_names_of_other_accounts(aws):
    s3 = aws.client("s3")
    assert aws.realism(foreign_buckets=["coffee-assets"])["foreign_buckets"] == ["coffee-assets"]
    with pytest.raises(ClientError) as excinfo:
        s3.head_bucket(Bucket="coffee-assets")
    assert error_of(excinfo)[:2] == ("403", 403)  # HEAD: the status alone
    with pytest.raises(ClientError) as excinfo:
        s3.create_bucket(Bucket="coffee-assets")
    code, status, message = error_of(excinfo)
    assert (code, status) == ("BucketAlreadyExists", 409)
    assert message.startswith("The requested bucket name is not available.")
    with pytest.raises(ClientError) as excinfo:
        s3.list_objects_v2(Bucket="coffee-assets")
    assert error_of(excinfo) == ("AccessDenied", 403, "Access Denied")

    aws.reset()  # a reset forgets them (back to those of the environment at start), keeps the delays
    assert aws.realism()["foreign_buckets"] == ["theirs-1", "theirs-2"]
    assert aws.realism()["iam_delay"] == DELAY
    s3.create_bucket(Bucket="coffee-assets")


def test_a_security_group_stays_in_use_after_its_instance_terminated(aws):
    ec2 = aws.client("ec2")
    group = ec2.create_security_group(GroupName="web", Description="web")["GroupId"]
    (instance,) = ec2.run_instances(ImageId=NOBLE, MinCount=1, MaxCount=1, SecurityGroupIds=[group])["Instances"]
    dependent = ("DependencyViolation", 400, f"resource {group} has a dependent object")
    with pytest.raises(ClientError) as excinfo:
        ec2.delete_security_group(GroupId=group)
    assert error_of(excinfo) == dependent

    ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    for by in ({"GroupId": group}, {"GroupName": "web"}):
        with pytest.raises(ClientError) as excinfo:
            ec2.delete_security_group(**by)
        assert error_of(excinfo) == dependent

    time.sleep(DELAY)
    ec2.delete_security_group(GroupName="web")
    assert group not in {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]}


def test_a_security_group_stays_in_use_after_its_load_balancer_was_deleted(aws):
    ec2, elb = aws.client("ec2"), aws.client("elbv2")
    group = ec2.create_security_group(GroupName="alb", Description="alb")["GroupId"]
    (balancer,) = elb.create_load_balancer(
        Name="shop",
        Subnets=[subnet_in(aws, "us-east-1a"), subnet_in(aws, "us-east-1b")],
        SecurityGroups=[group],
        Type="application",
    )["LoadBalancers"]
    dependent = ("DependencyViolation", 400, f"resource {group} has a dependent object")
    with pytest.raises(ClientError) as excinfo:
        ec2.delete_security_group(GroupId=group)
    assert error_of(excinfo) == dependent

    elb.delete_load_balancer(LoadBalancerArn=balancer["LoadBalancerArn"])
    assert elb.describe_load_balancers()["LoadBalancers"] == []
    for by in ({"GroupId": group}, {"GroupName": "alb"}):
        with pytest.raises(ClientError) as excinfo:
            ec2.delete_security_group(**by)
        assert error_of(excinfo) == dependent

    time.sleep(DELAY)
    ec2.delete_security_group(GroupId=group)
    assert group not in {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]}


def test_an_account_without_a_default_vpc(aws):
    ec2 = aws.client("ec2")
    default = [{"Name": "is-default", "Values": ["true"]}]
    (vpc,) = ec2.describe_vpcs(Filters=default)["Vpcs"]
    removed = aws.remove_default_vpc("us-east-1")
    assert removed["vpc"] == vpc["VpcId"]
    assert len(removed["subnets"]) == 6
    assert ec2.describe_vpcs(Filters=default)["Vpcs"] == []
    assert ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"] == []
    assert aws.remove_default_vpc("us-east-1")["vpc"] is None

    with pytest.raises(ClientError) as excinfo:
        ec2.run_instances(ImageId=NOBLE, MinCount=1, MaxCount=1, InstanceType="t3.micro")
    assert error_of(excinfo)[:2] == ("VPCIdNotSpecified", 400)
    with pytest.raises(ClientError) as excinfo:
        ec2.create_security_group(GroupName="web", Description="web")
    assert error_of(excinfo) == ("VPCIdNotSpecified", 400, "No default VPC for this user")
    other = boto3.client(
        "ec2", endpoint_url=aws.endpoint, region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    assert other.describe_vpcs(Filters=default)["Vpcs"]  # other regions keep theirs

    aws.reset()  # moto builds a fresh default VPC
    assert ec2.describe_vpcs(Filters=default)["Vpcs"]


def test_without_the_variable_none_of_it():
    with embedded_aws_server(realism=False, SANDBOX_AWS_REALISM_FOREIGN_BUCKETS="coffee-assets") as aws:
        assert not aws.realism_enabled
        ec2, iam, s3, dynamodb = aws.client("ec2"), aws.client("iam"), aws.client("s3"), aws.client("dynamodb")
        images = ec2.describe_images(Owners=[CANONICAL])["Images"]
        assert BIONIC in {i["ImageId"] for i in images}
        assert not any("DeprecationTime" in i for i in images)
        offerings = ec2.describe_instance_type_offerings(
            LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": ["t2.micro"]}]
        )["InstanceTypeOfferings"]
        assert "us-east-1a" in {o["Location"] for o in offerings}

        iam.create_role(RoleName="web", AssumeRolePolicyDocument="{}")
        iam.create_instance_profile(InstanceProfileName="web")
        iam.add_role_to_instance_profile(InstanceProfileName="web", RoleName="web")
        group = ec2.create_security_group(GroupName="web", Description="web")["GroupId"]
        (instance,) = ec2.run_instances(
            ImageId=NOBLE,
            MinCount=1,
            MaxCount=1,
            InstanceType="t2.micro",
            SubnetId=subnet_in(aws, "us-east-1a"),
            IamInstanceProfile={"Name": "web"},
            SecurityGroupIds=[group],
        )["Instances"]
        ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
        ec2.delete_security_group(GroupId=group)

        dynamodb.create_table(
            TableName="ratings",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        pitr = {"PointInTimeRecoveryEnabled": True}
        dynamodb.update_continuous_backups(TableName="ratings", PointInTimeRecoverySpecification=pitr)
        dynamodb.put_item(TableName="ratings", Item={"id": {"S": "espresso"}})
        # moto copies the items as they are now, whatever the time (the unkind mode: InvalidRestoreTimeException)
        dynamodb.restore_table_to_point_in_time(
            SourceTableName="ratings", TargetTableName="ratings-2000", RestoreDateTime=datetime(2000, 1, 1, tzinfo=UTC)
        )
        assert dynamodb.scan(TableName="ratings-2000")["Items"] == [{"id": {"S": "espresso"}}]

        s3.create_bucket(Bucket="coffee-assets")
        s3.put_object(Bucket="coffee-assets", Key="index.html", Body=b"menu")
        s3.put_public_access_block(Bucket="coffee-assets", PublicAccessBlockConfiguration={"BlockPublicPolicy": False})
        aws.s3control().put_public_access_block(
            AccountId=ACCOUNT, PublicAccessBlockConfiguration={"BlockPublicPolicy": True}
        )
        s3.put_bucket_policy(Bucket="coffee-assets", Policy=json.dumps(PUBLIC_READ).replace("{}", "coffee-assets"))
        assert anonymous(aws, "/coffee-assets/index.html") == 200
