"""The cost guardrails (roles/cost_guardrails) against the embedded AWS: what provisioning sets up, that the
CPU-credit alarms follow the running instances through scale-down and teardown, and what teardown keeps."""

import json

import boto3

PROJECT = "ranker-costs"
ACCOUNT = "123456789012"  # moto's
EMAIL = "ops@example.com"
VARS = {"project_name": PROJECT}
TOPIC = f"{PROJECT}-cost-alerts"
BILLING_ALARM = f"{PROJECT}-estimated-charges"
BUDGET = f"{PROJECT}-monthly-cost"
CPU_ALARM_PREFIX = f"{PROJECT}-cpu-credits-"
BUCKET = f"sandbox-{PROJECT}-media-{ACCOUNT}"


def client(aws, service, region="us-east-1"):
    return boto3.client(
        service,
        endpoint_url=aws.endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def topic_arn(region):
    return f"arn:aws:sns:{region}:{ACCOUNT}:{TOPIC}"


def topics(aws, region="us-east-1"):
    return [t["TopicArn"] for t in client(aws, "sns", region).list_topics()["Topics"] if t["TopicArn"].endswith(TOPIC)]


def email_subscriptions(aws, region="us-east-1"):
    listed = client(aws, "sns", region).list_subscriptions_by_topic(TopicArn=topic_arn(region))["Subscriptions"]
    return [s["Endpoint"] for s in listed if s["Protocol"] == "email"]


def alarms(aws, prefix, region="us-east-1"):
    found = client(aws, "cloudwatch", region).describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]
    return {a["AlarmName"]: a for a in found}


def budgets(aws):
    return {b["BudgetName"]: b for b in client(aws, "budgets").describe_budgets(AccountId=ACCOUNT).get("Budgets", [])}


def budget_notifications(aws):
    listed = client(aws, "budgets").describe_notifications_for_budget(AccountId=ACCOUNT, BudgetName=BUDGET)
    return sorted((n["NotificationType"], n["ComparisonOperator"], n["Threshold"]) for n in listed["Notifications"])


