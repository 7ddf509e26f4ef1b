#!/usr/bin/python
# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the CPU credit mode (standard or unlimited) of running burstable instances."""

DOCUMENTATION = r"""
module: ec2_instance_cpu_credits
short_description: Set the CPU credit mode of existing burstable instances (t2, t3, t3a)
author: Coffee Shop Ranker operations team (!UNKNOWN)
description:
  - amazon.aws.ec2_instance applies cpu_credit_specification at launch only (RunInstances); an instance
    that runs already keeps its mode, such as t3's default unlimited, or an account's default for t2.
    This module reads the mode of each instance (DescribeInstanceCreditSpecifications) and changes
    those that differ (ModifyInstanceCreditSpecification, which needs no restart).
  - Fails naming the instances and the AWS CLI command when the endpoint cannot change the mode (the
    embedded AWS, moto 5.2, answers every DescribeInstanceCreditSpecifications with standard and does
    not implement ModifyInstanceCreditSpecification).
options:
  instance_ids:
    description: Running burstable instances.
    type: list
    elements: str
    required: true
  cpu_credits: {description: The mode they must have., type: str, choices: [standard, unlimited], required: true}
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Keep the API instances on standard CPU credits, which cost nothing beyond the hourly price
  coffeeshop.ranker.ec2_instance_cpu_credits:
    instance_ids: [i-0123456789abcdef0]
    cpu_credits: standard
"""

RETURN = r"""
modes:
  description: Each instance's mode as it was read, by instance id.
  returned: always
  type: dict
changed_ids:
  description: The instances whose mode was (or, in check mode, would be) changed.
  returned: always
  type: list
"""

try:
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency.

# After the optional botocore import, as Ansible's module boilerplate has it (plugins/modules: per-file ignore).
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule  # noqa: E402


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            instance_ids=dict(type="list", elements="str", required=True),
            cpu_credits=dict(type="str", choices=["standard", "unlimited"], required=True),
        ),
        supports_check_mode=True,
    )
    instance_ids, wanted = module.params["instance_ids"], module.params["cpu_credits"]
    if not instance_ids:
        module.exit_json(changed=False, modes={}, changed_ids=[])
    ec2 = module.client("ec2")
    try:
        found = ec2.describe_instance_credit_specifications(InstanceIds=instance_ids)["InstanceCreditSpecifications"]
    except (BotoCoreError, ClientError) as error:
        module.fail_json_aws(error, msg="Could not read the CPU credit mode of the instances")
    modes = {spec["InstanceId"]: spec["CpuCredits"] for spec in found}
    differing = sorted(i for i in instance_ids if modes.get(i) != wanted)
    if not differing or module.check_mode:
        module.exit_json(changed=bool(differing), modes=modes, changed_ids=differing)
    command = " ".join(
        "aws ec2 modify-instance-credit-specification --instance-credit-specification "
        f"InstanceId={i},CpuCredits={wanted};"
        for i in differing
    )
    try:
        answer = ec2.modify_instance_credit_specification(
            InstanceCreditSpecifications=[{"InstanceId": i, "CpuCredits": wanted} for i in differing]
        )
    except (BotoCoreError, ClientError, ResponseParserError) as error:
        # The embedded AWS answers an action it does not implement with an HTML error page (ResponseParserError).
        reason = "it does not implement it" if isinstance(error, ResponseParserError) else str(error)[:300]
        module.fail_json(
            msg=f"Could not set CPU credits {wanted} on {', '.join(differing)} (instance_cpu_credits): "
            f"the endpoint refused ModifyInstanceCreditSpecification ({reason}). Change them with: {command}",
            modes=modes,
        )
    failed = answer.get("UnsuccessfulInstanceCreditSpecifications") or []
    if failed:
        reasons = "; ".join(f"{f['InstanceId']}: {f.get('Error', {}).get('Message', '')}" for f in failed)
        module.fail_json(msg=f"Could not set CPU credits {wanted} (instance_cpu_credits) on {reasons}", modes=modes)
    module.exit_json(changed=True, modes=modes, changed_ids=differing)


if __name__ == "__main__":
    main()
