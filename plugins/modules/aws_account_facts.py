#!/usr/bin/python
# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: what a first run needs to know about the AWS account, read in one module run."""

DOCUMENTATION = r"""
module: aws_account_facts
short_description: The caller's account, its network for the instances, and the media bucket's standing
author: Coffee Shop Ranker operations team (!UNKNOWN)
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
  - With C(stack) - the stack's own resources as they are now, each in the shape its role asks for
    (C(null) when absent) - the key pair, the security group, the IAM role with its instance profile
    and inline policy, the DynamoDB table, the media bucket's settings and the API instances. The
    roles that own them run their module only where this differs from what they ask for.
  - One module run instead of a dozen (amazon.aws has no module for the account-level public access
    block, the bucket's owner or the type offerings, and each module run costs most of a second),
    which keeps a no-op rerun fast.
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
  stack:
    description: Names of the stack's resources to read; a resource left out (or empty) is not read.
    type: dict
    default: {}
    suboptions:
      key_pair: {description: Key pair name., type: str, default: ""}
      security_group: {description: Security group name (in C(vpc_id) or the default VPC)., type: str, default: ""}
      instance_profile: {description: IAM role and instance profile name., type: str, default: ""}
      policy: {description: Name of the role's inline policy., type: str, default: ""}
      table: {description: DynamoDB table name., type: str, default: ""}
      bucket:
        description:
          - Media bucket name (read only when it is this account's). C({account_id}) in it stands for
            the account id, which this module reads.
        type: str
        default: ""
      instance_filters: {description: EC2 filters of the API instances; empty reads none., type: dict, default: {}}
      media_distribution:
        description:
          - Comment of the media's CloudFront distribution (roles/media_cdn), by which it is found.
        type: str
        default: ""
      media_access_control:
        description: Name of the media's CloudFront origin access control.
        type: str
        default: ""
      burstable_families:
        description:
          - Instance families that earn CPU credits (C(t2), C(t3)...). Each running instance of one of them
            gets C(cpu_credits), its credit mode (standard or unlimited), read in the same run.
        type: list
        elements: str
        default: []
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Read the account of the credentials
  coffeeshop.ranker.aws_account_facts:
  register: account

- name: Read the network for the instances and the stack's key pair and table as they are now
  coffeeshop.ranker.aws_account_facts:
    network: true
    instance_type: t3.micro
    stack:
      key_pair: coffee-ranker
      table: coffee-ranker-data
  register: account

- name: Read who owns the media bucket, and the account's public access block
  coffeeshop.ranker.aws_account_facts:
    bucket_name: coffee-ranker-media-123456789012
  register: bucket
"""

RETURN = r"""
account_id: {description: Account of the credentials., returned: always, type: str}
arn: {description: The caller's ARN., returned: always, type: str}
partition:
  description: Partition of the credentials (C(aws), C(aws-cn), C(aws-us-gov)).
  returned: always
  type: str
vpc_id:
  description: The VPC found, empty when there is none.
  returned: with network
  type: str
vpc_is_default: {description: Whether it is the region's default VPC., returned: with network, type: bool}
vpc_problem:
  description: Why no VPC could be used, empty when one was found.
  returned: with network
  type: str
subnets:
  description: The candidate subnets, by zone, with what makes them usable for the instances.
  returned: with network
  type: list
  elements: dict
instance_subnet_ids:
  description: Usable subnets (in the VPC, mapping public IPs, the type offered in their zone).
  returned: with network
  type: list
load_balancer_subnet_ids:
  description: One public subnet per zone (in the VPC, mapping public IPs), for an internet-facing load balancer.
  returned: with network
  type: list
vpc_cidr: {description: The VPC's IPv4 range., returned: with network, type: str}
bucket_owner:
  description: "`self`, `absent` or `other` (another account, or not readable)."
  returned: with bucket_name
  type: str
account_public_access_block:
  description: The account-level Block Public Access settings ({} when unset, null when unreadable).
  returned: with bucket_name
  type: dict
stack:
  description:
    - The stack's resources named in C(stack), each null when absent, in the shape of the owning role's
      <role>_wanted (its vars/main.yml).
    - key_pair {public_key (type and key), tags}; security_group {description, vpc_id, ingress (one
      "proto from-to source description" string per source, sorted), tags}; instance_profile {role
      {description, trust_policy, tags, profile_roles}, policy}; table {key_schema, sse,
      point_in_time_recovery, tags}; bucket {object_ownership, public_access, policy, encryption,
      versioning, tags}; instances (as amazon.aws.ec2_instance_info returns them, with cpu_credits on
      the running ones of the burstable_families) and the instance_filters they were read with;
      media_distribution {id, arn, domain_name, status, config {enabled, comment, aliases, origins,
      viewer_protocol_policy, cache_policy_id, compress, price_class, http_version, ipv6_enabled,
      certificate_arn}, tags}; media_access_control {id, config {description, origin_type,
      signing_behavior, signing_protocol}}.
  returned: with stack
  type: dict
"""

