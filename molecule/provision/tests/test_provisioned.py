"""Every property of the provisioned stack, read back through boto3 from the embedded AWS."""

import ipaddress
import json
import os
import urllib.error
import urllib.request

import boto3
import pytest

ENDPOINT = os.environ.get("SANDBOX_AWS_ENDPOINT", "http://127.0.0.1:5000")
PROJECT = os.environ.get("MOLECULE_PROJECT_NAME", "ranker-molecule")
BUCKET = f"sandbox-{PROJECT}-media-123456789012"  # moto's account id
NAME = f"{PROJECT}-api"
API_PORT = 11373
# The API's metrics and node_exporter's, open to monitoring_cidr only (ssh_admin_cidr by default).
METRICS_PORTS = (11374, 9100)
CANONICAL = "099720109477"


def client(service):
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def instances():
    reservations = client("ec2").describe_instances(
        Filters=[{"Name": "tag:Project", "Values": [PROJECT]}, {"Name": "instance-state-name", "Values": ["running"]}]
    )["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def test_bucket_is_encrypted_owner_enforced_versioned_and_tagged():
    s3 = client("s3")
    rule = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    ownership = s3.get_bucket_ownership_controls(Bucket=BUCKET)["OwnershipControls"]["Rules"][0]
    assert ownership["ObjectOwnership"] == "BucketOwnerEnforced"
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]}
    assert tags["Project"] == PROJECT


def test_bucket_blocks_public_acls_but_allows_its_policy():
    block = client("s3").get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": False,
        "RestrictPublicBuckets": False,
    }


def test_bucket_policy_grants_public_get_under_the_media_prefix_only():
    policy = json.loads(client("s3").get_bucket_policy(Bucket=BUCKET)["Policy"])
    public = [s for s in policy["Statement"] if s["Principal"] in ("*", {"AWS": "*"})]
    assert len(public) == 1
    statement = public[0]
    assert statement["Effect"] == "Allow"
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    # Nothing publicly listable or writable: the one public statement is GetObject on media/*.
    assert actions == ["s3:GetObject"]
    assert statement["Resource"] == f"arn:aws:s3:::{BUCKET}/media/*"


def test_objects_under_media_are_publicly_readable_and_others_are_not():
    s3 = client("s3")
    s3.put_object(Bucket=BUCKET, Key="private/secret.txt", Body=b"not for the public")
    probe = urllib.request.urlopen(f"{ENDPOINT}/{BUCKET}/media/probe/public-read.txt", timeout=10).read()
    assert PROJECT.encode() in probe
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(f"{ENDPOINT}/{BUCKET}/private/secret.txt", timeout=10)
    assert denied.value.code == 403
    # The embedded AWS enforces bucket policies only for anonymous GET: it accepts anonymous listing and
    # writes whatever the policy says, so "not listable or writable" is proven on the policy text above.
    s3.delete_object(Bucket=BUCKET, Key="private/secret.txt")


def test_key_pair_is_imported_and_tagged():
    pair = client("ec2").describe_key_pairs(KeyNames=[PROJECT])["KeyPairs"][0]
    assert pair["KeyType"] == "ed25519"


def test_security_group_opens_ssh_to_the_admin_cidr_the_api_to_everyone_and_metrics_to_monitoring():
    groups = client("ec2").describe_security_groups(Filters=[{"Name": "group-name", "Values": [NAME]}])[
        "SecurityGroups"
    ]
    assert len(groups) == 1
    group = groups[0]
    assert group["Description"] == "Coffee Ranker App Comm Channel"
    rules = {(p["FromPort"], p["ToPort"]): p for p in group["IpPermissions"]}
    assert set(rules) == {(22, 22), (API_PORT, API_PORT), *((port, port) for port in METRICS_PORTS)}
    ssh_sources = [r["CidrIp"] for r in rules[(22, 22)]["IpRanges"]]
    assert ssh_sources == ["10.213.0.0/16"]
    assert not rules[(22, 22)].get("Ipv6Ranges")
    assert [r["CidrIp"] for r in rules[(API_PORT, API_PORT)]["IpRanges"]] == ["0.0.0.0/0"]
    assert [r["CidrIpv6"] for r in rules[(API_PORT, API_PORT)]["Ipv6Ranges"]] == ["::/0"]
    for port in METRICS_PORTS:
        assert [r["CidrIp"] for r in rules[(port, port)]["IpRanges"]] == ["10.213.0.0/16"], port
        assert not rules[(port, port)].get("Ipv6Ranges"), port


