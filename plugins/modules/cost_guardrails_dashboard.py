#!/usr/bin/python
# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: one CloudWatch dashboard (PutDashboard, GetDashboard, DeleteDashboards).

Why a module of our own: amazon.aws and community.aws 7.x have no CloudWatch dashboard module
(`ansible-doc -l | grep -i dashboard` finds none). The body is compared as parsed JSON, so key order and
spacing never make a rerun report a change.
"""

DOCUMENTATION = r"""
module: cost_guardrails_dashboard
short_description: A CloudWatch dashboard, written only when its body differs
author: Coffee Shop Ranker operations team (!UNKNOWN)
description:
  - Puts the dashboard C(name) with C(body) when it is missing or its body differs (compared as JSON);
    deletes it with C(state=absent).
options:
  name: {description: Name of the dashboard., type: str, required: true}
  body: {description: The dashboard body (widgets)., type: dict}
  state: {description: Whether the dashboard exists., type: str, choices: [present, absent], default: present}
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Keep the dashboard of the stack's costs
  coffeeshop.ranker.cost_guardrails_dashboard:
    name: coffee-ranker
    body:
      widgets:
        - type: metric
          width: 12
          height: 6
          properties:
            title: API CPU
            region: eu-west-1
            metrics: [[AWS/EC2, CPUUtilization, InstanceId, i-0123456789abcdef0]]

- name: Delete it
  coffeeshop.ranker.cost_guardrails_dashboard:
    name: coffee-ranker
    state: absent
"""

RETURN = r"""
dashboard_arn: {description: The dashboard's ARN (when it exists)., returned: when it exists, type: str}
messages: {description: CloudWatch's validation messages of the body written., returned: always, type: list}
"""

import contextlib
import json

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

with contextlib.suppress(ImportError):  # AnsibleAWSModule reports the missing dependency.
    from botocore.exceptions import BotoCoreError, ClientError


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            body=dict(type="dict"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_if=[("state", "present", ["body"])],
        supports_check_mode=True,
    )
    name, body = module.params["name"], module.params["body"]
    cloudwatch = module.client("cloudwatch")
    try:
        try:
            current = cloudwatch.get_dashboard(DashboardName=name)
        except is_boto3_error_code(["ResourceNotFound", "ResourceNotFoundException", "DashboardNotFoundError"]):
            current = None
        if module.params["state"] == "absent":
            if current is not None and not module.check_mode:
                cloudwatch.delete_dashboards(DashboardNames=[name])
            module.exit_json(changed=current is not None, messages=[])
        if current is not None and json.loads(current.get("DashboardBody") or "{}") == body:
            module.exit_json(changed=False, dashboard_arn=current.get("DashboardArn"), messages=[])
        messages = []
        if not module.check_mode:
            answer = cloudwatch.put_dashboard(DashboardName=name, DashboardBody=json.dumps(body, sort_keys=True))
            messages = answer.get("DashboardValidationMessages", [])
        module.exit_json(changed=True, dashboard_arn=(current or {}).get("DashboardArn"), messages=messages)
    except (BotoCoreError, ClientError) as error:
        module.fail_json_aws(error, msg=f"Could not read or write the CloudWatch dashboard {name}")


if __name__ == "__main__":
    main()