import functools
import json

try:
    from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency.

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict
from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.tagging import boto3_tag_list_to_ansible_dict
from ansible_collections.amazon.aws.plugins.module_utils.transformation import ansible_dict_to_boto3_filter_list


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
    facts = dict(vpc_id="", vpc_cidr="", vpc_is_default=False, vpc_problem=problem, subnets=[], instance_subnet_ids=[])
    facts.update(subnet_problem="", load_balancer_subnet_ids=[])
    if vpc is None:
        return facts
    facts.update(vpc_id=vpc["VpcId"], vpc_cidr=vpc["CidrBlock"], vpc_is_default=bool(vpc.get("IsDefault")))
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
    # An internet-facing load balancer takes one public subnet per zone (it needs two zones or more),
    # whether or not the zone offers the instance type.
    per_zone = {}
    for subnet in facts["subnets"]:
        if subnet["in_vpc"] and subnet["maps_public_ip"]:
            per_zone.setdefault(subnet["availability_zone"], subnet["subnet_id"])
    facts["load_balancer_subnet_ids"] = list(per_zone.values())
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


# The stack's resources. Each reader returns the resource in the shape its role compares with what it
# asks for, or None when it is absent: a field left out here is a difference the role cannot see.


def tags_of(tag_list):
    return boto3_tag_list_to_ansible_dict(tag_list or [])


def read_key_pair(ec2, name):
    try:
        pair = ec2.describe_key_pairs(KeyNames=[name], IncludePublicKey=True)["KeyPairs"][0]
    except is_boto3_error_code(["InvalidKeyPair.NotFound", "InvalidKeyPair.Malformed"]):
        return None
    # "<type> <base64 key> [comment]": AWS appends the key pair's name as the comment.
    return dict(public_key=" ".join(pair.get("PublicKey", "").split()[:2]), tags=tags_of(pair.get("Tags")))


def permission_strings(permissions):
    """One "proto from-to source [description]" string per source of each permission, sorted."""
    rules = []
    for permission in permissions:
        proto = "all" if permission["IpProtocol"] == "-1" else permission["IpProtocol"]
        ports = f"{permission['FromPort']}-{permission['ToPort']}" if "FromPort" in permission else "all"
        sources = (
            [(r["CidrIp"], r.get("Description", "")) for r in permission.get("IpRanges", [])]
            + [(r["CidrIpv6"], r.get("Description", "")) for r in permission.get("Ipv6Ranges", [])]
            + [(r["GroupId"], r.get("Description", "")) for r in permission.get("UserIdGroupPairs", [])]
            + [(r["PrefixListId"], r.get("Description", "")) for r in permission.get("PrefixListIds", [])]
        )
        rules += [" ".join(filter(None, [proto, ports, source, description])) for source, description in sources]
    return sorted(rules)


def read_security_group(ec2, name, vpc_id):
    filters = [{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}]
    groups = ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
    if len(groups) != 1:
        return None
    group = groups[0]
    # Outbound rules are not read: roles/security_group leaves them as they are.
    return dict(
        description=group["Description"],
        vpc_id=group["VpcId"],
        ingress=permission_strings(group.get("IpPermissions", [])),
        tags=tags_of(group.get("Tags")),
    )


def read_instance_profile(iam, name, policy_name):
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except is_boto3_error_code("NoSuchEntity"):
        return None
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        profile_roles = [r["RoleName"] for r in profile["Roles"]]
    except is_boto3_error_code("NoSuchEntity"):
        profile_roles = None
    try:
        policy = iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"] if policy_name else None
    except is_boto3_error_code("NoSuchEntity"):
        policy = None
    role = dict(
        description=role.get("Description", ""),
        trust_policy=role["AssumeRolePolicyDocument"],
        # GetRole's own tags: the operator policy (docs/operator-iam-policy.json) grants no ListRoleTags.
        tags=tags_of(role.get("Tags")),
        profile_roles=profile_roles,
    )
    return dict(role=role, policy=policy)


