"""The cost guardrails and alarms (roles/cost_guardrails) against the embedded AWS: what provisioning sets up,
that the instances' alarms follow the running instances through scale-down and teardown (and through a
reprovision's replacement: test_load_balancer.py), the dashboard's metrics, the budget updated in place,
and what teardown keeps."""

import json

import boto3
import botocore.exceptions

PROJECT = "ranker-costs"
ACCOUNT = "123456789012"  # moto's
EMAIL = "ops@example.com"
VARS = {"project_name": PROJECT}
TOPIC = f"{PROJECT}-cost-alerts"
BILLING_ALARM = f"{PROJECT}-estimated-charges"
BUDGET = f"{PROJECT}-monthly-cost"
BUCKET = f"sandbox-{PROJECT}-media-{ACCOUNT}"
RECOVER = "arn:aws:automate:{region}:ec2:recover"
LOAD_BALANCER = {"api_load_balancer": True, "api_load_balancer_deregistration_delay": 1}
ELB_METRICS = {
    "RequestCount",
    "TargetResponseTime",
    "HTTPCode_Target_5XX_Count",
    "HTTPCode_ELB_5XX_Count",
    "HealthyHostCount",
    "UnHealthyHostCount",
}
TARGET_GROUP_METRICS = {"HealthyHostCount", "UnHealthyHostCount"}


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


def budget_subscribers(aws, kind):
    notification = {"NotificationType": kind, "ComparisonOperator": "GREATER_THAN", "ThresholdType": "PERCENTAGE"}
    notification["Threshold"] = 80.0 if kind == "ACTUAL" else 100.0
    listed = client(aws, "budgets").describe_subscribers_for_notification(
        AccountId=ACCOUNT, BudgetName=BUDGET, Notification=notification
    )["Subscribers"]
    return [s["Address"] for s in listed]