def running_instances(aws):
    reservations = client(aws, "ec2").describe_instances(
        Filters=[
            {"Name": "tag:Project", "Values": [PROJECT]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )["Reservations"]
    return sorted(i["InstanceId"] for r in reservations for i in r["Instances"])


def cpu_alarm_instances(aws):
    found = alarms(aws, CPU_ALARM_PREFIX).values()
    return sorted(a["Dimensions"][0]["Value"] for a in found if a["MetricName"] == "CPUCreditBalance")


def account_guardrails(aws):
    """Which of the account-level guardrails exist: topic, billing alarm, budget."""
    return {
        "topic": topics(aws) == [topic_arn("us-east-1")],
        "billing_alarm": BILLING_ALARM in alarms(aws, BILLING_ALARM),
        "budget": BUDGET in budgets(aws),
    }


def test_check_mode_on_an_empty_account_creates_no_guardrail_and_preflight_warns_of_no_recipient(run_playbook, aws):
    result = run_playbook("playbooks/provision.yml", "--check", "--diff", extra_vars=VARS)

    assert result.returncode == 0, result.output[-3000:]
    assert "WARNING: alert_email is empty" in result.text
    assert account_guardrails(aws) == {"topic": False, "billing_alarm": False, "budget": False}
    assert not alarms(aws, PROJECT)


def test_preflight_names_each_bad_cost_variable_and_its_rule(run_playbook, aws):
    bad = {"alert_email": "ops-at-example.com", "monthly_budget_usd": -5, "billing_alarm_usd": 0}

    result = run_playbook("playbooks/provision.yml", extra_vars={**VARS, **bad})

    assert result.returncode != 0
    assert "alert_email 'ops-at-example.com' must look like an e-mail address" in result.text, result.output[-3000:]
    assert "monthly_budget_usd '-5' must be a positive number of US dollars" in result.text
    assert "billing_alarm_usd '0' must be a positive number of US dollars" in result.text
    assert not aws.project_resources(PROJECT)["buckets"], "preflight must stop before anything is made"


def test_guardrails_follow_the_instances_through_scale_down_and_teardown(run_playbook, aws):
    two = {**VARS, "alert_email": EMAIL, "api_instance_count": 2}
    first = run_playbook("playbooks/provision.yml", extra_vars=two)
    assert first.returncode == 0, first.output[-3000:]

    # The topic with the e-mail subscription (moto confirms e-mail subscriptions at once).
    assert topics(aws) == [topic_arn("us-east-1")]
    assert email_subscriptions(aws) == [EMAIL]
    # The billing alarm, in us-east-1, acting on the topic.
    billing = alarms(aws, BILLING_ALARM)[BILLING_ALARM]
    assert (billing["Namespace"], billing["MetricName"]) == ("AWS/Billing", "EstimatedCharges")
    assert billing["Dimensions"] == [{"Name": "Currency", "Value": "USD"}]
    assert billing["Threshold"] == 5.0
    assert billing["AlarmActions"] == [topic_arn("us-east-1")]
    # The monthly budget with its two notifications.
    budget = budgets(aws)[BUDGET]
    assert float(budget["BudgetLimit"]["Amount"]) == 5.0
    assert (budget["TimeUnit"], budget["BudgetType"]) == ("MONTHLY", "COST")
    assert budget_notifications(aws) == [("ACTUAL", "GREATER_THAN", 80.0), ("FORECASTED", "GREATER_THAN", 100.0)]
    # One CPU-credit alarm per running instance, on the topic.
    assert len(running_instances(aws)) == 2
    assert cpu_alarm_instances(aws) == running_instances(aws)
    for alarm in alarms(aws, CPU_ALARM_PREFIX).values():
        assert (alarm["Namespace"], alarm["ComparisonOperator"]) == ("AWS/EC2", "LessThanThreshold")
        assert alarm["AlarmActions"] == [topic_arn("us-east-1")]
    # The media bucket's lifecycle rules.
    rules = client(aws, "s3").get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert {json.dumps({k: v for k, v in r.items() if k not in ("ID", "Filter", "Status")}) for r in rules} == {
        json.dumps({"NoncurrentVersionExpiration": {"NoncurrentDays": 30}}),
        json.dumps({"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}),
    }
    assert "Watch the costs" in first.text

    again = run_playbook("playbooks/provision.yml", extra_vars=two)
    assert again.returncode == 0, again.output[-3000:]
    assert again.recap["changed"] == 0, again.output[-3000:]

    # Scale-down: api_instances terminates one instance (the oldest), its alarm goes with it.
    down = run_playbook("playbooks/provision.yml", extra_vars={**two, "api_instance_count": 1})
    assert down.returncode == 0, down.output[-3000:]
    assert len(running_instances(aws)) == 1
    assert cpu_alarm_instances(aws) == running_instances(aws)

    # Teardown keeping the data: no instance alarm left, the account's guardrails stay.
    kept = run_playbook("playbooks/teardown.yml", extra_vars=VARS)
    assert kept.returncode == 0, kept.output[-3000:]
    assert not alarms(aws, CPU_ALARM_PREFIX)
    assert account_guardrails(aws) == {"topic": True, "billing_alarm": True, "budget": True}

    removed = run_playbook("playbooks/teardown.yml", extra_vars={**VARS, "teardown_delete_data": True})
    assert removed.returncode == 0, removed.output[-3000:]
    assert account_guardrails(aws) == {"topic": False, "billing_alarm": False, "budget": False}
    assert not alarms(aws, PROJECT)


GUARDRAILS_ONLY = """
- name: Reconcile the cost guardrails alone
  hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    cost_guardrails: "{{ aws_connection }}"
  roles:
    - role: cost_guardrails
      vars:
        cost_guardrails_account_id: "123456789012"
        cost_guardrails_bucket_name: ""
        cost_guardrails_instances:
          - {instance_id: i-0123456789abcdef0, instance_type: t2.micro}
          - {instance_id: i-0fedcba9876543210, instance_type: m5.large}
"""


def test_outside_us_east_1_the_billing_alarm_stays_there_and_changes_are_reconciled(run_playbook, aws, tmp_path):
    playbook = tmp_path / "guardrails.yml"
    playbook.write_text(GUARDRAILS_ONLY)
    settings = {**VARS, "aws_region": "eu-west-1", "alert_email": EMAIL}

    first = run_playbook(str(playbook), extra_vars=settings)
    assert first.returncode == 0, first.output[-3000:]

    # Billing metrics live in us-east-1: the billing alarm and a topic of its own there.
    assert alarms(aws, BILLING_ALARM, "us-east-1")[BILLING_ALARM]["AlarmActions"] == [topic_arn("us-east-1")]
    assert not alarms(aws, BILLING_ALARM, "eu-west-1")
    # The instance alarms in the instances' region, on its topic; none for a type without CPU credits.
    cpu = alarms(aws, CPU_ALARM_PREFIX, "eu-west-1")
    assert list(cpu) == [f"{CPU_ALARM_PREFIX}i-0123456789abcdef0"]
    assert cpu[f"{CPU_ALARM_PREFIX}i-0123456789abcdef0"]["AlarmActions"] == [topic_arn("eu-west-1")]
    assert email_subscriptions(aws, "eu-west-1") == email_subscriptions(aws, "us-east-1") == [EMAIL]

    check = run_playbook(str(playbook), "--check", extra_vars=settings)
    assert check.returncode == 0, check.output[-3000:]
    assert check.recap["changed"] == 0, check.output[-3000:]

    # Another budget and recipient: the budget is replaced (moto cannot UpdateBudget), the e-mail swapped.
    changed = run_playbook(
        str(playbook), extra_vars={**settings, "monthly_budget_usd": 12.5, "alert_email": "finance@example.com"}
    )
    assert changed.returncode == 0, changed.output[-3000:]
    assert changed.recap["changed"] == 1
    assert float(budgets(aws)[BUDGET]["BudgetLimit"]["Amount"]) == 12.5
    assert budget_notifications(aws) == [("ACTUAL", "GREATER_THAN", 80.0), ("FORECASTED", "GREATER_THAN", 100.0)]
    assert email_subscriptions(aws, "eu-west-1") == email_subscriptions(aws, "us-east-1") == ["finance@example.com"]
