#!/usr/bin/python
# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the stack's on-demand DynamoDB backups - taken, pruned, deleted, and restored into a
new table that is checked before anything uses it.

Why a module of our own: neither amazon.aws 7.6 nor community.aws 7.2 has a module for DynamoDB's own
backups or restores (community.aws.dynamodb_table and dynamodb_table_info create, change, delete and
describe tables; amazon.aws.backup_* drive AWS Backup plans, vaults and selections, not CreateBackup,
RestoreTableFromBackup or RestoreTableToPointInTime). One module, so that the backups' naming
convention - which carries what a native backup cannot carry as tags - lives in one place.
"""

DOCUMENTATION = r"""
module: dynamodb_backup
short_description: The stack's on-demand DynamoDB backups, and restores from them into a new, checked table
author: Coffee Shop Ranker operations team (!UNKNOWN)
description:
  - C(state=present) takes an on-demand backup of C(table), named
    C(<name_prefix><UTC time>.items.<count>), such as C(coffee-ranker.backup.20261205T143000Z.items.1234).
    The count is read by a Scan (C(Select=COUNT)) twice right before the backup; when the two reads
    differ (the table was being written), the name says C(items.about.<count>) and a restore does not
    compare it.
  - Native DynamoDB backups cannot be tagged (TagResource takes tables only; tags on DynamoDB backups
    exist only for AWS Backup's advanced DynamoDB backups), so the name is what marks a backup as the
    stack's, and what records its item count.
  - C(state=pruned) deletes the stack's backups (those named with C(name_prefix)) created more than
    C(retention_days) days before C(now); no other backup is ever touched.
  - C(state=absent) deletes every backup of the stack, and every backup of the tables in C(tables).
  - C(state=restored) restores C(restore_from) - C(latest) (the newest available backup named with
    C(name_prefix), whichever of the stack's tables it is of), a backup ARN, or an ISO 8601 time with a
    time zone (point-in-time recovery of C(source_table)) - into a new table named after that restore
    point, C(<target_prefix>backup-<backup id>) or C(<target_prefix>at-<UTC time to the second>), on demand and
    KMS-encrypted, tagged with C(tags). A table of that name restored from the same source already
    is reused (a rerun restores nothing).
  - A backup that does not exist or is not available, a time outside the source's point-in-time
    recovery window (or with point-in-time recovery off) stop the module before anything is restored.
  - The restored table is then checked - its key schema; its item count (a consistent Scan), compared
    with the count the backup's name recorded; a sample of up to C(sample_size) items, each carrying the
    key attributes and read back the same by a consistent GetItem; the schema version item
    (C(META)/C(SCHEMA), attribute C(version)), absent only from an empty table, else a whole number from
    1 to C(max_schema_version). A table that fails is deleted (never C(in_use_table)) and the module fails
    with every reason.
  - With C(plan_only), the restore point is only resolved and validated, and the table it would go to
    named (RV(table_exists) says whether it does); nothing is restored or checked.
  - In check mode nothing is created or deleted; the restore point is still resolved and validated, and
    an existing restored table is still checked.
  - Throttling and DynamoDB's transient errors are retried with back-off, a bounded number of times.
options:
  state:
    description: What to do, as above.
    type: str
    choices: [present, pruned, absent, restored]
    default: present
  name_prefix:
    description:
      - The stack's backup names begin with it (letters, digits, C(.), C(_), C(-)), such as
        C(coffee-ranker.backup.).
    type: str
    required: true
  table: {description: The table to back up (C(state=present))., type: str, default: ""}
  retention_days: {description: Backups older than this many days are pruned (C(state=pruned))., type: int, default: 35}
  now:
    description: The time ages are counted from (ISO 8601 with a time zone); empty is the current time.
    type: str
    default: ""
  tables:
    description: With C(state=absent), also delete every backup of these tables, whatever their names.
    type: list
    elements: str
    default: []
  restore_from:
    description: With C(state=restored), C(latest), a backup ARN, or an ISO 8601 time with a time zone.
    type: str
    default: ""
  source_table:
    description: With C(state=restored) and a time, the table whose point-in-time recovery is used.
    type: str
    default: ""
  target_prefix:
    description: With C(state=restored), the restored table's name begins with it (such as C(coffee-ranker-data-)).
    type: str
    default: ""
  in_use_table:
    description: A table that is never deleted, even when it fails its check (the one the API uses).
    type: str
    default: ""
  plan_only:
    description: With C(state=restored), resolve and validate the restore point only.
    type: bool
    default: false
  tags: {description: Tags given to a newly restored table., type: dict, default: {}}
  hash_key_name: {description: The tables' string partition key., type: str, default: pk}
  range_key_name: {description: The tables' string sort key., type: str, default: sk}
  max_schema_version:
    description: The newest schema version the deployed build reads (SCHEMA_VERSION in the service).
    type: int
    default: 1
  sample_size: {description: How many items the check reads back by their key., type: int, default: 20}
  wait_seconds:
    description: How long to wait for a restore to finish (it takes minutes to hours for a big table).
    type: int
    default: 3600
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Back up the table
  coffeeshop.ranker.dynamodb_backup:
    table: coffee-ranker-data
    name_prefix: coffee-ranker.backup.

- name: Prune the stack's backups older than 35 days
  coffeeshop.ranker.dynamodb_backup:
    state: pruned
    name_prefix: coffee-ranker.backup.
    retention_days: 35

- name: Restore the newest backup into a new table, checked
  coffeeshop.ranker.dynamodb_backup:
    state: restored
    name_prefix: coffee-ranker.backup.
    restore_from: latest
    target_prefix: coffee-ranker-data-
    in_use_table: coffee-ranker-data
    tags: {Project: coffee-ranker, Role: data}
"""

RETURN = r"""
backup_arn:
  description: The backup taken, or restored from.
  returned: state=present, or restored from a backup
  type: str
backup_name:
  description: Its name.
  returned: state=present, or restored from a backup
  type: str
item_count:
  description: The table's item count (backed up, or restored).
  returned: state=present or restored
  type: int
item_count_exact:
  description: Whether the two reads of the count before the backup agreed.
  returned: state=present
  type: bool
pruned:
  description: Names of the backups deleted (or that would be).
  returned: state=pruned or absent
  type: list
kept:
  description: Names of the stack's backups kept.
  returned: state=pruned
  type: list
table_name:
  description: The restored table.
  returned: state=restored
  type: str
table_arn:
  description: Its ARN (built from the source table's before it exists).
  returned: state=restored
  type: str
table_exists:
  description: Whether the restored table exists already.
  returned: state=restored
  type: bool
restored:
  description: Whether this run restored it (false when it existed already).
  returned: state=restored
  type: bool
restore_point:
  description: >-
    What was restored - kind (backup or time), backup_arn, backup_name, backup_time, and time, the moment
    whose data the table holds (the backup's creation time, or the time asked for), in UTC ISO 8601.
  returned: state=restored
  type: dict
recorded_item_count:
  description: The count the backup's name recorded, when it was exact; else null.
  returned: state=restored
  type: int
checks:
  description: What the check read - item_count, sampled, schema_version.
  returned: state=restored, once the table exists
  type: dict
restore_seconds:
  description: How long the restore took, the wait for the table included (0 when it existed).
  returned: state=restored
  type: float
"""

import re
import time
from datetime import datetime, timedelta, timezone

try:
    from botocore.exceptions import BotoCoreError, ClientError, WaiterError
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency.

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

# DynamoDB's own transient answers, beside the throttling and 5xx codes AWSRetry always retries.
TRANSIENT = [
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "InternalServerError",
    "LimitExceededException",
]
NAME_CHARACTERS = re.compile(r"^[A-Za-z0-9_.-]+$")
# What follows the prefix in a backup's name: when it was taken, and the count read just before.
NAME_SUFFIX = re.compile(r"^(?P<taken>\d{8}T\d{6}Z)\.items\.(?P<about>about\.)?(?P<count>\d+)$")
SCHEMA_KEY = ("META", "SCHEMA")
SCHEMA_ATTRIBUTE = "version"


class Refused(Exception):
    """A restore or backup that cannot be done; the message says what to change."""


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


def iso(value):
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def stamp(value):
    """A time for a name: 20261205T143000Z."""
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def describe_table(client, name):
    try:
        return client.describe_table(TableName=name, aws_retry=True)["Table"]
    except is_boto3_error_code("ResourceNotFoundException"):
        return None


def scan_count(client, name):
    """Items in the table, counted by a consistent Scan (DescribeTable's ItemCount is hours old)."""
    count, request = 0, {"TableName": name, "Select": "COUNT", "ConsistentRead": True}
    while True:
        page = client.scan(aws_retry=True, **request)
        count += page["Count"]
        if "LastEvaluatedKey" not in page:
            return count
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def stack_backups(client, prefix, tables=()):
    """The account's user backups named with the prefix (or of one of `tables`), oldest first."""
    found, request = [], {"BackupType": "USER"}
    while True:
        page = client.list_backups(aws_retry=True, **request)
        found += [
            b
            for b in page.get("BackupSummaries", [])
            if b.get("BackupName", "").startswith(prefix) or b.get("TableName") in tables
        ]
        if "LastEvaluatedBackupArn" not in page:
            return sorted(found, key=lambda b: b["BackupCreationDateTime"])
        request["ExclusiveStartBackupArn"] = page["LastEvaluatedBackupArn"]


def recorded_count(prefix, name):
    """The item count the backup's name recorded when it was exact; None when it was not, or unknown."""
    match = NAME_SUFFIX.match(name[len(prefix) :]) if name.startswith(prefix) else None
    if not match or match.group("about"):
        return None
    return int(match.group("count"))


def take_backup(module, client):
    params = module.params
    if not describe_table(client, params["table"]):
        raise Refused(f"Table {params['table']} does not exist: provision the stack first (playbooks/provision.yml).")
    # Two reads that agree: the table was quiet, so the count is the backup's.
    first, count = scan_count(client, params["table"]), scan_count(client, params["table"])
    exact = first == count
    now = datetime.now(UTC)
    name = f"{params['name_prefix']}{now:%Y%m%dT%H%M%SZ}.items.{'' if exact else 'about.'}{count}"
    result = dict(changed=True, backup_name=name, item_count=count, item_count_exact=exact)
    if module.check_mode:
        module.exit_json(backup_arn="", **result)
    details = client.create_backup(TableName=params["table"], BackupName=name, aws_retry=True)["BackupDetails"]
    module.exit_json(backup_arn=details["BackupArn"], **result)


def delete_backups(module, client, backups):
    for backup in backups:
        if module.check_mode:
            continue
        try:
            client.delete_backup(BackupArn=backup["BackupArn"], aws_retry=True)
        except is_boto3_error_code("BackupNotFoundException"):
            pass  # deleted meanwhile: what was asked for


def prune(module, client):
    params = module.params
    now = parse_time(params["now"]) if params["now"] else datetime.now(UTC)
    cutoff = now - timedelta(days=params["retention_days"])
    backups = stack_backups(client, params["name_prefix"])
    old = [b for b in backups if b["BackupCreationDateTime"] < cutoff]
    delete_backups(module, client, old)
    module.exit_json(
        changed=bool(old),
        pruned=[b["BackupName"] for b in old],
        kept=[b["BackupName"] for b in backups if b not in old],
    )


def remove_all(module, client):
    backups = stack_backups(client, module.params["name_prefix"], tables=module.params["tables"])
    delete_backups(module, client, backups)
    module.exit_json(changed=bool(backups), pruned=[b["BackupName"] for b in backups])


def resolve(module, client):
    """What restore_from names, validated, and the table it goes to. Refused before anything is made."""
    params = module.params
    wanted, prefix = params["restore_from"].strip(), params["name_prefix"]
    if wanted == "latest":
        available = [b for b in stack_backups(client, prefix) if b["BackupStatus"] == "AVAILABLE"]
        if not available:
            raise Refused(
                f"restore_from latest: the account holds no available backup of this stack (names starting "
                f"with {prefix}): take one with playbooks/backup.yml, or name a backup by its ARN."
            )
        wanted = available[-1]["BackupArn"]
    if wanted.startswith("arn:"):
        try:
            details = client.describe_backup(BackupArn=wanted, aws_retry=True)["BackupDescription"]["BackupDetails"]
        except is_boto3_error_code(["BackupNotFoundException", "ValidationException"]) as error:
            raise Refused(
                f"restore_from {wanted}: no such backup in this account and region "
                f"({error.response['Error']['Code']}); `aws dynamodb list-backups` lists them."
            ) from None
        if details["BackupStatus"] != "AVAILABLE":
            raise Refused(
                f"restore_from {wanted}: the backup is {details['BackupStatus']}, not AVAILABLE; try again later."
            )
        return dict(
            kind="backup",
            backup_arn=wanted,
            backup_name=details["BackupName"],
            backup_time=iso(details["BackupCreationDateTime"]),
            time=iso(details["BackupCreationDateTime"]),
            recorded=recorded_count(prefix, details["BackupName"]),
            target=f"{params['target_prefix']}backup-{wanted.rsplit('/', 1)[-1]}",
        )
    try:
        # Point-in-time recovery restores to the second (botocore sends RestoreDateTime in whole seconds).
        moment = parse_time(wanted).replace(microsecond=0)
    except ValueError as error:
        raise Refused(f"restore_from: {error}; nor is it latest or the ARN of a backup.") from None
    source = params["source_table"]
    try:
        backups = client.describe_continuous_backups(TableName=source, aws_retry=True)["ContinuousBackupsDescription"]
    except is_boto3_error_code(["TableNotFoundException", "ResourceNotFoundException"]):
        raise Refused(
            f"restore_from {wanted}: table {source}, whose recovery window it needs, does not exist."
        ) from None
    recovery = backups.get("PointInTimeRecoveryDescription", {})
    if recovery.get("PointInTimeRecoveryStatus") != "ENABLED":
        raise Refused(
            f"restore_from {wanted}: point-in-time recovery is off for table {source}, so it has no recovery "
            "window; restore a backup instead (restore_from=latest or a backup ARN)."
        )
    earliest, latest = recovery["EarliestRestorableDateTime"], recovery["LatestRestorableDateTime"]
    if not earliest <= moment <= latest:
        raise Refused(
            f"restore_from {iso(moment)} is outside the recovery window of table {source}, from "
            f"{iso(earliest)} to {iso(latest)}: choose a time within it, or restore a backup."
        )
    return dict(
        kind="time",
        backup_arn="",
        backup_name="",
        backup_time="",
        time=iso(moment),
        moment=moment,
        recorded=None,
        target=f"{params['target_prefix']}at-{stamp(moment)}",
    )


def start_restore(client, point, params):
    settings = dict(
        TargetTableName=point["target"],
        BillingModeOverride="PAY_PER_REQUEST",
        SSESpecificationOverride={"Enabled": True, "SSEType": "KMS"},
        aws_retry=True,
    )
    if point["kind"] == "backup":
        client.restore_table_from_backup(BackupArn=point["backup_arn"], **settings)
    else:
        client.restore_table_to_point_in_time(
            SourceTableName=params["source_table"], RestoreDateTime=point["moment"], **settings
        )


def wait_active(module, client, name):
    seconds = module.params["wait_seconds"]
    try:
        client.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 5, "MaxAttempts": max(1, seconds // 5)}
        )
    except WaiterError as error:
        raise Refused(
            f"Table {name} was not ACTIVE after {seconds} s; a big restore takes longer: run again later "
            "(the restore goes on, and the rerun checks it), or raise datastore_backup_restore_wait_seconds."
        ) from error
    return describe_table(client, name)


def same_source(table, point, params):
    summary = table.get("RestoreSummary") or {}
    if point["kind"] == "backup":
        return summary.get("SourceBackupArn") == point["backup_arn"]
    return summary.get("SourceTableArn", "").endswith(f":table/{params['source_table']}")


def check_table(client, name, params, recorded):
    """Every reason the restored table must not be used; and what was read."""
    problems, seen = [], {}
    table = describe_table(client, name)
    keys = {k["KeyType"]: k["AttributeName"] for k in table["KeySchema"]}
    hash_key, range_key = params["hash_key_name"], params["range_key_name"]
    if keys != {"HASH": hash_key, "RANGE": range_key}:
        return [f"its key schema is {keys}, not {hash_key} and {range_key}"], seen
    seen["item_count"] = count = scan_count(client, name)
    if recorded is not None and count != recorded:
        problems.append(f"it holds {count} items, the backup recorded {recorded} when it was taken")
    sample = client.scan(TableName=name, Limit=params["sample_size"], ConsistentRead=True, aws_retry=True)
    seen["sampled"] = 0
    for item in sample.get("Items", []):
        if not all("S" in item.get(key, {}) for key in (hash_key, range_key)):
            problems.append(f"an item lacks its string key attributes {hash_key} and {range_key}: {sorted(item)}")
            continue
        key = {hash_key: item[hash_key], range_key: item[range_key]}
        found = client.get_item(TableName=name, Key=key, ConsistentRead=True, aws_retry=True).get("Item")
        seen["sampled"] += 1
        if found != item:
            problems.append(f"item {key[hash_key]['S']} / {key[range_key]['S']} reads back differently by its key")
    schema_key = {hash_key: {"S": SCHEMA_KEY[0]}, range_key: {"S": SCHEMA_KEY[1]}}
    schema = client.get_item(TableName=name, Key=schema_key, ConsistentRead=True, aws_retry=True).get("Item")
    seen["schema_version"] = None
    if schema is None:
        if count:
            problems.append(
                f"it holds {count} items but no schema version item ({SCHEMA_KEY[0]} / {SCHEMA_KEY[1]}), which "
                "every table the service has opened holds"
            )
    else:
        text = schema.get(SCHEMA_ATTRIBUTE, {}).get("N", "")
        version = int(text) if text.isdigit() else None
        seen["schema_version"] = version
        if version is None or version < 1:
            problems.append(
                f"its schema version item holds {SCHEMA_ATTRIBUTE}={schema.get(SCHEMA_ATTRIBUTE)}, "
                "not a whole number from 1"
            )
        elif version > params["max_schema_version"]:
            problems.append(
                f"its schema version is {version}, newer than the deployed build reads "
                f"({params['max_schema_version']}, datastore_backup_schema_version): deploy a newer build first"
            )
    return problems, seen


def delete_table(client, name):
    client.delete_table(TableName=name, aws_retry=True)
    client.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 150})


def restore(module, client):
    params = module.params
    point = resolve(module, client)
    target, recorded = point.pop("target"), point.pop("recorded")
    moment = point.pop("moment", None)
    result = dict(
        table_name=target, restore_point=point, recorded_item_count=recorded, restored=False, restore_seconds=0.0
    )
    table = describe_table(client, target)
    result["table_exists"] = table is not None
    if table is not None and not same_source(table, point, params):
        raise Refused(
            f"Table {target} exists but was not restored from {point['backup_arn'] or point['time']}: delete it, "
            "or restore something else."
        )
    if params["plan_only"] or (table is None and module.check_mode):
        # The ARN it has, or will have: the source table's, with the target's name.
        source = describe_table(client, params["source_table"]) if table is None and params["source_table"] else None
        arn = table["TableArn"] if table else f"{source['TableArn'].rsplit('/', 1)[0]}/{target}" if source else ""
        module.exit_json(changed=table is None and not params["plan_only"], table_arn=arn, checks=None, **result)
    if table is None:
        started = time.monotonic()
        try:
            start_restore(client, dict(point, target=target, moment=moment), params)
        except is_boto3_error_code(["InvalidRestoreTimeException", "PointInTimeRecoveryUnavailableException"]) as error:
            raise Refused(f"restore_from {point['time']}: {error.response['Error']['Message']}") from None
        table = wait_active(module, client, target)
        result.update(restored=True, restore_seconds=round(time.monotonic() - started, 1))
    elif table["TableStatus"] != "ACTIVE":
        table = wait_active(module, client, target)
    missing = {k: str(v) for k, v in params["tags"].items()}
    if missing and not module.check_mode:
        # Tagged from the start so that teardown finds it; again on a rerun after an interrupted restore.
        held = {
            t["Key"]: t["Value"]
            for t in client.list_tags_of_resource(ResourceArn=table["TableArn"], aws_retry=True).get("Tags", [])
        }
        if any(held.get(k) != v for k, v in missing.items()):
            client.tag_resource(
                ResourceArn=table["TableArn"], Tags=[{"Key": k, "Value": v} for k, v in missing.items()], aws_retry=True
            )
    problems, seen = check_table(client, target, params, recorded)
    result.update(table_arn=table["TableArn"], checks=seen, item_count=seen.get("item_count"))
    if problems:
        kept = target == params["in_use_table"]
        if not kept and not module.check_mode:
            delete_table(client, target)
        fate = "kept: the API uses it" if kept else "would be deleted" if module.check_mode else "was deleted"
        module.fail_json(
            msg=f"The restored table {target} failed its check and {fate}; nothing else changed: "
            + "; ".join(problems)
            + ".",
            **result,
        )
    module.exit_json(changed=result["restored"], **result)


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "pruned", "absent", "restored"], default="present"),
            name_prefix=dict(type="str", required=True),
            table=dict(type="str", default=""),
            retention_days=dict(type="int", default=35),
            now=dict(type="str", default=""),
            tables=dict(type="list", elements="str", default=[]),
            restore_from=dict(type="str", default=""),
            source_table=dict(type="str", default=""),
            target_prefix=dict(type="str", default=""),
            in_use_table=dict(type="str", default=""),
            tags=dict(type="dict", default={}),
            hash_key_name=dict(type="str", default="pk"),
            range_key_name=dict(type="str", default="sk"),
            max_schema_version=dict(type="int", default=1),
            sample_size=dict(type="int", default=20),
            wait_seconds=dict(type="int", default=3600),
            plan_only=dict(type="bool", default=False),
        ),
        required_if=[
            ("state", "present", ["table"]),
            ("state", "restored", ["restore_from", "target_prefix"]),
        ],
        supports_check_mode=True,
    )
    params = module.params
    if not NAME_CHARACTERS.match(params["name_prefix"]):
        module.fail_json(msg=f"name_prefix {params['name_prefix']!r} may hold only letters, digits, '.', '_' and '-'.")
    if params["retention_days"] < 1:
        module.fail_json(msg=f"retention_days {params['retention_days']} must be 1 or more.")
    client = module.client(
        "dynamodb", retry_decorator=AWSRetry.jittered_backoff(retries=6, delay=2, catch_extra_error_codes=TRANSIENT)
    )
    actions = {"present": take_backup, "pruned": prune, "absent": remove_all, "restored": restore}
    try:
        actions[params["state"]](module, client)
    except Refused as refusal:
        module.fail_json(msg=str(refusal))
    except ValueError as error:
        module.fail_json(msg=f"now: {error}")
    except (BotoCoreError, ClientError) as error:
        module.fail_json_aws(error, msg=f"DynamoDB refused or failed a call ({params['state']}){denied_hint(error)}")


if __name__ == "__main__":
    main()
