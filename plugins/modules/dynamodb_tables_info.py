#!/usr/bin/python
# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the project's DynamoDB tables - the one in use, the original, restored and retired
ones - found by name prefix and Project tag, with their tags.

Why a module of our own: community.aws.dynamodb_table_info describes one table whose name is known, and
no module of amazon.aws 7.6 or community.aws 7.2 lists tables; a teardown with the data, and a restore's
cut-over finding the table it replaced, must find the project's tables whose names were made by
restores.
"""

DOCUMENTATION = r"""
module: dynamodb_tables_info
short_description: The project's DynamoDB tables, by name prefix and Project tag, with their tags
author: Coffee Shop Ranker operations team (!UNKNOWN)
description:
  - Lists the region's tables whose name begins with one of C(name_prefixes) (ListTables), and keeps
    those tagged C(Project=<project>), or whose whole name matches C(name_regex) (such as a table a
    restore made but had not tagged yet when it was interrupted).
  - Only tables named with a prefix are described, so the operator policy, which is scoped to the
    project's table names, is enough.
  - Changes nothing; in check mode too it reads.
options:
  name_prefixes:
    description: Tables whose name begins with one of these are looked at (such as C(coffee-ranker-)).
    type: list
    elements: str
    required: true
  project:
    description: The Project tag a table must carry; empty keeps every table named with a prefix.
    type: str
    default: ""
  name_regex:
    description: A table whose whole name matches this regular expression is kept without the tag.
    type: str
    default: ""
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Find the project's tables
  coffeeshop.ranker.dynamodb_tables_info:
    name_prefixes: [coffee-ranker-]
    project: coffee-ranker
  register: found
"""

RETURN = r"""
tables:
  description: The tables found, by name - name, arn, status, tags (a dict).
  returned: always
  type: list
  elements: dict
"""

import re

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency.

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry


def denied_hint(error):
    """What to change when AWS refused the call for lack of permission."""
    code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
    if "AccessDenied" not in code and code != "UnauthorizedOperation":
        return ""
    return (
        ": the credentials lack a permission - attach the operator policies "
        "(docs/operator-iam-policy*.json, rendered for your project by `make operator-policy`)"
    )


def table_names(client, prefixes):
    names, request = [], {}
    while True:
        page = client.list_tables(aws_retry=True, **request)
        names += [name for name in page.get("TableNames", []) if name.startswith(tuple(prefixes))]
        if "LastEvaluatedTableName" not in page:
            return sorted(names)
        request["ExclusiveStartTableName"] = page["LastEvaluatedTableName"]


def tags_of(client, arn):
    tags, request = {}, {"ResourceArn": arn}
    while True:
        page = client.list_tags_of_resource(aws_retry=True, **request)
        tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
        if "NextToken" not in page:
            return tags
        request["NextToken"] = page["NextToken"]


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name_prefixes=dict(type="list", elements="str", required=True),
            project=dict(type="str", default=""),
            name_regex=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    params = module.params
    client = module.client(
        "dynamodb",
        retry_decorator=AWSRetry.jittered_backoff(retries=6, delay=2, catch_extra_error_codes=["ThrottlingException"]),
    )
    pattern = re.compile(params["name_regex"]) if params["name_regex"] else None
    found = []
    try:
        for name in table_names(client, [p for p in params["name_prefixes"] if p]):
            try:
                table = client.describe_table(TableName=name, aws_retry=True)["Table"]
                tags = tags_of(client, table["TableArn"])
            except is_boto3_error_code("ResourceNotFoundException"):
                continue  # deleted since it was listed
            ours = not params["project"] or tags.get("Project") == params["project"]
            if ours or (pattern and pattern.fullmatch(name)):
                found.append(dict(name=name, arn=table["TableArn"], status=table["TableStatus"], tags=tags))
    except (BotoCoreError, ClientError) as error:
        names = ", ".join(params["name_prefixes"])
        module.fail_json_aws(error, msg=f"Could not list the DynamoDB tables named {names}*{denied_hint(error)}")
    module.exit_json(changed=False, tables=found)


if __name__ == "__main__":
    main()
