#!/usr/bin/python
# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: every object under a prefix of a versioned bucket back to what it was at a time.

Why a module of our own: amazon.aws.s3_object 7.6 gets or copies one object (one version, when named),
and amazon.aws.s3_object_info lists current objects only; neither lists a prefix's versions and delete
markers, nor works out which version was current at a time. Doing it with them would take a module run
per photo after a version listing no module makes.
"""

DOCUMENTATION = r"""
module: s3_object_versions_restore
short_description: Take every object under a prefix of a versioned bucket back to its state at a time
author: Coffee Shop Ranker operations team (!UNKNOWN)
description:
  - Lists every version and delete marker under C(prefix) (ListObjectVersions). For each key, the state
    at C(time) is the newest version or delete marker whose LastModified is not after it. S3 keeps
    LastModified to the second - within one second a delete marker counts as later than a version.
  - A key whose version at that time differs from its current one (replaced since, or deleted since, its
    current state a delete marker) gets that version back as a new current version (CopyObject from the
    version); its history stays, and the undo is itself undoable.
  - A key that did not exist at that time (created since), or was deleted then, gets a delete marker when
    it exists now; its versions stay in the bucket (recoverable) until the bucket's lifecycle expires them.
  - A current version is the version at that time when it is the same version, or the same content (ETag
    and size), or a copy this module made of it (a copy of a multipart upload has another ETag, so such a
    copy is tagged C(RestoredFromVersion=<version id>)). So a second run with the same time changes nothing.
  - The bucket must be versioned (C(Enabled)); otherwise the module fails before changing anything.
  - A version that stopped being current more than C(versions_kept_days) days ago may have expired (the
    bucket's lifecycle), and a key whose version at the time is gone would look created since and be
    deleted; so a time more than C(versions_kept_days) days ago is refused before anything changes.
  - In check mode nothing is written; RV(changes) says what would change.
  - Throttling (SlowDown) and S3's transient errors are retried with back-off, a bounded number of times.
options:
  bucket: {description: The versioned bucket., type: str, required: true}
  prefix: {description: Only keys beginning with it (such as C(media/))., type: str, required: true}
  time:
    description: The time to go back to - ISO 8601 with a time zone, not in the future.
    type: str
    required: true
  time_name:
    description: What messages call the time (the operator's variable it comes from).
    type: str
    default: time
  versions_kept_days:
    description: Days the bucket keeps a noncurrent version (its lifecycle); 0 when it keeps them all.
    type: int
    default: 0
  exclude_prefixes:
    description: Keys beginning with one of these are left alone (such as the media bucket's public-read probe).
    type: list
    elements: str
    default: []
  actions:
    description:
      - Which changes to make - C(restore) (versions given back) and C(delete) (delete markers). A cut-over
        gives photos back before the instances switch to the restored data, and hides the newer ones after.
    type: list
    elements: str
    choices: [restore, delete]
    default: [restore, delete]
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Take the photos back to the backup's time
  coffeeshop.ranker.s3_object_versions_restore:
    bucket: sandbox-coffee-ranker-media-123456789012
    prefix: media/
    time: "2026-12-05T14:30:00Z"
"""

RETURN = r"""
changes:
  description: >-
    Each key changed (or that would be) - key, action (C(restore) - its version at that time copied back
    as current; C(delete) - a delete marker put on it), and version_id (the version copied back; empty
    for a delete).
  returned: always
  type: list
  elements: dict
restored: {description: How many keys got a version back., returned: always, type: int}
deleted: {description: How many keys got a delete marker., returned: always, type: int}
unchanged: {description: How many keys were as at that time already., returned: always, type: int}
left: {description: How many keys differ but were left to an action not asked for., returned: always, type: int}
time:
  description: The time, in UTC ISO 8601.
  returned: always
  type: str
"""

import re
from datetime import datetime, timedelta, timezone

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency.

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

RESTORED_TAG = "RestoredFromVersion"


# Controllers may run Python 3.10: no datetime.UTC, and fromisoformat() there reads neither "Z" nor
# every length of fraction.
UTC = timezone.utc  # noqa: UP017
ISO_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:\d{2})$")


def denied_hint(error):
    """What to change when AWS refused the call for lack of permission."""
    code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
    if "AccessDenied" not in code and code != "UnauthorizedOperation":
        return ""
    return (
        ": the credentials lack a permission - attach the operator policies "
        "(docs/operator-iam-policy*.json, rendered for your project by `make operator-policy`)"
    )


def parse_time(text):
    """An ISO 8601 time with a time zone (2026-12-05T14:30:00Z, ...+01:00), in UTC; ValueError otherwise."""
    match = ISO_TIME.match(text.strip().upper())
    if not match:
        raise ValueError(f"{text} is not an ISO 8601 time with a time zone, such as 2026-12-05T14:30:00Z")
    whole, fraction, zone = match.groups()
    value = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(microsecond=int((fraction or "0").ljust(6, "0")))
    offset = timedelta() if zone == "Z" else timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return value.replace(tzinfo=timezone(-offset if zone.startswith("-") else offset)).astimezone(UTC)


def history(client, bucket, prefix):
    """Per key, its versions and delete markers, newest first (as S3 lists them within a key)."""
    keys, request = {}, {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = client.list_object_versions(aws_retry=True, **request)
        entries = [dict(v, marker=False) for v in page.get("Versions", [])]
        entries += [dict(m, marker=True) for m in page.get("DeleteMarkers", [])]
        for entry in entries:
            keys.setdefault(entry["Key"], []).append(entry)
        if not page.get("IsTruncated"):
            break
        request.update(KeyMarker=page["NextKeyMarker"], VersionIdMarker=page.get("NextVersionIdMarker", ""))
    # boto3 parses versions and delete markers into two lists, and LastModified has whole seconds: order
    # each key's newest first, the current one first, and within one second a delete marker before (as
    # later than) a version, since a photo is deleted after it was put; otherwise S3's own order stays.
    for key, entries in keys.items():
        keys[key] = sorted(
            entries, key=lambda e: (not e.get("IsLatest"), -e["LastModified"].timestamp(), not e["marker"])
        )
    return keys


def is_copy_of(client, bucket, current, target):
    """Whether the current version holds the target version's content."""
    if current["VersionId"] == target["VersionId"]:
        return True
    if current.get("Size") != target.get("Size"):
        return False
    if current.get("ETag") == target.get("ETag"):
        return True
    if "-" not in target.get("ETag", ""):
        return False  # a single-part upload's ETag is its MD5: another ETag is other content
    tags = client.get_object_tagging(Bucket=bucket, Key=current["Key"], VersionId=current["VersionId"], aws_retry=True)
    return {"Key": RESTORED_TAG, "Value": target["VersionId"]} in tags.get("TagSet", [])


def plan(client, bucket, keys, moment):
    changes, unchanged = [], 0
    for key, entries in sorted(keys.items()):
        current = entries[0] if entries and entries[0].get("IsLatest") else None
        current = None if current is None or current["marker"] else current
        then = next((e for e in entries if e["LastModified"] <= moment), None)
        target = None if then is None or then["marker"] else then
        if target is None:
            if current is None:
                unchanged += 1
            else:
                changes.append(dict(key=key, action="delete", version_id=""))
        elif current is not None and is_copy_of(client, bucket, current, target):
            unchanged += 1
        else:
            changes.append(
                dict(key=key, action="restore", version_id=target["VersionId"], multipart="-" in target["ETag"])
            )
    return changes, unchanged


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            bucket=dict(type="str", required=True),
            prefix=dict(type="str", required=True),
            time=dict(type="str", required=True),
            time_name=dict(type="str", default="time"),
            versions_kept_days=dict(type="int", default=0),
            exclude_prefixes=dict(type="list", elements="str", default=[]),
            actions=dict(type="list", elements="str", choices=["restore", "delete"], default=["restore", "delete"]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    name = params["time_name"]
    try:
        moment = parse_time(params["time"])
    except ValueError as error:
        module.fail_json(msg=f"{name}: {error}.")
    now = datetime.now(UTC)
    if moment > now:
        module.fail_json(msg=f"{name} {params['time']} is in the future: nothing can be restored to it.")
    kept = params["versions_kept_days"]
    if kept and now - moment >= timedelta(days=kept):
        module.fail_json(
            msg=f"{name} {params['time']} is more than {kept} days ago, the time the bucket keeps old versions "
            "(media_noncurrent_version_expiry_days): some versions of then may have expired, so the photos as they "
            "were then cannot be known. Choose a later time, or none to leave the photos as they are."
        )
    client = module.client(
        "s3",
        retry_decorator=AWSRetry.jittered_backoff(
            retries=6, delay=2, catch_extra_error_codes=["SlowDown", "RequestTimeout"]
        ),
    )
    bucket = params["bucket"]
    try:
        try:
            status = client.get_bucket_versioning(Bucket=bucket, aws_retry=True).get("Status", "never enabled")
        except is_boto3_error_code("NoSuchBucket"):
            module.fail_json(
                msg=f"Bucket {bucket} does not exist, so no photo can go back to {name} {params['time']}: provision "
                f"the stack first, or leave the photos alone ({name}=none)."
            )
        if status != "Enabled":
            module.fail_json(
                msg=f"Bucket {bucket} is not versioned ({status}): its objects have no earlier versions to go back to."
            )
        keys = history(client, bucket, params["prefix"])
        excluded = tuple(p for p in params["exclude_prefixes"] if p)
        keys = {key: entries for key, entries in keys.items() if not (excluded and key.startswith(excluded))}
        planned, unchanged = plan(client, bucket, keys, moment)
        changes = [change for change in planned if change["action"] in params["actions"]]
        for change in changes if not module.check_mode else []:
            if change["action"] == "delete":
                client.delete_object(Bucket=bucket, Key=change["key"], aws_retry=True)
                continue
            copy = dict(
                Bucket=bucket,
                Key=change["key"],
                CopySource={"Bucket": bucket, "Key": change["key"], "VersionId": change["version_id"]},
                MetadataDirective="COPY",
            )
            if change["multipart"]:
                # The copy is a single-part object with another ETag: the tag says whose copy it is.
                copy.update(TaggingDirective="REPLACE", Tagging=f"{RESTORED_TAG}={change['version_id']}")
            client.copy_object(aws_retry=True, **copy)
    except (BotoCoreError, ClientError) as error:
        module.fail_json_aws(
            error, msg=f"S3 refused or failed a call on bucket {bucket} under {params['prefix']}{denied_hint(error)}"
        )
    for change in changes:
        change.pop("multipart", None)
    module.exit_json(
        left=len(planned) - len(changes),
        changed=bool(changes),
        changes=changes,
        restored=sum(c["action"] == "restore" for c in changes),
        deleted=sum(c["action"] == "delete" for c in changes),
        unchanged=unchanged,
        time=moment.isoformat().replace("+00:00", "Z"),
    )


if __name__ == "__main__":
    main()
