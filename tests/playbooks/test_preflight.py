"""Bad operator input fails fast: before any AWS call, with a message naming the variable and the rule."""

import pytest

BAD_INPUTS = [
    # (variable, bad value, words the message must contain)
    ("media_bucket_name", "Coffee-Media", "lowercase letters, digits, dots and hyphens"),
    ("media_bucket_name", "ab", "3 to 63 characters"),
    ("media_bucket_name", "x" * 64, "3 to 63 characters"),
    ("media_bucket_name", "coffee..media", "two adjacent dots"),
    ("media_bucket_name", "192.168.10.20", "formatted as an IP address"),
    ("media_bucket_name", "xn--coffee-media", "reserved prefix 'xn--'"),
    ("media_bucket_name", "coffee-media-s3alias", "reserved suffix '-s3alias'"),
    ("media_bucket_name", "-coffee-media", "begin and end with a lowercase letter or digit"),
    ("ssh_admin_cidr", "0.0.0.0/0", "allow_ssh_from_anywhere"),
    ("ssh_admin_cidr", "10.1.2.3/8", "CIDR notation"),
    ("ssh_admin_cidr", "office", "CIDR notation"),
    ("api_port", 80, "from 1024 to 65535"),
    ("api_port", "eleven", "unable to convert to int"),
    ("ubuntu_release", "16.04", "value of ubuntu_release must be one of"),
    ("instance_distribution", "centos", "value of instance_distribution must be one of"),
    ("debian_release", "10", "value of debian_release must be one of"),
    ("api_instance_count", 0, "from 1 to 10"),
    ("api_instance_count", 40, "from 1 to 10"),
    ("aws_region", "useast1", "look like an AWS region"),
    ("instance_type", "micro", "look like an EC2 instance type"),
    ("project_name", "Coffee_Ranker", "lowercase letters, digits and hyphens"),
    ("allow_ssh_from_anywhere", "perhaps", "allow_ssh_from_anywhere"),
    ("api_datastore", "postgres", "value of api_datastore must be one of"),
]


@pytest.mark.parametrize(
    ("variable", "value", "rule"),
    BAD_INPUTS,
    ids=[f"{variable}={str(value)[:20]}" for variable, value, _ in BAD_INPUTS],
)
def test_bad_operator_input_fails_before_any_aws_call(run_playbook, aws, variable, value, rule):
    result = run_playbook("playbooks/provision.yml", extra_vars={variable: value})

    assert result.returncode != 0, result.output[-2000:]
    assert variable in result.text
    assert rule in result.text
    assert "preflight" in result.text, "the failure must come from the preflight role"
    assert aws.is_empty(), "a rejected run must not create anything"


def test_several_instances_without_the_shared_datastore_are_refused(run_playbook, aws):
    result = run_playbook("playbooks/provision.yml", extra_vars={"api_instance_count": 3, "api_datastore": "sqlite"})

    assert result.returncode != 0
    assert "api_instance_count 3 needs api_datastore=dynamodb" in result.text
    assert aws.is_empty()


def test_ssh_from_anywhere_is_accepted_when_explicitly_allowed(run_playbook, aws):
    result = run_playbook(
        "playbooks/provision.yml",
        "--check",
        extra_vars={"ssh_admin_cidr": "0.0.0.0/0", "allow_ssh_from_anywhere": True},
    )

    assert result.returncode == 0, result.output[-3000:]