def read_table(dynamodb, name):
    try:
        table = dynamodb.describe_table(TableName=name)["Table"]
    except is_boto3_error_code("ResourceNotFoundException"):
        return None
    backups = dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    return dict(
        key_schema={k["KeyType"]: k["AttributeName"] for k in table["KeySchema"]},
        sse=table.get("SSEDescription", {}).get("Status", "DISABLED"),
        point_in_time_recovery=backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED",
        tags=tags_of(dynamodb.list_tags_of_resource(ResourceArn=table["TableArn"]).get("Tags")),
    )


def read_bucket(s3, name, account_id):
    """The bucket's settings that roles/media_bucket manages; None unless this account's bucket."""
    try:
        s3.head_bucket(Bucket=name, ExpectedBucketOwner=account_id)
    except is_boto3_error_code(["404", "NoSuchBucket", "NotFound", "403", "AccessDenied", "Forbidden", "400"]):
        return None
    except ParamValidationError:
        return None  # Not a bucket name: preflight says why, after this read.

    def read(call, missing, pick):
        try:
            return pick(call(Bucket=name))
        except is_boto3_error_code(missing):
            return None

    return dict(
        object_ownership=read(
            s3.get_bucket_ownership_controls,
            "OwnershipControlsNotFoundError",
            lambda r: r["OwnershipControls"]["Rules"][0]["ObjectOwnership"],
        ),
        public_access=read(
            s3.get_public_access_block,
            "NoSuchPublicAccessBlockConfiguration",
            lambda r: camel_dict_to_snake_dict(r["PublicAccessBlockConfiguration"]),
        ),
        policy=read(s3.get_bucket_policy, "NoSuchBucketPolicy", lambda r: json.loads(r["Policy"])),
        encryption=read(
            s3.get_bucket_encryption,
            "ServerSideEncryptionConfigurationNotFoundError",
            lambda r: r["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"][
                "SSEAlgorithm"
            ],
        ),
        versioning={"Enabled": True, "Suspended": False}.get(s3.get_bucket_versioning(Bucket=name).get("Status")),
        tags=read(s3.get_bucket_tagging, "NoSuchTagSet", lambda r: tags_of(r["TagSet"])) or {},
    )


def read_instances(ec2, filters, burstable_families):
    pages = ec2.get_paginator("describe_instances").paginate(Filters=ansible_dict_to_boto3_filter_list(filters))
    instances = []
    for page in pages:
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                found = camel_dict_to_snake_dict(instance)
                found["tags"] = tags_of(instance.get("Tags"))
                instances.append(found)
    # The credit mode is not in DescribeInstances; roles/api_instances changes only the ones that differ.
    burstable = {
        i["instance_id"]: i
        for i in instances
        if i["state"]["name"] == "running" and i["instance_type"].split(".")[0] in burstable_families
    }
    if burstable:
        specifications = ec2.describe_instance_credit_specifications(InstanceIds=sorted(burstable))
        for specification in specifications["InstanceCreditSpecifications"]:
            burstable[specification["InstanceId"]]["cpu_credits"] = specification["CpuCredits"]
    return sorted(instances, key=lambda i: i["launch_time"])


def read_media_access_control(cloudfront, name):
    """The origin access control of this name (names are unique in an account), or None."""
    marker = ""
    while True:
        page = cloudfront.list_origin_access_controls(**({"Marker": marker} if marker else {}))
        listing = page["OriginAccessControlList"]
        for control in listing.get("Items") or []:
            if control["Name"] == name:
                return dict(
                    id=control["Id"],
                    config=dict(
                        description=control.get("Description", ""),
                        origin_type=control["OriginAccessControlOriginType"],
                        signing_behavior=control["SigningBehavior"],
                        signing_protocol=control["SigningProtocol"],
                    ),
                )
        marker = listing.get("NextMarker")
        if not listing.get("IsTruncated") or not marker:
            return None