def test_instance_profile_allows_only_media_objects():
    iam = client("iam")
    profile = iam.get_instance_profile(InstanceProfileName=NAME)["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [NAME]
    trust = iam.get_role(RoleName=NAME)["Role"]["AssumeRolePolicyDocument"]
    if isinstance(trust, str):
        trust = json.loads(trust)
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    policy = iam.get_role_policy(RoleName=NAME, PolicyName=f"{NAME}-access")["PolicyDocument"]
    if isinstance(policy, str):
        policy = json.loads(policy)
    media = [s for s in policy["Statement"] if s["Sid"] == "MediaObjects"][0]
    assert sorted(media["Action"]) == ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    assert media["Resource"] == f"arn:aws:s3:::{BUCKET}/media/*"
    # Readiness (HeadBucket) needs ListBucket on the bucket itself; nothing else bucket-wide.
    bucket_wide = [s for s in policy["Statement"] if s["Resource"] == f"arn:aws:s3:::{BUCKET}"]
    assert [s["Action"] for s in bucket_wide] == ["s3:ListBucket"]
    assert not iam.list_attached_role_policies(RoleName=NAME)["AttachedPolicies"]


def test_exactly_one_instance_runs_from_the_newest_bionic_image(instances):
    assert len(instances) == 1
    # Deprecated ones too: AWS (and the unkind embedded AWS this scenario runs on) deprecates public
    # images after two years, every Ubuntu 18.04 image among them.
    images = client("ec2").describe_images(
        Owners=[CANONICAL],
        IncludeDeprecated=True,
        Filters=[{"Name": "name", "Values": ["ubuntu/images/hvm-ssd*/ubuntu-*-18.04-amd64-server-*"]}],
    )["Images"]
    newest = max(images, key=lambda image: image["CreationDate"])
    assert instances[0]["ImageId"] == newest["ImageId"]
    assert instances[0]["InstanceType"] == "t2.micro"


def test_instance_is_hardened_and_wired(instances):
    instance = instances[0]
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags == {"Project": PROJECT, "Role": "api", "Name": NAME}
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["KeyName"] == PROJECT
    assert instance["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{NAME}")
    assert [g["GroupName"] for g in instance["SecurityGroups"]] == [NAME]
    ipaddress.ip_address(instance["PublicIpAddress"])


def test_root_volume_is_encrypted_gp3(instances):
    # ec2_vol_info fails on moto (KeyError: 'snapshot_id'), so volumes are read with boto3.
    volume_id = instances[0]["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    volume = client("ec2").describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert volume["Encrypted"] is True
    assert volume["VolumeType"] == "gp3"


def test_datastore_table_is_on_demand_encrypted_recoverable_and_tagged():
    dynamodb = client("dynamodb")
    table = dynamodb.describe_table(TableName=f"{PROJECT}-data")["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]} == {("pk", "HASH"), ("sk", "RANGE")}
    assert table["SSEDescription"]["Status"] == "ENABLED"
    assert table["SSEDescription"]["SSEType"] == "KMS"
    backups = dynamodb.describe_continuous_backups(TableName=f"{PROJECT}-data")["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    tags = {t["Key"]: t["Value"] for t in dynamodb.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"]}
    assert tags["Project"] == PROJECT


def test_instance_profile_grants_item_actions_on_that_table_only():
    iam = client("iam")
    policy = iam.get_role_policy(RoleName=NAME, PolicyName=f"{NAME}-access")["PolicyDocument"]
    if isinstance(policy, str):
        policy = json.loads(policy)
    table_arn = client("dynamodb").describe_table(TableName=f"{PROJECT}-data")["Table"]["TableArn"]
    items = [s for s in policy["Statement"] if s["Sid"] == "DatastoreItems"][0]
    assert items["Resource"] == table_arn
    assert all(action.startswith("dynamodb:") for action in items["Action"])
    assert sorted(items["Action"]) == [
        "dynamodb:ConditionCheckItem",
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    ]
    assert len(policy["Statement"]) == 3
