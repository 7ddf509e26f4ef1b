#!/usr/bin/python
# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: an instance's SSH host keys, as cloud-init printed them on its console."""

DOCUMENTATION = r"""
module: ec2_host_keys
short_description: Read instances' SSH host keys from their console output, waiting until EC2 has it
author: Coffee Shop Ranker operations team (!UNKNOWN)
description:
  - Before the first SSH connection to a new instance, its host keys are known only to the instance. On
    first boot cloud-init prints them to the console between C(-----BEGIN SSH HOST KEY KEYS-----) and
    C(-----END SSH HOST KEY KEYS-----), and EC2 keeps the console output (C(ec2:GetConsoleOutput)) - an
    out-of-band channel the instance's network cannot forge.
  - No collection module reads console output (amazon.aws 7.6, community.aws 7.2), hence this one.
  - EC2 has no console output for a while after launch (minutes on Xen types such as t2); the module
    asks again every O(delay) seconds until every instance's block is there, or fails after O(timeout)
    seconds naming the instances still without one.
  - Reads only; never changed.
options:
  instance_ids: {description: The instances to read., type: list, elements: str, required: true}
  key_type: {description: The host key type to return (the one the controller pins)., type: str, default: ed25519}
  timeout: {description: Seconds to wait for every instance's host key block., type: int, default: 900}
  delay: {description: Seconds between two reads of an instance without its block yet., type: int, default: 10}
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Read the new instances' ed25519 host keys from their console output
  coffeeshop.ranker.ec2_host_keys:
    instance_ids: [i-0123456789abcdef0]
  register: read

- name: Pin each one as a tag of its instance, where every controller finds it
  amazon.aws.ec2_tag:
    resource: "{{ item.key }}"
    tags: {HostKey: "{{ item.value }}"}
  loop: "{{ read.host_keys | dict2items }}"
"""

RETURN = r"""
host_keys:
  description: By instance id, the host key of O(key_type) as C(<type> <base64>), without comment.
  returned: always
  type: dict
"""

import base64
import binascii
import time

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency.

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
END = "-----END SSH HOST KEY KEYS-----"


def decoded(output):
    """The console text of GetConsoleOutput's Output: base64 as EC2 sends it (plain text kept as is)."""
    try:
        return base64.b64decode(output, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return output


def host_key(console, key_type):
    """`<type> <base64>` of the last host key block's key of that type, or '' when there is none."""
    start = console.rfind(BEGIN)
    end = console.find(END, start)
    if start < 0 or end < 0:
        return ""
    for line in console[start + len(BEGIN) : end].splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == f"ssh-{key_type}":
            return f"{fields[0]} {fields[1]}"
    return ""


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            instance_ids=dict(type="list", elements="str", required=True),
            key_type=dict(type="str", default="ed25519"),
            timeout=dict(type="int", default=900),
            delay=dict(type="int", default=10),
        ),
        supports_check_mode=True,
    )
    params = module.params
    ec2 = module.client("ec2")
    found = {}
    deadline = time.monotonic() + params["timeout"]
    while True:
        for instance_id in params["instance_ids"]:
            if instance_id in found:
                continue
            try:
                output = ec2.get_console_output(InstanceId=instance_id).get("Output") or ""
            except (BotoCoreError, ClientError) as error:
                module.fail_json_aws(error, msg=f"Could not read the console output of {instance_id}")
            key = host_key(decoded(output), params["key_type"])
            if key:
                found[instance_id] = key
        missing = [i for i in params["instance_ids"] if i not in found]
        if not missing:
            module.exit_json(changed=False, host_keys=found)
        if time.monotonic() >= deadline:
            module.fail_json(
                msg=(
                    f"No SSH host key ({params['key_type']}) in the console output of {', '.join(missing)} after "
                    f"{params['timeout']} s. EC2 publishes an instance's console output minutes after boot (longer on "
                    "Xen types such as t2), and cloud-init prints the keys once it has made them: run again later, "
                    "or raise host_keys_console_timeout. No SSH connection was made to an unverified host."
                ),
                host_keys=found,
            )
        time.sleep(params["delay"])


if __name__ == "__main__":
    main()