def running_instances(aws):
    reservations = client(aws, "ec2").describe_instances(
        Filters=[
            {"Name": "tag:Project", "Values": [PROJECT]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )["Reservations"]
    return sorted(i["InstanceId"] for r in reservations for i in r["Instances"])


def load_balancer_dimensions(aws):
    """The ARN suffixes AWS/ApplicationELB names its metrics by, as elbv2 describes the stack's."""
    elb = client(aws, "elbv2")
    [balancer] = elb.describe_load_balancers(Names=[f"{PROJECT}-api"])["LoadBalancers"]
    [group] = elb.describe_target_groups(Names=[f"{PROJECT}-api"])["TargetGroups"]
    return {
        "LoadBalancer": balancer["LoadBalancerArn"].split(":loadbalancer/")[1],
        "TargetGroup": group["TargetGroupArn"].split(":")[-1],
    }


def account_guardrails(aws):
    """Which of the account-level guardrails exist: topic, billing alarm, budget."""
    return {
        "topic": topics(aws) == [topic_arn("us-east-1")],
        "billing_alarm": BILLING_ALARM in alarms(aws, BILLING_ALARM),
        "budget": BUDGET in budgets(aws),
    }


def dashboard(aws, region="us-east-1"):
    """The dashboard's metrics as (namespace, name, {dimension: value}), or None without a dashboard."""
    cloudwatch = client(aws, "cloudwatch", region)
    try:
        body = json.loads(cloudwatch.get_dashboard(DashboardName=PROJECT)["DashboardBody"])
    except botocore.exceptions.ClientError as error:
        if error.response["Error"]["Code"] != "ResourceNotFound":
            raise
        return None
    metrics = []
    for widget in body["widgets"]:
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == region
            for namespace, name, *dimensions in widget["properties"]["metrics"]:
                metrics.append((namespace, name, dict(zip(dimensions[::2], dimensions[1::2], strict=True))))
    return metrics


def assert_stack_alarms(aws, load_balancer, unlimited=False):
    """Every alarm of the running instances (t2.micro) and, with it, the load balancer, and no other."""
    topic, running = topic_arn("us-east-1"), running_instances(aws)
    found = alarms(aws, f"{PROJECT}-")
    wanted = {BILLING_ALARM}
    for instance_id in running:
        families = ["system-check", "instance-check", "cpu-credits"] + (["cpu-surplus"] if unlimited else [])
        wanted |= {f"{PROJECT}-{family}-{instance_id}" for family in families}
        dimensions = [{"Name": "InstanceId", "Value": instance_id}]
        system = found[f"{PROJECT}-system-check-{instance_id}"]
        assert (system["Namespace"], system["MetricName"], system["Dimensions"]) == (
            "AWS/EC2",
            "StatusCheckFailed_System",
            dimensions,
        )
        assert system["AlarmActions"] == [RECOVER.format(region="us-east-1"), topic]
        assert (system["ComparisonOperator"], system["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1.0)
        assert (system["Period"], system["EvaluationPeriods"], system["TreatMissingData"]) == (60, 2, "missing")
        check = found[f"{PROJECT}-instance-check-{instance_id}"]
        assert (check["MetricName"], check["Dimensions"], check["AlarmActions"]) == (
            "StatusCheckFailed_Instance",
            dimensions,
            [topic],
        )
        assert (check["ComparisonOperator"], check["Threshold"], check["TreatMissingData"]) == (
            "GreaterThanOrEqualToThreshold",
            1.0,
            "missing",
        )
        credits = found[f"{PROJECT}-cpu-credits-{instance_id}"]
        assert (credits["Namespace"], credits["MetricName"], credits["Dimensions"]) == (
            "AWS/EC2",
            "CPUCreditBalance",
            dimensions,
        )
        assert (credits["ComparisonOperator"], credits["Threshold"], credits["TreatMissingData"]) == (
            "LessThanThreshold",
            20.0,
            "notBreaching",
        )
        assert credits["AlarmActions"] == [topic]
        if unlimited:
            surplus = found[f"{PROJECT}-cpu-surplus-{instance_id}"]
            assert (surplus["MetricName"], surplus["Dimensions"], surplus["AlarmActions"]) == (
                "CPUSurplusCreditBalance",
                dimensions,
                [topic],
            )
            assert (surplus["ComparisonOperator"], surplus["Threshold"]) == ("GreaterThanThreshold", 0.0)
    if load_balancer:
        wanted |= {f"{PROJECT}-unhealthy-hosts", f"{PROJECT}-target-5xx"}
        names = load_balancer_dimensions(aws)
        dimensions = [
            {"Name": "TargetGroup", "Value": names["TargetGroup"]},
            {"Name": "LoadBalancer", "Value": names["LoadBalancer"]},
        ]
        unhealthy, errors = found[f"{PROJECT}-unhealthy-hosts"], found[f"{PROJECT}-target-5xx"]
        assert (unhealthy["Namespace"], unhealthy["MetricName"], unhealthy["Dimensions"]) == (
            "AWS/ApplicationELB",
            "UnHealthyHostCount",
            dimensions,
        )
        assert (unhealthy["ComparisonOperator"], unhealthy["Threshold"], unhealthy["TreatMissingData"]) == (
            "GreaterThanThreshold",
            0.0,
            "missing",
        )
        assert (errors["MetricName"], errors["Dimensions"], errors["Statistic"]) == (
            "HTTPCode_Target_5XX_Count",
            dimensions,
            "Sum",
        )
        assert (errors["ComparisonOperator"], errors["Threshold"], errors["TreatMissingData"]) == (
            "GreaterThanThreshold",
            5.0,
            "notBreaching",
        )
        assert unhealthy["AlarmActions"] == errors["AlarmActions"] == [topic]
    assert set(found) == wanted


def assert_dashboard_names_existing_metrics(aws, load_balancer):
    """Each metric of the dashboard is one the stack has: the running instances' EC2 metrics, the load
    balancer's and target group's (by the ARN suffixes elbv2 describes), and each of those is shown."""
    metrics, running = dashboard(aws), running_instances(aws)
    names = load_balancer_dimensions(aws) if load_balancer else {}
    ec2 = {m[2]["InstanceId"] for m in metrics if m[0] == "AWS/EC2"}
    assert ec2 == set(running)
    for namespace, name, dimensions in metrics:
        if namespace == "AWS/EC2":
            assert name in {"CPUUtilization", "CPUCreditBalance"}, name
            assert list(dimensions) == ["InstanceId"]
        else:
            assert load_balancer, f"{namespace} {name} without the load balancer"
            assert (namespace, name) in {("AWS/ApplicationELB", n) for n in ELB_METRICS}, name
            keys = {"TargetGroup", "LoadBalancer"} if name in TARGET_GROUP_METRICS else {"LoadBalancer"}
            assert dimensions == {k: names[k] for k in keys}, (name, dimensions)
    shown = {(namespace, name, dimensions.get("InstanceId")) for namespace, name, dimensions in metrics}
    for instance_id in running:
        assert {("AWS/EC2", "CPUUtilization", instance_id), ("AWS/EC2", "CPUCreditBalance", instance_id)} <= shown
    assert {name for namespace, name, _ in metrics if namespace == "AWS/ApplicationELB"} == (
        ELB_METRICS if load_balancer else set()
    )


def test_check_mode_on_an_empty_account_creates_no_guardrail_and_preflight_warns_of_no_recipient(run_playbook, aws):
    result = run_playbook("playbooks/provision.yml", "--check", "--diff", extra_vars=VARS)

    assert result.returncode == 0, result.output[-3000:]
    assert "WARNING: alert_email is empty" in result.text
    assert account_guardrails(aws) == {"topic": False, "billing_alarm": False, "budget": False}
    assert not alarms(aws, PROJECT)
    assert dashboard(aws) is None


def test_preflight_names_each_bad_cost_variable_and_its_rule(run_playbook, aws):
    bad = {"alert_email": "ops-at-example.com", "monthly_budget_usd": -5, "billing_alarm_usd": 0}

    result = run_playbook("playbooks/provision.yml", extra_vars={**VARS, **bad})

    assert result.returncode != 0
    assert "alert_email 'ops-at-example.com' must look like an e-mail address" in result.text, result.output[-3000:]
    assert "monthly_budget_usd '-5' must be a positive number of US dollars" in result.text
    assert "billing_alarm_usd '0' must be a positive number of US dollars" in result.text
    assert not aws.project_resources(PROJECT)["buckets"], "preflight must stop before anything is made"


# The role, then amazon.aws.cloudwatch_metric_alarm itself over every alarm the role wants: the role skips
# the alarms its read finds equal (plugins/filter/cost_guardrails_alarms.py), and the module must agree.
MODULE_AGREES = """
- name: Reconcile the guardrails, then put every alarm with the module itself
  hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/coffeeshop.ranker.aws: "{{ aws_connection }}"
  environment: "{{ aws_environment }}"
  tasks:
    - name: Read the AWS account of the credentials
      ansible.builtin.import_role:
        name: preflight
        tasks_from: identity
    - name: Find the API instances of the project
      ansible.builtin.import_role:
        name: api_instances
        tasks_from: info
    - name: Reconcile the guardrails
      ansible.builtin.import_role:
        name: cost_guardrails
    - name: Put every alarm the role wants, none skipped
      amazon.aws.cloudwatch_metric_alarm:
        name: "{{ item.name }}"
        region: "{{ item.region }}"
        namespace: "{{ item.namespace }}"
        metric_name: "{{ item.metric_name }}"
        dimensions: "{{ item.dimensions }}"
        statistic: "{{ item.statistic }}"
        comparison: "{{ item.comparison }}"
        threshold: "{{ item.threshold }}"
        period: "{{ item.period }}"
        evaluation_periods: "{{ item.evaluation_periods }}"
        description: "{{ item.description }}"
        alarm_actions: "{{ item.alarm_actions }}"
        ok_actions: "{{ item.ok_actions }}"
        insufficient_data_actions: "{{ item.insufficient_data_actions }}"
        treat_missing_data: "{{ item.treat_missing_data }}"
      loop: "{{ _cost_guardrails_alarms }}"
      loop_control:
        label: "{{ item.name }}"
"""


def test_alarms_and_dashboard_follow_the_instances_and_the_load_balancer(run_playbook, aws, tmp_path):
    three = {**VARS, **LOAD_BALANCER, "alert_email": EMAIL, "api_instance_count": 3}
    first = run_playbook("playbooks/provision.yml", extra_vars=three)
    assert first.returncode == 0, first.output[-3000:]

    # The topic with the e-mail subscription (moto confirms e-mail subscriptions at once).
    assert topics(aws) == [topic_arn("us-east-1")]
    assert email_subscriptions(aws) == [EMAIL]
    # The billing alarm, in us-east-1, acting on the topic; no billing data reads INSUFFICIENT_DATA.
    billing = alarms(aws, BILLING_ALARM)[BILLING_ALARM]
    assert (billing["Namespace"], billing["MetricName"]) == ("AWS/Billing", "EstimatedCharges")
    assert billing["Dimensions"] == [{"Name": "Currency", "Value": "USD"}]
    assert (billing["Threshold"], billing["TreatMissingData"]) == (5.0, "missing")
    assert billing["AlarmActions"] == [topic_arn("us-east-1")]
    # The monthly budget with its two notifications, each e-mailing the operator.
    budget = budgets(aws)[BUDGET]
    assert float(budget["BudgetLimit"]["Amount"]) == 5.0
    assert (budget["TimeUnit"], budget["BudgetType"]) == ("MONTHLY", "COST")
    assert budget_notifications(aws) == [("ACTUAL", "GREATER_THAN", 80.0), ("FORECASTED", "GREATER_THAN", 100.0)]
    assert budget_subscribers(aws, "ACTUAL") == budget_subscribers(aws, "FORECASTED") == [EMAIL]
    # Three instances behind the load balancer: their alarms, the load balancer's, the dashboard.
    assert len(running_instances(aws)) == 3
    assert_stack_alarms(aws, load_balancer=True)
    assert_dashboard_names_existing_metrics(aws, load_balancer=True)
    # The media bucket's lifecycle rules.
    rules = client(aws, "s3").get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert {
        json.dumps({k: v for k, v in r.items() if k not in ("ID", "Filter", "Prefix", "Status")}) for r in rules
    } == {
        json.dumps({"NoncurrentVersionExpiration": {"NoncurrentDays": 30}}),
        json.dumps({"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}),
    }

    again = run_playbook("playbooks/provision.yml", extra_vars=three)
    assert again.returncode == 0, again.output[-3000:]
    assert again.recap["changed"] == 0, again.output[-3000:]

    # What the role skipped as unchanged, the module itself leaves unchanged too.
    playbook = tmp_path / "module_agrees.yml"
    playbook.write_text(MODULE_AGREES)
    agrees = run_playbook(str(playbook), extra_vars=three)
    assert agrees.returncode == 0, agrees.output[-3000:]
    assert agrees.recap["changed"] == 0, agrees.output[-3000:]
    assert agrees.output.count("ok: [localhost] => (item=ranker-costs-") >= 12, agrees.output[-3000:]

    # An alarm changed by hand is put back.
    cloudwatch = client(aws, "cloudwatch")
    victim = alarms(aws, f"{PROJECT}-unhealthy-hosts")[f"{PROJECT}-unhealthy-hosts"]
    changed_by_hand = {
        k: victim[k]
        for k in ("AlarmName", "Namespace", "MetricName", "Dimensions", "Statistic", "Period", "EvaluationPeriods")
    }
    cloudwatch.put_metric_alarm(**changed_by_hand, Threshold=3.0, ComparisonOperator="GreaterThanThreshold")
    repaired = run_playbook("playbooks/provision.yml", extra_vars=three)
    assert repaired.returncode == 0, repaired.output[-3000:]
    assert repaired.recap["changed"] == 1, repaired.output[-3000:]
    assert_stack_alarms(aws, load_balancer=True)

    # Scale-down: api_instances terminates one instance (the oldest), its alarms and widgets go with it.
    two = {**three, "api_instance_count": 2}
    down = run_playbook("playbooks/provision.yml", extra_vars=two)
    assert down.returncode == 0, down.output[-3000:]
    assert len(running_instances(aws)) == 2
    assert_stack_alarms(aws, load_balancer=True)
    assert_dashboard_names_existing_metrics(aws, load_balancer=True)

    # (A reprovision's replacement, on booted hosts: tests/playbooks/test_load_balancer.py.)

    # Without the load balancer: its alarms and widgets go, the instances' stay.
    alone = run_playbook("playbooks/provision.yml", extra_vars={**two, "api_load_balancer": False})
    assert alone.returncode == 0, alone.output[-3000:]
    assert_stack_alarms(aws, load_balancer=False)
    assert_dashboard_names_existing_metrics(aws, load_balancer=False)

    # Teardown keeping the data: no instance alarm or dashboard left, the account's guardrails stay.
    kept = run_playbook("playbooks/teardown.yml", extra_vars=VARS)
    assert kept.returncode == 0, kept.output[-3000:]
    assert set(alarms(aws, f"{PROJECT}-")) == {BILLING_ALARM}
    assert dashboard(aws) is None
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
    group/coffeeshop.ranker.aws: "{{ aws_connection }}"
  environment: "{{ aws_environment }}"
  roles:
    - role: cost_guardrails
      vars:
        cost_guardrails_account_id: "123456789012"
        cost_guardrails_bucket_name: ""
        cost_guardrails_instances:
          - {instance_id: i-0123456789abcdef0, instance_type: t2.micro}
          - {instance_id: i-0fedcba9876543210, instance_type: m5.large}
"""
BURSTABLE, OTHER = "i-0123456789abcdef0", "i-0fedcba9876543210"


def test_outside_us_east_1_the_billing_alarm_stays_there_and_changes_are_reconciled(run_playbook, aws, tmp_path):
    playbook = tmp_path / "guardrails.yml"
    playbook.write_text(GUARDRAILS_ONLY)
    settings = {**VARS, "aws_region": "eu-west-1", "alert_email": EMAIL}

    first = run_playbook(str(playbook), extra_vars=settings)
    assert first.returncode == 0, first.output[-3000:]

    # Billing metrics live in us-east-1: the billing alarm and a topic of its own there.
    assert alarms(aws, BILLING_ALARM, "us-east-1")[BILLING_ALARM]["AlarmActions"] == [topic_arn("us-east-1")]
    assert not alarms(aws, BILLING_ALARM, "eu-west-1")
    # The instance alarms in the instances' region, on its topic; no CPU-credit one for a type without credits.
    found = alarms(aws, f"{PROJECT}-", "eu-west-1")
    assert set(found) == {
        f"{PROJECT}-{family}-{instance}"
        for family in ("system-check", "instance-check")
        for instance in (BURSTABLE, OTHER)
    } | {f"{PROJECT}-cpu-credits-{BURSTABLE}"}
    assert found[f"{PROJECT}-cpu-credits-{BURSTABLE}"]["AlarmActions"] == [topic_arn("eu-west-1")]
    assert found[f"{PROJECT}-system-check-{OTHER}"]["AlarmActions"] == [
        RECOVER.format(region="eu-west-1"),
        topic_arn("eu-west-1"),
    ]
    assert email_subscriptions(aws, "eu-west-1") == email_subscriptions(aws, "us-east-1") == [EMAIL]
    # The dashboard in the stack's region: the instances' widgets only (no load balancer).
    assert {(n, d["InstanceId"]) for _, n, d in dashboard(aws, "eu-west-1")} == {
        ("CPUUtilization", BURSTABLE),
        ("CPUUtilization", OTHER),
        ("CPUCreditBalance", BURSTABLE),
    }

    check = run_playbook(str(playbook), "--check", extra_vars=settings)
    assert check.returncode == 0, check.output[-3000:]
    assert check.recap["changed"] == 0, check.output[-3000:]

    # A setting AWS keeps on the budget that the role does not manage: an update in place keeps it, a
    # budget deleted and created again would lose it (with its history).
    before = budgets(aws)[BUDGET]
    kept = {**before["CostTypes"], "IncludeCredit": False}
    marked = {k: v for k, v in before.items() if k not in ("CalculatedSpend", "LastUpdatedTime")}
    client(aws, "budgets").update_budget(AccountId=ACCOUNT, NewBudget={**marked, "CostTypes": kept})

    # Another budget, recipient and CPU credit mode, in check mode: reported, nothing written.
    other = {**settings, "monthly_budget_usd": 12.5, "alert_email": "finance@example.com"}
    other["instance_cpu_credits"] = "unlimited"
    dry = run_playbook(str(playbook), "--check", extra_vars=other)
    assert dry.returncode == 0, dry.output[-3000:]
    assert dry.recap["changed"] >= 3, dry.output[-3000:]
    assert float(budgets(aws)[BUDGET]["BudgetLimit"]["Amount"]) == 5.0
    assert email_subscriptions(aws, "eu-west-1") == [EMAIL]
    assert not alarms(aws, f"{PROJECT}-cpu-surplus-", "eu-west-1")

    changed = run_playbook(str(playbook), extra_vars=other)
    assert changed.returncode == 0, changed.output[-3000:]
    after = budgets(aws)[BUDGET]
    assert float(after["BudgetLimit"]["Amount"]) == 12.5
    assert after["CostTypes"]["IncludeCredit"] is False, "the budget was replaced, not updated in place"
    assert after["TimePeriod"] == before["TimePeriod"]
    assert budget_notifications(aws) == [("ACTUAL", "GREATER_THAN", 80.0), ("FORECASTED", "GREATER_THAN", 100.0)]
    assert budget_subscribers(aws, "ACTUAL") == budget_subscribers(aws, "FORECASTED") == ["finance@example.com"]
    assert email_subscriptions(aws, "eu-west-1") == email_subscriptions(aws, "us-east-1") == ["finance@example.com"]
    # Unlimited CPU credits: a surplus-credit alarm for the burstable instance only.
    assert list(alarms(aws, f"{PROJECT}-cpu-surplus-", "eu-west-1")) == [f"{PROJECT}-cpu-surplus-{BURSTABLE}"]

    rerun = run_playbook(str(playbook), extra_vars=other)
    assert rerun.returncode == 0, rerun.output[-3000:]
    assert rerun.recap["changed"] == 0, rerun.output[-3000:]

    # Back to standard: the surplus alarm goes.
    standard = run_playbook(str(playbook), extra_vars={**other, "instance_cpu_credits": "standard"})
    assert standard.returncode == 0, standard.output[-3000:]
    assert not alarms(aws, f"{PROJECT}-cpu-surplus-", "eu-west-1")
