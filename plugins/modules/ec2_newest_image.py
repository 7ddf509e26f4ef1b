#!/usr/bin/python
# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the newest public image of a release, deprecated images included."""

DOCUMENTATION = r"""
module: ec2_newest_image
short_description: The newest image of an owner matching a name pattern, or a pinned image, deprecated or not
author: Coffee Shop Ranker operations team (!UNKNOWN)
description:
  - AWS deprecates public images two years after their creation, and DescribeImages by owner and name
    then leaves them out unless IncludeDeprecated is asked. Every Ubuntu 18.04 image is deprecated, so
    amazon.aws.ec2_ami_info (7.x has no such option) finds none. This module asks with it.
  - Returns the newest available x86_64 image, with its deprecation time and whether that has passed.
options:
  owner:
    description: Account id of the publisher (Canonical, the Debian project).
    type: str
    default: ""
  name_pattern: {description: Image name pattern (wildcards as in DescribeImages filters)., type: str, default: ""}
  image_id: {description: A pinned image id; owner and name_pattern are then ignored., type: str, default: ""}
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Find the newest Ubuntu 18.04 image, deprecated as it is
  coffeeshop.ranker.ec2_newest_image:
    owner: "099720109477"
    name_pattern: ubuntu/images/hvm-ssd*/ubuntu-*-18.04-amd64-server-*
  register: newest

- name: Describe a pinned image instead
  coffeeshop.ranker.ec2_newest_image:
    image_id: ami-0123456789abcdef0
  register: pinned
"""

RETURN = r"""
image:
  description:
    - The image (image_id, name, creation_date, root_device_name, deprecation_time, deprecated).
    - "{} when none matched."
  returned: always
  type: dict
"""

from datetime import datetime, timezone

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency.

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def is_past(timestamp):
    if not timestamp:
        return False
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")) <= datetime.now(timezone.utc)  # noqa: UP017 (controllers may run Python 3.10)


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            owner=dict(type="str", default=""),
            name_pattern=dict(type="str", default=""),
            image_id=dict(type="str", default=""),
        ),
        required_one_of=[("image_id", "name_pattern")],
        required_by={"name_pattern": "owner"},
        supports_check_mode=True,
    )
    params = module.params
    ec2 = module.client("ec2")
    if params["image_id"]:
        request = dict(ImageIds=[params["image_id"]], IncludeDeprecated=True)
    else:
        request = dict(
            Owners=[params["owner"]],
            IncludeDeprecated=True,
            Filters=[
                {"Name": "name", "Values": [params["name_pattern"]]},
                {"Name": "architecture", "Values": ["x86_64"]},
                {"Name": "state", "Values": ["available"]},
            ],
        )
    try:
        images = ec2.describe_images(**request)["Images"]
    except is_boto3_error_code(["InvalidAMIID.NotFound", "InvalidAMIID.Malformed"]):
        images = []
    except (BotoCoreError, ClientError) as error:  # pylint: disable=duplicate-except
        module.fail_json_aws(error, msg="Could not look up the instance image")
    if not images:
        module.exit_json(changed=False, image={})
    newest = max(images, key=lambda image: image["CreationDate"])
    deprecation = newest.get("DeprecationTime", "")
    module.exit_json(
        changed=False,
        image=dict(
            image_id=newest["ImageId"],
            name=newest.get("Name", ""),
            creation_date=newest["CreationDate"],
            root_device_name=newest["RootDeviceName"],
            deprecation_time=deprecation,
            deprecated=is_past(deprecation),
        ),
    )


if __name__ == "__main__":
    main()
