#!/usr/bin/python
# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: a CloudFront origin access control, found by its name, created, updated or deleted.

Why a module of our own: community.aws 7.2 has cloudfront_origin_access_identity, which manages the
legacy origin access identity (OAI) only, and community.aws.cloudfront_distribution knows origin access
identities only (s3_origin_access_identity_enabled): it can neither create a control nor name one on an
origin. amazon.aws 7.6 has no CloudFront module.

An origin access control (OAC) is what AWS recommends for S3 origins now: SigV4-signed requests, SSE-KMS
buckets, every region.
"""

DOCUMENTATION = r"""
module: cloudfront_origin_access_control
short_description: Create, update or delete a CloudFront origin access control, found by its name
author: Coffee Shop Ranker operations team (!UNKNOWN)
description:
  - community.aws.cloudfront_origin_access_identity (7.2) manages only the legacy origin access
    identities, and community.aws.cloudfront_distribution (7.2) cannot create an origin access control.
    This module does.
  - Origin access control names are unique in an account, so the control is found by I(name)
    (ListOriginAccessControls, every page). With I(state=present) it is created when missing and
    updated when a setting differs (with its ETag, so a change made meanwhile is not overwritten);
    a rerun changes nothing.
  - With I(state=absent) it is deleted. CloudFront refuses while a distribution's origin still uses
    it; the module then fails and names the distributions it found using it.
  - CloudFront is a global service with one endpoint per partition, so I(region) only chooses the
    partition; no region at all means the commercial one.
  - Throttling and CloudFront's transient errors are retried with back-off, a bounded number of times.
options:
  name:
    description: The control's name (at most 64 characters), unique in the account; how it is found again.
    type: str
    required: true
  description: {description: Its description., type: str, default: ""}
  origin_type:
    description: The kind of origin it signs requests to.
    type: str
    choices: [s3, mediastore, mediapackagev2, lambda]
    default: s3
  signing_behavior:
    description:
      - C(always) signs every request to the origin, C(never) none, C(no-override) signs those without
        an C(Authorization) header of the viewer's.
    type: str
    choices: [always, never, no-override]
    default: always
  signing_protocol: {description: How requests are signed., type: str, choices: [sigv4], default: sigv4}
  state: {description: Present or absent., type: str, choices: [present, absent], default: present}
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Let the CDN read the media bucket with signed requests
  coffeeshop.ranker.cloudfront_origin_access_control:
    name: coffee-ranker-media
    description: The CDN's access to the media bucket
  register: media_access

- name: Delete it, once no distribution uses it any more
  coffeeshop.ranker.cloudfront_origin_access_control:
    name: coffee-ranker-media
    state: absent
"""

RETURN = r"""
origin_access_control:
  description:
    - The control as it is (or, in check mode, would be) - id, name, description, origin_type,
      signing_behavior, signing_protocol and etag (the version an update or delete must name).
    - id and etag are empty for one that check mode would create; {} when absent.
  returned: always
  type: dict
  sample:
    id: E2QWRUHEXAMPLE
    name: coffee-ranker-media
    description: The CDN's access to the media bucket
    origin_type: s3
    signing_behavior: always
    signing_protocol: sigv4
    etag: E2QWRUHAPOMQZL
"""

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency.

from ansible_collections.amazon.aws.plugins.module_utils.botocore import (
    is_boto3_error_code,
    paginated_query_with_retries,
)
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

# Throttling and the transient answers AWSRetry knows (ServiceUnavailable, InternalError...), once
# botocore's own retries have given up.
RETRY = AWSRetry.jittered_backoff(retries=6, delay=2)

# The module's options, by the name of the field of OriginAccessControlConfig they set.
CONFIG_FIELDS = {
    "Name": "name",
    "Description": "description",
    "OriginAccessControlOriginType": "origin_type",
    "SigningBehavior": "signing_behavior",
    "SigningProtocol": "signing_protocol",
}


def cloudfront_region(region):
    """The region CloudFront's endpoint signs with, in the partition of `region`.

    botocore maps any region of a partition to CloudFront's one endpoint there, signed for us-east-1
    in the commercial partition as every AWS SDK does; but with an endpoint_url it signs for the region
    it was given, and refuses to sign without one (NoRegionError). So the client gets the partition's own.
    """
    return "cn-northwest-1" if (region or "").startswith("cn-") else "us-east-1"


def find(client, name):
    """The control named `name` as {"config", "id", "etag"}, or None."""
    listing = paginated_query_with_retries(client, "list_origin_access_controls", retry_decorator=RETRY)
    for summary in listing.get("OriginAccessControlList", {}).get("Items") or []:
        if summary.get("Name") != name:
            continue
        try:
            found = client.get_origin_access_control(Id=summary["Id"], aws_retry=True)
        except is_boto3_error_code("NoSuchOriginAccessControl"):
            return None  # deleted since the listing
        control = found["OriginAccessControl"]
        return dict(config=normalised(control["OriginAccessControlConfig"]), id=control["Id"], etag=found["ETag"])
    return None


def normalised(config):
    """The config's fields this module manages; a missing description is the empty one."""
    return {field: config.get(field) or "" for field in CONFIG_FIELDS}


