"""The summary verify.yml shows at the end of a run (playbooks/templates/verify_summary.j2), rendered by
Ansible on the controller for a fleet of two, without AWS: its contract lines and each of its cases."""

from __future__ import annotations

import json

import pytest
from playbook_on_localhost import REPO, run_on_localhost

TEMPLATE = REPO / "playbooks" / "templates" / "verify_summary.j2"
PLAYBOOK = """
- name: Render the summary of verify.yml
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Write the summary's lines
      ansible.builtin.copy:
        content: "{{{{ (lookup('ansible.builtin.template', '{template}') | trim).splitlines() | to_json }}}}"
        dest: "{{{{ summary_file }}}}"
        mode: "0600"
"""
INVENTORY = {
    "api_servers": {
        "hosts": {
            "i-0aaa": {"ansible_host": "203.0.113.10", "instance_id": "i-0aaa", "ansible_user": "ubuntu"},
            "i-0bbb": {"ansible_host": "203.0.113.11", "instance_id": "i-0bbb", "ansible_user": "ubuntu"},
        }
    }
}
STACK = {
    "api_port": 11373,
    "ssh_private_key_file": "/secrets/ssh/ranker",
    "ssh_known_hosts_file": "/secrets/ssh/ranker.known_hosts",
    "media_cdn": False,
    "media_public_base_url": "https://media.s3.us-east-1.amazonaws.com",
    "media_public_prefix": "media/",
    "media_bucket_name": "media",
    "api_datastore": "dynamodb",
    "api_datastore_table_in_use": "ranker-data",
    "api_write_token": "",
    "stack_secret_parameters": {"api_write_token": "/ranker/api/write-token"},
    "controller_secrets_dir": "/secrets",
    "prometheus_targets_file": "/targets/ranker.json",
    "billing_alarm_usd": 5,
    "monthly_budget_usd": 5,
    "api_load_balancer": False,
    "media_noncurrent_version_expiry_days": 30,
    "project_name": "ranker",
    "aws_region": "eu-west-1",
    "alert_email": "",
    "instance_distribution": "ubuntu",
    "instance_release": "18.04",
    "instance_release_past_support": True,
    "instance_release_support_end": "2023-05-31",
    "ubuntu_pro_token": "",
}
SSH = (
    "ssh -i /secrets/ssh/ranker -o UserKnownHostsFile=/secrets/ssh/ranker.known_hosts -o HostKeyAlias={id} ubuntu@{ip}"
)


@pytest.fixture
def summary(tmp_path):
    (tmp_path / "inventory.json").write_text(json.dumps(INVENTORY))
    (tmp_path / "summary.yml").write_text(PLAYBOOK.format(template=TEMPLATE))

    def render(**changes) -> list[str]:
        lines = tmp_path / "summary.json"
        done = run_on_localhost(
            tmp_path / "summary.yml",
            {**STACK, **changes, "summary_file": str(lines)},
            inventory=tmp_path / "inventory.json",
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return json.loads(lines.read_text())

    return render


def test_the_summary_of_a_fleet_without_a_load_balancer(summary):
    lines = summary()
    assert lines[:8] == [
        "API: http://203.0.113.10:11373/ http://203.0.113.11:11373/",
        "Load balancer: none (api_load_balancer=false)",
        "Media: https://media.s3.us-east-1.amazonaws.com/media/ (public-read under that prefix of the bucket media)",
        "Datastore: DynamoDB table ranker-data",
        "SSH: " + ";  ".join([SSH.format(id="i-0aaa", ip="203.0.113.10"), SSH.format(id="i-0bbb", ip="203.0.113.11")]),
        "Write token: ssm:/ranker/api/write-token",
        "Secrets cached on this controller (0600): /secrets",
        "Prometheus targets: /targets/ranker.json",
    ]
    assert lines[8].startswith("Costs watched by (roles/cost_guardrails): a billing alarm above 5 USD")
    assert "alarms per instance, old photo versions expiring after 30 days" in lines[8]
    assert lines[9:] == [
        "Dashboard: CloudWatch dashboard ranker in eu-west-1",
        "Cost alerts to: WARNING, NOBODY: set alert_email",
        "Image: Ubuntu 18.04, PAST STANDARD SUPPORT since 2023-05-31 (its images are deprecated):"
        " WARNING, NO SECURITY UPDATES without Ubuntu Pro: set ubuntu_pro_token",
    ]


def test_the_summary_behind_a_load_balancer_with_the_photos_through_cloudfront(summary):
    lines = summary(
        verify_load_balancer_url="http://ranker-api.elb.example",
        api_load_balancer=True,
        media_cdn=True,
        media_cdn_distribution={"id": "E2EXAMPLE"},
        media_public_base_url="https://d111.cloudfront.net",
        api_write_token="from-a-vault",
        alert_email="ops@example.com",
        cost_guardrails_state={"subscription": {"state": "confirmed"}},
        instance_release="24.04",
        instance_release_past_support=False,
    )
    assert lines[:3] == [
        "API: http://ranker-api.elb.example/",
        "Load balancer: http://ranker-api.elb.example",
        "Media: https://d111.cloudfront.net/media/ (CloudFront distribution E2EXAMPLE, the only reader of the"
        " private bucket media)",
    ]
    assert "Write token: from the vault (api_write_token)" in lines
    assert "CPU-credit alarms per instance, the load balancer's alarms, old photo versions" in lines[8]
    assert lines[-2:] == ["Cost alerts to: ops@example.com (subscription confirmed)", "Image: Ubuntu 24.04"]


def test_an_unconfirmed_subscription_and_ubuntu_pro_are_named(summary):
    lines = summary(alert_email="ops@example.com", ubuntu_pro_token="pro-token")
    assert lines[-2:] == [
        'Cost alerts to: ops@example.com: confirm the subscription from the e-mail "AWS Notification - Subscription'
        ' Confirmation"',
        "Image: Ubuntu 18.04, PAST STANDARD SUPPORT since 2023-05-31 (its images are deprecated): security updates"
        " through Ubuntu Pro (ESM)",
    ]
