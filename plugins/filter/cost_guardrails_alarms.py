# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cost guardrails' alarms and dashboard, as data (roles/cost_guardrails).

- ``cost_guardrails_alarms``: every alarm the stack wants, as `amazon.aws.cloudwatch_metric_alarm`'s
  options plus the alarm's ``region``.
- ``cost_guardrails_alarms_to_put``: those of them the module would write, given what
  `amazon.aws.cloudwatch_metric_alarm_info` read: the role skips the others, as each module run costs
  ~0.4 s. It mirrors the module's own comparison (amazon.aws 7.6.1, ``create_metric_alarm``): the
  parameters it builds must equal the alarm AWS describes, less the keys it excludes.
  tests/playbooks/test_cost_guardrails.py runs the module itself over every alarm this skips and asserts
  it changes nothing, and changes an alarm by hand to see it put back.
- ``cost_guardrails_stale_alarms``: the names of the alarms the role made once and no longer wants (those
  of terminated instances, the load balancer's without it).
- ``cost_guardrails_dashboard``: the dashboard's body.
"""

from __future__ import annotations

from typing import Any

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

# The module leaves these out of its comparison (create_metric_alarm), in the info module's spelling.
UNCOMPARED = {
    "actions_enabled",
    "state_value",
    "state_reason",
    "state_reason_data",
    "state_updated_timestamp",
    "state_transitioned_timestamp",
    "alarm_arn",
    "alarm_configuration_updated_timestamp",
    "metrics",
}
# Alarms of the stack's instances (<prefix>-<family>-<instance id>) and of its load balancer.
INSTANCE_FAMILIES = ("cpu-credits", "cpu-surplus", "system-check", "instance-check")
LOAD_BALANCER_ALARMS = ("unhealthy-hosts", "target-5xx")


def _alarm(name, region, namespace, metric, dimensions, statistic, comparison, threshold, period, periods, **more):
    alarm = {
        "name": name,
        "region": region,
        "namespace": namespace,
        "metric_name": metric,
        "dimensions": dimensions,
        "statistic": statistic,
        "comparison": comparison,
        "threshold": float(threshold),
        "period": int(period),
        "evaluation_periods": int(periods),
        "ok_actions": [],
        "insufficient_data_actions": [],
    }
    alarm.update(more)
    return alarm


def cost_guardrails_alarms(instances: list[dict], settings: dict[str, Any], load_balancer: dict[str, str]):
    """Every alarm: billing; per instance status checks and (burstable) CPU credits; the load balancer's."""
    prefix, region, partition = settings["prefix"], settings["region"], settings["partition"]
    topic = settings["topic_arns"][region]
    billing_region, usd = settings["billing_region"], float(settings["billing_alarm_usd"])
    alarms = [
        _alarm(
            f"{prefix}-estimated-charges", billing_region, "AWS/Billing", "EstimatedCharges", {"Currency": "USD"},
            "Maximum", "GreaterThanThreshold", usd, 21600, 1,
            description=f"The account's estimated charges this month passed {usd:g} USD ({prefix}'s cost "
            "guardrail). INSUFFICIENT_DATA: no billing data arrives (billing alerts off in the billing "
            "preferences, or a member account of an organisation).",
            alarm_actions=[settings["topic_arns"][billing_region]],
            treat_missing_data=settings["billing_missing_data"],
        )
    ]  # fmt: skip
    families = set(settings["cpu_credit_families"])
    for instance in instances:
        instance_id, instance_type = instance["instance_id"], instance["instance_type"]
        dimensions = {"InstanceId": instance_id}
        alarms.append(
            _alarm(
                f"{prefix}-system-check-{instance_id}", region, "AWS/EC2", "StatusCheckFailed_System", dimensions,
                "Maximum", "GreaterThanOrEqualToThreshold", 1, 60, settings["status_check_periods"],
                description=f"{instance_id}: AWS's system status check fails (host hardware, power, network): "
                "EC2 recovers the instance onto other hardware, keeping its id, addresses and volumes.",
                alarm_actions=[f"arn:{partition}:automate:{region}:ec2:recover", topic],
                treat_missing_data="missing",
            )
        )  # fmt: skip
        alarms.append(
            _alarm(
                f"{prefix}-instance-check-{instance_id}", region, "AWS/EC2", "StatusCheckFailed_Instance", dimensions,
                "Maximum", "GreaterThanOrEqualToThreshold", 1, 60, settings["status_check_periods"],
                description=f"{instance_id}: its instance status check fails (kernel, network configuration, "
                "full disk or memory): reboot or reprovision it (playbooks/reprovision.yml).",
                alarm_actions=[topic],
                treat_missing_data="missing",
            )
        )  # fmt: skip
        if instance_type.split(".")[0] not in families:
            continue
        credits = float(settings["cpu_credit_threshold"])
        alarms.append(
            _alarm(
                f"{prefix}-cpu-credits-{instance_id}", region, "AWS/EC2", "CPUCreditBalance", dimensions,
                "Minimum", "LessThanThreshold", credits, 300, settings["cpu_credit_periods"],
                description=f"{instance_id} ({instance_type}) has fewer than {credits:g} CPU credits left: it is "
                "throttled to its baseline (standard mode) or billed for surplus credits (unlimited mode).",
                alarm_actions=[topic],
                # A stopped instance sends no data: no alarm for that.
                treat_missing_data="notBreaching",
            )
        )  # fmt: skip
        if settings["cpu_credits"] == "unlimited":
            alarms.append(
                _alarm(
                    f"{prefix}-cpu-surplus-{instance_id}", region, "AWS/EC2", "CPUSurplusCreditBalance", dimensions,
                    "Maximum", "GreaterThanThreshold", settings["cpu_surplus_threshold"], 300,
                    settings["cpu_credit_periods"],
                    description=f"{instance_id} ({instance_type}, unlimited) spends surplus CPU credits: billed "
                    "unless it earns them back within 24 hours.",
                    alarm_actions=[topic],
                    treat_missing_data="notBreaching",
                )
            )  # fmt: skip
    if load_balancer:
        # Both dimensions, in the order AWS/ApplicationELB lists them for a target group's metrics.
        dimensions = {"TargetGroup": load_balancer["target_group"], "LoadBalancer": load_balancer["load_balancer"]}
        alarms.append(
            _alarm(
                f"{prefix}-unhealthy-hosts", region, "AWS/ApplicationELB", "UnHealthyHostCount", dimensions,
                "Maximum", "GreaterThanThreshold", 0, 60, settings["unhealthy_periods"],
                description="An API instance fails the load balancer's health check (/readyz).",
                alarm_actions=[topic],
                # The load balancer reports it every minute while it has targets: no data is not "healthy".
                treat_missing_data="missing",
            )
        )  # fmt: skip
        alarms.append(
            _alarm(
                f"{prefix}-target-5xx", region, "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", dimensions,
                "Sum", "GreaterThanThreshold", settings["target_5xx_threshold"], 300, 1,
                description=f"The API answered more than {settings['target_5xx_threshold']} 5xx responses in "
                "5 minutes.",
                alarm_actions=[topic],
                # Published only when there is one: no data means no 5xx.
                treat_missing_data="notBreaching",
            )
        )  # fmt: skip
    return alarms


def _module_view(alarm: dict[str, Any]) -> dict[str, Any]:
    """The parameters cloudwatch_metric_alarm builds from these options, in the info module's spelling."""
    params = {
        "AlarmName": alarm["name"],
        "MetricName": alarm["metric_name"],
        "Namespace": alarm["namespace"],
        "Statistic": alarm["statistic"],
        "ComparisonOperator": alarm["comparison"],
        "Threshold": float(alarm["threshold"]),
        "Period": int(alarm["period"]),
        "EvaluationPeriods": int(alarm["evaluation_periods"]),
        "AlarmDescription": alarm.get("description"),
        "Dimensions": [{"Name": k, "Value": v} for k, v in alarm["dimensions"].items()] or None,
        "AlarmActions": alarm.get("alarm_actions", []),
        "InsufficientDataActions": alarm.get("insufficient_data_actions", []),
        "OKActions": alarm.get("ok_actions", []),
        "TreatMissingData": alarm.get("treat_missing_data", "missing"),
    }
    return camel_dict_to_snake_dict({k: v for k, v in params.items() if v is not None})


def _described(results: list[dict]) -> dict[tuple[str, str], dict]:
    """What cloudwatch_metric_alarm_info read, per region (the loop's item), by (region, name)."""
    return {(r["item"], a["alarm_name"]): a for r in results for a in r.get("metric_alarms", [])}


def cost_guardrails_alarms_to_put(wanted: list[dict], results: list[dict]) -> list[dict]:
    current = _described(results)
    to_put = []
    for alarm in wanted:
        have = current.get((alarm["region"], alarm["name"]))
        if have is None:
            to_put.append(alarm)
            continue
        have = {k: v for k, v in have.items() if k not in UNCOMPARED}
        have.setdefault("treat_missing_data", "missing")
        if have != _module_view(alarm):
            to_put.append(alarm)
    return to_put


def cost_guardrails_stale_alarms(results: list[dict], wanted: list[dict], prefix: str) -> list[dict]:
    """{name, region} of the instance and load balancer alarms that are not wanted (any more)."""
    names = {(a["region"], a["name"]) for a in wanted}
    ours = tuple(f"{prefix}-{family}-" for family in INSTANCE_FAMILIES)
    ours_exact = {f"{prefix}-{name}" for name in LOAD_BALANCER_ALARMS}
    return [
        {"region": region, "name": name}
        for region, name in sorted(_described(results))
        if (region, name) not in names and (name.startswith(ours) or name in ours_exact)
    ]


def cost_guardrails_dashboard(instances: list[dict], settings: dict[str, Any], load_balancer: dict[str, str]):
    """The stack's dashboard: the load balancer's requests, latency, 5xx and hosts (with it), then CPU and
    CPU credits per instance."""
    region, prefix = settings["region"], settings["prefix"]
    families = set(settings["cpu_credit_families"])
    widgets: list[dict[str, Any]] = [
        {
            "type": "text", "x": 0, "y": 0, "width": 24, "height": 2,
            "properties": {
                "markdown": f"## {prefix}\nThe stack's load balancer and API instances. Alarms: "
                f"`{prefix}-*` in {region}, the billing alarm in {settings['billing_region']}.",
            },
        }
    ]  # fmt: skip

    def graph(title, metrics, stat, period=300, **more):
        position = len(widgets) - 1
        widgets.append(
            {
                "type": "metric", "x": 12 * (position % 2), "y": 2 + 6 * (position // 2), "width": 12, "height": 6,
                "properties": {
                    "title": title, "region": region, "view": "timeSeries", "stacked": False, "stat": stat,
                    "period": period, "metrics": metrics, **more,
                },
            }
        )  # fmt: skip

    if load_balancer:
        alb = ["LoadBalancer", load_balancer["load_balancer"]]
        group = ["TargetGroup", load_balancer["target_group"], *alb]
        namespace = "AWS/ApplicationELB"
        graph("Requests", [[namespace, "RequestCount", *alb]], "Sum", 60)
        graph("Latency (target response time, p90)", [[namespace, "TargetResponseTime", *alb]], "p90", 60)
        graph(
            "5xx responses (API, load balancer)",
            [[namespace, "HTTPCode_Target_5XX_Count", *alb], [namespace, "HTTPCode_ELB_5XX_Count", *alb]],
            "Sum",
            60,
        )
        graph(
            "Healthy and unhealthy hosts",
            [[namespace, "HealthyHostCount", *group], [namespace, "UnHealthyHostCount", *group]],
            "Maximum",
            60,
        )
    ids = [i["instance_id"] for i in instances]
    burstable = [i["instance_id"] for i in instances if i["instance_type"].split(".")[0] in families]
    if ids:
        graph("CPU utilisation per instance", [["AWS/EC2", "CPUUtilization", "InstanceId", i] for i in ids], "Average")
    if burstable:
        metrics = [["AWS/EC2", "CPUCreditBalance", "InstanceId", i] for i in burstable]
        if settings["cpu_credits"] == "unlimited":
            metrics += [["AWS/EC2", "CPUSurplusCreditBalance", "InstanceId", i] for i in burstable]
        graph("CPU credits per instance", metrics, "Minimum")
    return {"widgets": widgets}


class FilterModule:
    def filters(self):
        return {
            "cost_guardrails_alarms": cost_guardrails_alarms,
            "cost_guardrails_alarms_to_put": cost_guardrails_alarms_to_put,
            "cost_guardrails_stale_alarms": cost_guardrails_stale_alarms,
            "cost_guardrails_dashboard": cost_guardrails_dashboard,
        }
