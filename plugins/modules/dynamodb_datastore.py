#!/usr/bin/python
# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: a DynamoDB table with the protections community.aws.dynamodb_table cannot set."""

DOCUMENTATION = r"""
module: dynamodb_datastore
short_description: A protected, on-demand DynamoDB table with a string partition and sort key
author: Coffee Shop Ranker operations team (!UNKNOWN)
description:
  - Creates the table with on-demand billing and server-side encryption under the AWS managed KMS key
    (aws/dynamodb), enables point-in-time recovery, and keeps its tags; or deletes it.
  - community.aws.dynamodb_table 7.x can set neither encryption nor point-in-time recovery.
  - Encryption is chosen at creation; an existing table that is not KMS-encrypted is reported, not
    silently changed.
options:
  name: {description: Table name., type: str, required: true}
  hash_key_name: {description: Name of the string partition key., type: str, default: pk}
  range_key_name: {description: Name of the string sort key., type: str, default: sk}
  point_in_time_recovery: {description: Keep continuous backups for 35 days., type: bool, default: true}
  tags: {description: Tags of the table., type: dict, default: {}}
  state: {description: Whether the table exists., type: str, choices: [present, absent], default: present}
  backups_wait_seconds:
    description:
      - How long to retry enabling point-in-time recovery while DynamoDB answers
        ContinuousBackupsUnavailableException, as it does for a while after CreateTable although the
        table is already ACTIVE.
    type: int
    default: 300
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Keep the API's table, encrypted, with point-in-time recovery
  coffeeshop.ranker.dynamodb_datastore:
    name: coffee-ranker-data
    tags: {Project: coffee-ranker}

- name: Delete it
  coffeeshop.ranker.dynamodb_datastore:
    name: coffee-ranker-data
    state: absent
"""

RETURN = r"""
table_arn: {description: ARN of the table., returned: when present, type: str}
sse_status: {description: Server-side encryption status of the table., returned: when present, type: str}
"""

import time

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency.

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def describe(client, name):
    try:
        return client.describe_table(TableName=name)["Table"]
    except client.exceptions.ResourceNotFoundException:
        return None


def create(module, client):
    params = module.params
    tags = [{"Key": k, "Value": str(v)} for k, v in params["tags"].items()]
    request = dict(
        TableName=params["name"],
        AttributeDefinitions=[
            {"AttributeName": params["hash_key_name"], "AttributeType": "S"},
            {"AttributeName": params["range_key_name"], "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": params["hash_key_name"], "KeyType": "HASH"},
            {"AttributeName": params["range_key_name"], "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
        SSESpecification={"Enabled": True, "SSEType": "KMS"},
    )
    if tags:
        request["Tags"] = tags
    client.create_table(**request)
    client.get_waiter("table_exists").wait(TableName=params["name"])
    return describe(client, params["name"])


def set_point_in_time_recovery(module, client, enabled):
    """Retry while DynamoDB is still preparing the new table's backups; give up with its error."""
    deadline = time.monotonic() + module.params["backups_wait_seconds"]
    delay = 2
    while True:
        try:
            client.update_continuous_backups(
                TableName=module.params["name"],
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": enabled},
            )
            return
        except client.exceptions.ContinuousBackupsUnavailableException as error:
            if time.monotonic() + delay > deadline:
                module.fail_json_aws(
                    error,
                    msg=(
                        f"Point-in-time recovery of table {module.params['name']} was still unavailable after "
                        f"{module.params['backups_wait_seconds']} s; run again later"
                    ),
                )
            time.sleep(delay)
            delay = min(delay * 2, 15)


def ensure_present(module, client):
    params = module.params
    changed, warnings = False, []
    table = describe(client, params["name"])
    if table is None:
        if module.check_mode:
            module.exit_json(changed=True)
        table = create(module, client)
        changed = True
    keys = {k["KeyType"]: k["AttributeName"] for k in table["KeySchema"]}
    if keys != {"HASH": params["hash_key_name"], "RANGE": params["range_key_name"]}:
        module.fail_json(msg=f"Table {params['name']} exists with another key schema: {keys}.")
    sse = table.get("SSEDescription", {}).get("Status", "DISABLED (AWS owned key)")
    if sse != "ENABLED":
        warnings.append(f"Table {params['name']} is not encrypted with a KMS key ({sse}); recreate it to change that.")

    pitr_wanted = params["point_in_time_recovery"]
    backups = client.describe_continuous_backups(TableName=params["name"])["ContinuousBackupsDescription"]
    pitr_now = backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    if pitr_now != pitr_wanted:
        changed = True
        if not module.check_mode:
            set_point_in_time_recovery(module, client, pitr_wanted)

    current = {
        t["Key"]: t["Value"] for t in client.list_tags_of_resource(ResourceArn=table["TableArn"]).get("Tags", [])
    }
    wanted = {k: str(v) for k, v in params["tags"].items()}
    if current != wanted:
        changed = True
        if not module.check_mode:
            stale = [k for k in current if k not in wanted]
            if stale:
                client.untag_resource(ResourceArn=table["TableArn"], TagKeys=stale)
            if wanted:
                client.tag_resource(
                    ResourceArn=table["TableArn"], Tags=[{"Key": k, "Value": v} for k, v in wanted.items()]
                )

    for warning in warnings:
        module.warn(warning)
    module.exit_json(changed=changed, table_arn=table["TableArn"], sse_status=sse)


def ensure_absent(module, client):
    name = module.params["name"]
    if describe(client, name) is None:
        module.exit_json(changed=False)
    if not module.check_mode:
        client.delete_table(TableName=name)
        client.get_waiter("table_not_exists").wait(TableName=name)
    module.exit_json(changed=True)


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            hash_key_name=dict(type="str", default="pk"),
            range_key_name=dict(type="str", default="sk"),
            point_in_time_recovery=dict(type="bool", default=True),
            tags=dict(type="dict", default={}),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            backups_wait_seconds=dict(type="int", default=300),
        ),
        supports_check_mode=True,
    )
    client = module.client("dynamodb")
    try:
        if module.params["state"] == "present":
            ensure_present(module, client)
        else:
            ensure_absent(module, client)
    except (BotoCoreError, ClientError) as error:
        module.fail_json_aws(error, msg=f"DynamoDB table {module.params['name']}")


if __name__ == "__main__":
    main()
