#!/usr/bin/python
"""Ansible module: what a first run needs to know about the AWS account, read in one module run."""

DOCUMENTATION = r"""
module: aws_account_facts
short_description: The caller's account, its network for the instances, and the media bucket's standing
description:
  - Reads, without changing anything, what decides whether a first run on an account can succeed, so
    that preflight stops with an operator-fixable message before anything is created.
  - The caller identity (sts:GetCallerIdentity) - the account id and partition of the credentials.
  - With C(network) - the VPC (the one given, or the region's default VPC), its subnets for the
    instances (the ones given, or the default VPC's default subnets), and in which of their zones the
    instance type is offered (DescribeInstanceTypeOfferings). Not every zone offers every type.
  - With C(bucket_name) - whether the bucket is this account's, absent, or another account's
    (HeadBucket with ExpectedBucketOwner; a stranger's bucket answers 403, not 404), and the
    account-level S3 Block Public Access, which can forbid the public media policy altogether.
  - One module run instead of five (amazon.aws has no module for the account-level public access
    block, the bucket's owner or the type offerings), which keeps a no-op rerun fast.
options:
  network: {description: Look up the VPC and the instance subnets., type: bool, default: false}
  vpc_id: {description: The VPC; empty means the region's default VPC., type: str, default: ""}
  subnet_ids:
    description: Subnets for the instances; empty means the VPC's default subnets.
    type: list
    elements: str
    default: []
  instance_type: {description: Instance type whose zone offerings are checked., type: str, default: ""}
  bucket_name: {description: Bucket whose owner and the account's public access block are read., type: str, default: ""}
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

RETURN = r"""
account_id: {description: Account of the credentials., returned: always, type: str}
arn: {description: The caller's ARN., returned: always, type: str}
partition: {description: Partition of the credentials (aws, aws-cn, aws-us-gov)., returned: always, type: str}
vpc_id: {description: The VPC found, empty when there is none., returned: with network, type: str}
vpc_is_default: {description: Whether it is the region's default VPC., returned: with network, type: bool}
vpc_problem: {description: Why no VPC could be used, empty when one was found., returned: with network, type: str}
subnets:
  description: The candidate subnets, by zone, with what makes them usable for the instances.
  returned: with network
  type: list
  elements: dict
instance_subnet_ids:
  description: Usable subnets (in the VPC, mapping public IPs, the type offered in their zone).
  returned: with network
  type: list
bucket_owner:
  description: "`self`, `absent` or `other` (another account, or not readable)."
  returned: with bucket_name
  type: str
account_public_access_block:
  description: The account-level Block Public Access settings ({} when unset, null when unreadable).
  returned: with bucket_name
  type: dict
"""

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency.

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def find_vpc(ec2, vpc_id):
    """(vpc dict or None, problem sentence)."""
    if vpc_id:
        try:
            return ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0], ""
        except is_boto3_error_code(["InvalidVpcID.NotFound", "InvalidVpcID.Malformed"]):
            return None, f"VPC {vpc_id} does not exist in this region"
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    return (vpcs[0], "") if vpcs else (None, "this region of the account has no default VPC")


def candidate_subnets(ec2, vpc, subnet_ids):
    if subnet_ids:
        try:
            return ec2.describe_subnets(SubnetIds=subnet_ids)["Subnets"]
        except is_boto3_error_code(["InvalidSubnetID.NotFound", "InvalidSubnetID.Malformed"]) as error:
            raise LookupError(f"subnet(s) not found in this region: {error}") from None
    filters = [{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
    if vpc.get("IsDefault"):
        filters.append({"Name": "default-for-az", "Values": ["true"]})
    return ec2.describe_subnets(Filters=filters)["Subnets"]


def offered_zones(ec2, instance_type, zones):
    if not instance_type or not zones:
        return set(zones)
    pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
        LocationType="availability-zone",
        Filters=[
            {"Name": "instance-type", "Values": [instance_type]},
            {"Name": "location", "Values": sorted(zones)},
        ],
    )
    return {offer["Location"] for page in pages for offer in page["InstanceTypeOfferings"]}


def network_facts(module, ec2):
    params = module.params
    vpc, problem = find_vpc(ec2, params["vpc_id"])
    facts = dict(vpc_id="", vpc_is_default=False, vpc_problem=problem, subnets=[], instance_subnet_ids=[])
    facts["subnet_problem"] = ""
    if vpc is None:
        return facts
    facts.update(vpc_id=vpc["VpcId"], vpc_is_default=bool(vpc.get("IsDefault")))
    try:
        found = candidate_subnets(ec2, vpc, params["subnet_ids"])
    except LookupError as error:
        facts["subnet_problem"] = str(error)
        return facts
    offered = offered_zones(ec2, params["instance_type"], {s["AvailabilityZone"] for s in found})
    facts["subnets"] = [
        dict(
            subnet_id=s["SubnetId"],
            availability_zone=s["AvailabilityZone"],
            in_vpc=s["VpcId"] == vpc["VpcId"],
            maps_public_ip=bool(s.get("MapPublicIpOnLaunch")),
            offers_instance_type=s["AvailabilityZone"] in offered,
        )
        for s in sorted(found, key=lambda s: (s["AvailabilityZone"], s["SubnetId"]))
    ]
    facts["instance_subnet_ids"] = [
        s["subnet_id"] for s in facts["subnets"] if s["in_vpc"] and s["maps_public_ip"] and s["offers_instance_type"]
    ]
    return facts


def strip_account_label(request, account_id):
    request.url = request.url.replace(f"//{account_id}.", "//", 1)


def bucket_facts(module, account_id):
    name = module.params["bucket_name"]
    s3 = module.client("s3")
    try:
        s3.head_bucket(Bucket=name, ExpectedBucketOwner=account_id)
        owner = "self"
    except is_boto3_error_code(["404", "NoSuchBucket", "NotFound"]):
        owner = "absent"
    except is_boto3_error_code(["403", "AccessDenied", "Forbidden"]):
        owner = "other"
    control = module.client("s3control")
    if module.params.get("endpoint_url"):
        # boto3 puts the account id into the host name (<account>.s3-control.<region>.amazonaws.com);
        # a custom endpoint such as the embedded AWS on 127.0.0.1 has no such names.
        control.meta.events.register(
            "before-sign.s3-control", lambda request, **_: strip_account_label(request, account_id)
        )
    try:
        account_block = control.get_public_access_block(AccountId=account_id)["PublicAccessBlockConfiguration"]
    except is_boto3_error_code("NoSuchPublicAccessBlockConfiguration"):
        account_block = {}
    except is_boto3_error_code(["AccessDenied", "AccessDeniedException"]):
        module.warn(
            "Could not read the account-level S3 Block Public Access (s3:GetAccountPublicAccessBlock "
            "denied); if it blocks public policies, the media bucket's policy will be refused."
        )
        account_block = None
    return dict(bucket_owner=owner, account_public_access_block=account_block)


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            network=dict(type="bool", default=False),
            vpc_id=dict(type="str", default=""),
            subnet_ids=dict(type="list", elements="str", default=[]),
            instance_type=dict(type="str", default=""),
            bucket_name=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    try:
        identity = module.client("sts").get_caller_identity()
    except (BotoCoreError, ClientError) as error:
        module.fail_json_aws(
            error,
            msg=(
                "Could not read the caller identity (sts:GetCallerIdentity): check the AWS credentials "
                "(boto3's default chain: AWS_PROFILE, ~/.aws, SSO, environment) and aws_region"
            ),
        )
    facts = dict(account_id=identity["Account"], arn=identity["Arn"], partition=identity["Arn"].split(":")[1])
    try:
        if module.params["network"]:
            facts.update(network_facts(module, module.client("ec2")))
        if module.params["bucket_name"]:
            facts.update(bucket_facts(module, facts["account_id"]))
    except (BotoCoreError, ClientError) as error:
        module.fail_json_aws(error, msg="Could not read the account's network or S3 settings")
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