def read_media_distribution(cloudfront, comment):
    """The distribution with this comment, in the shape roles/media_cdn asks for, or None."""
    for page in cloudfront.get_paginator("list_distributions").paginate():
        for summary in page["DistributionList"].get("Items") or []:
            if summary.get("Comment") != comment:
                continue
            behavior = summary["DefaultCacheBehavior"]
            certificate = summary.get("ViewerCertificate", {})
            return dict(
                id=summary["Id"],
                arn=summary["ARN"],
                domain_name=summary["DomainName"],
                status=summary["Status"],
                config=dict(
                    enabled=summary["Enabled"],
                    comment=summary["Comment"],
                    aliases=sorted(summary.get("Aliases", {}).get("Items") or []),
                    origins=[
                        dict(
                            id=origin["Id"],
                            domain_name=origin["DomainName"],
                            origin_path=origin.get("OriginPath", ""),
                            origin_access_control_id=origin.get("OriginAccessControlId", ""),
                        )
                        for origin in summary["Origins"].get("Items") or []
                    ],
                    viewer_protocol_policy=behavior["ViewerProtocolPolicy"],
                    cache_policy_id=behavior.get("CachePolicyId", ""),
                    compress=behavior.get("Compress", False),
                    price_class=summary["PriceClass"],
                    http_version=summary.get("HttpVersion", ""),
                    ipv6_enabled=summary.get("IsIPV6Enabled", False),
                    certificate_arn=certificate.get("ACMCertificateArn", ""),
                ),
                tags=tags_of(cloudfront.list_tags_for_resource(Resource=summary["ARN"])["Tags"].get("Items")),
            )
    return None


def stack_facts(client, names, account_id, vpc_id):
    stack = {}
    if names["key_pair"]:
        stack["key_pair"] = read_key_pair(client("ec2"), names["key_pair"])
    if names["security_group"]:
        # Without a VPC (preflight stops the run then) there is no group of this stack either.
        group = read_security_group(client("ec2"), names["security_group"], vpc_id) if vpc_id else None
        stack["security_group"] = group
    if names["instance_profile"]:
        stack["instance_profile"] = read_instance_profile(client("iam"), names["instance_profile"], names["policy"])
    if names["table"]:
        stack["table"] = read_table(client("dynamodb"), names["table"])
    if names["bucket"]:
        bucket = names["bucket"].replace("{account_id}", account_id)
        stack["bucket"] = read_bucket(client("s3"), bucket, account_id)
    if names["media_distribution"]:
        stack["media_distribution"] = read_media_distribution(client("cloudfront"), names["media_distribution"])
    if names["media_access_control"]:
        stack["media_access_control"] = read_media_access_control(client("cloudfront"), names["media_access_control"])
    if names["instance_filters"]:
        stack["instances"] = read_instances(client("ec2"), names["instance_filters"], names["burstable_families"])
        # The role that owns the instances trusts this read only when it selects them the same way.
        stack["instance_filters"] = names["instance_filters"]
    return stack


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            network=dict(type="bool", default=False),
            vpc_id=dict(type="str", default=""),
            subnet_ids=dict(type="list", elements="str", default=[]),
            instance_type=dict(type="str", default=""),
            bucket_name=dict(type="str", default=""),
            stack=dict(
                type="dict",
                default={},
                options=dict(
                    # A key pair's name, not its key: nothing to hide from the log.
                    key_pair=dict(type="str", default="", no_log=False),
                    security_group=dict(type="str", default=""),
                    instance_profile=dict(type="str", default=""),
                    policy=dict(type="str", default=""),
                    table=dict(type="str", default=""),
                    bucket=dict(type="str", default=""),
                    media_distribution=dict(type="str", default=""),
                    media_access_control=dict(type="str", default=""),
                    instance_filters=dict(type="dict", default={}),
                    burstable_families=dict(type="list", elements="str", default=[]),
                ),
            ),
        ),
        supports_check_mode=True,
    )
    # A boto3 client costs a tenth of a second or more to build (the EC2 one most): one per service.
    client = functools.lru_cache(maxsize=None)(module.client)
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
            facts.update(network_facts(module, client("ec2")))
        if module.params["bucket_name"]:
            facts.update(bucket_facts(module, facts["account_id"]))
    except (BotoCoreError, ClientError) as error:
        module.fail_json_aws(error, msg="Could not read the account's network or S3 settings")
    if any(module.params["stack"].values()):
        try:
            facts["stack"] = stack_facts(client, module.params["stack"], facts["account_id"], facts.get("vpc_id", ""))
        except (BotoCoreError, ClientError) as error:
            module.fail_json_aws(error, msg="Could not read the stack's resources")
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