def described(config, control_id="", etag=""):
    """The return value: the config in the options' names, with the id and the ETag."""
    result = {option: config[field] for field, option in CONFIG_FIELDS.items()}
    result.update(id=control_id, etag=etag)
    return result


def diff(before, after):
    return dict(before=described(before) if before else {}, after=described(after) if after else {})


def present(module, client):
    wanted = normalised({field: module.params[option] for field, option in CONFIG_FIELDS.items()})
    current = find(client, module.params["name"])
    if current is None:
        changes = dict(changed=True, diff=diff(None, wanted))
        if module.check_mode:
            module.exit_json(origin_access_control=described(wanted), **changes)
        made = client.create_origin_access_control(OriginAccessControlConfig=wanted, aws_retry=True)
        control = made["OriginAccessControl"]
        module.exit_json(origin_access_control=described(wanted, control["Id"], made["ETag"]), **changes)
    if current["config"] == wanted:
        module.exit_json(changed=False, origin_access_control=described(wanted, current["id"], current["etag"]))
    changes = dict(changed=True, diff=diff(current["config"], wanted))
    if module.check_mode:
        module.exit_json(origin_access_control=described(wanted, current["id"], current["etag"]), **changes)
    try:
        updated = client.update_origin_access_control(
            Id=current["id"], IfMatch=current["etag"], OriginAccessControlConfig=wanted, aws_retry=True
        )
    except is_boto3_error_code("PreconditionFailed"):
        module.fail_json(
            msg=f"Origin access control {module.params['name']} ({current['id']}) changed while this module "
            "updated it (its ETag is no longer the one read): run again to apply the settings over the new version."
        )
    module.exit_json(origin_access_control=described(wanted, current["id"], updated["ETag"]), **changes)


def distributions_using(client, control_id):
    """The distributions with an origin that uses the control, as "<id> (<domain name>)"; [] if unreadable."""
    try:
        listing = paginated_query_with_retries(client, "list_distributions", retry_decorator=RETRY)
    except (BotoCoreError, ClientError):
        return []  # the refusal is what matters; naming the distribution is a courtesy
    using = []
    for distribution in listing.get("DistributionList", {}).get("Items") or []:
        origins = distribution.get("Origins", {}).get("Items") or []
        if any(origin.get("OriginAccessControlId") == control_id for origin in origins):
            using.append(f"{distribution['Id']} ({distribution.get('DomainName', '')})")
    return using


def absent(module, client):
    name = module.params["name"]
    current = find(client, name)
    if current is None:
        module.exit_json(changed=False, origin_access_control={})
    changes = dict(changed=True, diff=diff(current["config"], None))
    if module.check_mode:
        module.exit_json(origin_access_control={}, **changes)
    try:
        client.delete_origin_access_control(Id=current["id"], IfMatch=current["etag"], aws_retry=True)
    except is_boto3_error_code("NoSuchOriginAccessControl"):
        pass  # deleted meanwhile: what was asked for
    except is_boto3_error_code("OriginAccessControlInUse"):
        using = distributions_using(client, current["id"])
        which = (
            f"distribution{'s' if len(using) > 1 else ''} {', '.join(using)}"
            if using
            else "a distribution (ListDistributions did not say which)"
        )
        module.fail_json(
            msg=f"Origin access control {name} ({current['id']}) is still used by {which}, and CloudFront deletes "
            "it only once no distribution uses it: delete the distribution first (disable it, wait until it is "
            "Deployed, then delete it), or take the control off its origins; then run this again.",
            distributions=using,
        )
    module.exit_json(origin_access_control={}, **changes)


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            description=dict(type="str", default=""),
            origin_type=dict(type="str", choices=["s3", "mediastore", "mediapackagev2", "lambda"], default="s3"),
            signing_behavior=dict(type="str", choices=["always", "never", "no-override"], default="always"),
            signing_protocol=dict(type="str", choices=["sigv4"], default="sigv4"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    client = module.client("cloudfront", retry_decorator=RETRY, region=cloudfront_region(module.region))
    try:
        if module.params["state"] == "present":
            present(module, client)
        else:
            absent(module, client)
    except (BotoCoreError, ClientError) as error:
        module.fail_json_aws(
            error, msg=f"CloudFront refused a call for the origin access control {module.params['name']}"
        )


if __name__ == "__main__":
    main()
