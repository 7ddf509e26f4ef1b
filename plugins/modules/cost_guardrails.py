#!/usr/bin/python
"""Ansible module: the stack's cost guardrails, compared and reconciled in one module run.

Why one role-local module instead of the collections' modules:
- amazon.aws and community.aws 7.x have no AWS Budgets module at all.
- The collections would need about eight module runs here (topic, subscription, billing alarm, one
  alarm task per instance plus a lookup to find the alarms of terminated instances, budget, lifecycle),
  each a new interpreter importing boto3 (~0.5 s): a no-op rerun of the site must stay fast, and this
  is one run that only reads when nothing differs.
- The media bucket's lifecycle (old photo versions and unfinished uploads are billed storage) is a
  cost guardrail too, so it is reconciled here rather than by another module run.
Everything is compared before anything is written; `changed` is true only for real changes, and in
check mode nothing is written. Nothing is retried: an error ends the run with AWS's message.
"""

DOCUMENTATION = r"""
module: cost_guardrails
short_description: SNS alert topic, billing alarm, monthly budget, per-instance CPU-credit alarms, bucket lifecycle
description:
  - An SNS topic C(<name_prefix>-cost-alerts) in C(region) with an e-mail subscription to C(alert_email)
    (the recipient confirms it; until then AWS lists it as pending). When C(billing_region) differs
    from C(region), a topic of the same name there too (CloudWatch alarms notify topics of their own
    region only).
  - A billing alarm C(<name_prefix>-estimated-charges) on C(AWS/Billing EstimatedCharges) (Currency USD)
    in C(billing_region), where AWS keeps the billing metrics, notifying the topic there.
  - A monthly cost budget C(<name_prefix>-monthly-cost) with an actual-spend notification at
    C(budget_actual_percent) and a forecast one at C(budget_forecast_percent), both e-mailed to
    C(alert_email).
  - One C(CPUCreditBalance) alarm per running burstable instance in C(instances)
    (C(<name_prefix>-cpu-credits-<instance id>)), and none for any other instance (alarms of instances
    not listed - terminated, replaced, scaled down - are deleted).
  - On C(bucket_name), two lifecycle rules (by ID; rules with other IDs are kept) - noncurrent object
    versions expire after C(noncurrent_version_days), incomplete multipart uploads are aborted after
    C(abort_multipart_days).
  - With an empty C(alert_email) the e-mail subscription and the budget's notifications are neither
    created nor removed.
  - Tags are set when a topic or alarm is created, not reconciled later; resources are found by name.
  - AWS Budgets' UpdateBudget is not used (the embedded AWS, moto, answers it with a 500) - a budget
    whose limit differs is deleted and created again; its spend figures are recomputed by AWS.
  - DescribeSubscribersForNotification is not implemented by the embedded AWS either (a 500, tried once
    only); the budget's subscribers are then left uncompared and RV(budget.subscribers_compared) is false.
options:
  name_prefix: {description: Prefix of every name (the project name)., type: str, required: true}
  account_id: {description: Account of the credentials (Budgets and the topic ARNs need it)., type: str, required: true}
  partition: {description: Partition of the account (ARNs)., type: str, default: aws}
  billing_region:
    description: Region of the billing metrics and of the billing alarm (us-east-1 in the commercial partition).
    type: str
    default: us-east-1
  account_guardrails:
    description:
      - C(present) - topic, subscription, billing alarm, budget and lifecycle as described.
      - C(absent) - topic(s), billing alarm and budget deleted (the lifecycle goes with its bucket).
      - C(untouched) - only the per-instance alarms are reconciled (a teardown that keeps the data).
    type: str
    choices: [present, absent, untouched]
    default: present
  alert_email:
    description: Who is told; empty means no subscription and no budget notifications.
    type: str
    default: ""
  billing_alarm_usd: {description: The month's estimated charges that raise the billing alarm., type: float, default: 5}
  monthly_budget_usd: {description: Monthly cost budget in USD., type: float, default: 5}
  budget_actual_percent:
    description: Actual spend notification threshold (percent of the budget).
    type: float
    default: 80
  budget_forecast_percent:
    description: Forecast spend notification threshold (percent of the budget).
    type: float
    default: 100
  instances:
    description: The running instances (dicts with instance_id and instance_type, as ec2_instance_info returns them).
    type: list
    elements: dict
    default: []
  cpu_credit_families:
    description: Instance families that earn CPU credits and get an alarm.
    type: list
    elements: str
    default: [t2, t3, t3a, t4g]
  cpu_credit_threshold: {description: The alarm fires below this many CPU credits., type: float, default: 20}
  cpu_credit_periods:
    description: Consecutive 5-minute periods below the threshold before the alarm fires.
    type: int
    default: 2
  bucket_name: {description: Bucket whose lifecycle rules are set; empty for none., type: str, default: ""}
  noncurrent_version_days: {description: Days after which a noncurrent object version expires., type: int, default: 30}
  abort_multipart_days:
    description: Days after which an incomplete multipart upload is aborted.
    type: int
    default: 1
  tags: {description: Tags of new topics and alarms., type: dict, default: {}}
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

RETURN = r"""
topics: {description: Topic ARN by region (those that exist or would)., returned: always, type: dict}
subscription:
  description: "alert_email and its state: confirmed, pending confirmation, or skipped (no alert_email)."
  returned: always
  type: dict
billing_alarm:
  description: Name, region and threshold of the billing alarm.
  returned: when account_guardrails is present
  type: dict
budget:
  description: Name, limit, notifications and whether the subscribers could be compared.
  returned: when account_guardrails is present
  type: dict
cpu_alarms:
  description: Names of the CPU-credit alarms that exist (or would) after the run.
  returned: always
  type: list
lifecycle_rules:
  description: IDs of the lifecycle rules this module keeps on bucket_name.
  returned: with bucket_name and account_guardrails present
  type: list
actions:
  description: What was changed, or would be in check mode, one sentence each.
  returned: always
  type: list
"""

import math

try:
    import boto3
    import botocore.config
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency.

from ansible_collections.amazon.aws.plugins.module_utils.botocore import get_aws_connection_info, is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def status_code(error):
    return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) if isinstance(error, ClientError) else 0


def aws_tags(tags):
    return [{"Key": key, "Value": str(value)} for key, value in sorted(tags.items())]


class Guardrails:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check = module.check_mode
        self.actions = []
        self.writing = None
        self.before = {}
        self.after = {}
        prefix = self.params["name_prefix"]
        self.topic_name = f"{prefix}-cost-alerts"
        self.billing_alarm_name = f"{prefix}-estimated-charges"
        self.budget_name = f"{prefix}-monthly-cost"
        self.cpu_alarm_prefix = f"{prefix}-cpu-credits-"
        self.rule_ids = (f"{prefix}-expire-noncurrent-versions", f"{prefix}-abort-incomplete-uploads")
        self.region = module.region
        self.regions = sorted({self.region, self.params["billing_region"]})
        self._clients = {}
        self._session = None
        self.subscription_states = {}

    # --- plumbing

    def client(self, service, region):
        """Clients of one boto3 session: module.client() starts a session per client, and each new
        session loads botocore's data files again (~0.1 s for the four services here)."""
        key = (service, region)
        if key not in self._clients:
            if self._session is None:
                _region, self._endpoint_url, self._connection = get_aws_connection_info(self.module)
                self._session = boto3.session.Session(profile_name=self._connection.pop("profile_name", None))
            config = self._connection.get("aws_config") or botocore.config.Config()
            if service == "budgets":
                # One attempt: the embedded AWS answers the calls it lacks with a 500, which botocore would
                # otherwise retry four times with back-off on every run.
                config = config.merge(botocore.config.Config(retries={"total_max_attempts": 1}))
            connection = {k: v for k, v in self._connection.items() if k != "aws_config"}
            self._clients[key] = self._session.client(
                service, region_name=region, endpoint_url=self._endpoint_url, config=config, **connection
            )
        return self._clients[key]

    def act(self, sentence, write):
        """Record a change; make it unless in check mode."""
        self.actions.append(sentence)
        if not self.check:
            self.writing = sentence
            write()
            self.writing = None

    def topic_arn(self, region):
        return f"arn:{self.params['partition']}:sns:{region}:{self.params['account_id']}:{self.topic_name}"

    # --- SNS: the topic(s) and the e-mail subscription

    def topic_exists(self, region):
        try:
            self.client("sns", region).get_topic_attributes(TopicArn=self.topic_arn(region))
            return True
        except is_boto3_error_code(["NotFound", "NotFoundException"]):
            return False

    def ensure_topics(self):
        for region in self.regions:
            exists = self.topic_exists(region)
            self.before.setdefault("topics", []).extend([self.topic_arn(region)] if exists else [])
            self.after.setdefault("topics", []).append(self.topic_arn(region))
            if not exists:
                sns = self.client("sns", region)
                self.act(
                    f"create the SNS topic {self.topic_name} in {region}",
                    lambda sns=sns: sns.create_topic(Name=self.topic_name, Tags=aws_tags(self.params["tags"])),
                )
            self.ensure_subscription(region, exists)

    def ensure_subscription(self, region, topic_exists):
        email = self.params["alert_email"]
        if not email:
            return
        sns = self.client("sns", region)
        arn = self.topic_arn(region)
        emails = []
        if topic_exists:
            pages = sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=arn)
            emails = [s for page in pages for s in page["Subscriptions"] if s["Protocol"] == "email"]
        self.before.setdefault("email_subscriptions", []).extend(f"{region}: {s['Endpoint']}" for s in emails)
        self.after.setdefault("email_subscriptions", []).append(f"{region}: {email}")
        wanted = [s for s in emails if s["Endpoint"].lower() == email.lower()]
        if wanted:
            pending = all(not s["SubscriptionArn"].startswith("arn:") for s in wanted)
            self.subscription_states[region] = "pending confirmation" if pending else "confirmed"
        else:
            self.subscription_states[region] = "pending confirmation"
            self.act(
                f"subscribe {email} to {self.topic_name} in {region} (AWS e-mails a confirmation link)",
                lambda: self._subscribe(sns, arn, email, region),
            )
        for other in emails:
            if other in wanted:
                continue
            if other["SubscriptionArn"].startswith("arn:"):
                self.act(
                    f"unsubscribe {other['Endpoint']} from {self.topic_name} in {region}",
                    lambda other=other: sns.unsubscribe(SubscriptionArn=other["SubscriptionArn"]),
                )
            else:
                self.module.warn(
                    f"{other['Endpoint']} has not confirmed its subscription to {self.topic_name} in {region}; "
                    "AWS offers no way to remove an unconfirmed subscription, and drops it after three days."
                )

    def _subscribe(self, sns, arn, email, region):
        # AWS answers "pending confirmation" until the recipient follows the link; an endpoint that
        # confirms at once (the embedded AWS) answers with the subscription's ARN.
        answer = sns.subscribe(TopicArn=arn, Protocol="email", Endpoint=email)
        if answer.get("SubscriptionArn", "").startswith("arn:"):
            self.subscription_states[region] = "confirmed"

    def delete_topics(self):
        for region in self.regions:
            if self.topic_exists(region):
                self.before.setdefault("topics", []).append(self.topic_arn(region))
                sns = self.client("sns", region)
                self.act(
                    f"delete the SNS topic {self.topic_name} in {region} and its subscriptions",
                    lambda sns=sns, region=region: sns.delete_topic(TopicArn=self.topic_arn(region)),
                )

    # --- CloudWatch alarms

    @staticmethod
    def alarm_differs(current, wanted):
        for key, value in wanted.items():
            if key == "Tags":
                continue
            have = current.get(key)
            if key in ("AlarmActions", "OKActions", "InsufficientDataActions"):
                have, value = sorted(have or []), sorted(value)
            elif key == "Dimensions":
                have = sorted((d["Name"], d["Value"]) for d in have or [])
                value = sorted((d["Name"], d["Value"]) for d in value)
            elif key == "Threshold":
                have = float(have) if have is not None else None
            if have != value:
                return True
        return False

    def put_alarm(self, region, current, wanted, what):
        cloudwatch = self.client("cloudwatch", region)
        if current is None:
            self.act(f"create {what}", lambda: cloudwatch.put_metric_alarm(**wanted))
        elif self.alarm_differs(current, wanted):
            # PutMetricAlarm replaces the alarm's settings; Tags are ignored for an existing alarm.
            self.act(f"update {what}", lambda: cloudwatch.put_metric_alarm(**wanted))

    def billing_alarm(self):
        region = self.params["billing_region"]
        threshold = self.params["billing_alarm_usd"]
        return dict(
            AlarmName=self.billing_alarm_name,
            AlarmDescription=(
                f"The account's estimated charges this month passed {threshold:g} USD "
                f"({self.params['name_prefix']}'s cost guardrail; needs billing alerts on in the billing preferences)."
            ),
            ActionsEnabled=True,
            AlarmActions=[self.topic_arn(region)],
            OKActions=[],
            InsufficientDataActions=[],
            Namespace="AWS/Billing",
            MetricName="EstimatedCharges",
            Dimensions=[{"Name": "Currency", "Value": "USD"}],
            Statistic="Maximum",
            # AWS publishes the billing metrics about every six hours.
            Period=21600,
            EvaluationPeriods=1,
            Threshold=float(threshold),
            ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching",
            Tags=aws_tags(self.params["tags"]),
        )

    def read_alarms(self, region, names=None, prefix=None):
        pages = self.client("cloudwatch", region).get_paginator("describe_alarms")
        query = {"AlarmTypes": ["MetricAlarm"]}
        query.update({"AlarmNames": names} if names else {"AlarmNamePrefix": prefix})
        return {a["AlarmName"]: a for page in pages.paginate(**query) for a in page["MetricAlarms"]}

    def ensure_billing_alarm(self, present):
        region = self.params["billing_region"]
        current = self.read_alarms(region, names=[self.billing_alarm_name]).get(self.billing_alarm_name)
        self.before["billing_alarm"] = self.alarm_view(current)
        what = f"the billing alarm {self.billing_alarm_name} in {region}"
        if present:
            wanted = self.billing_alarm()
            self.after["billing_alarm"] = self.alarm_view(wanted)
            self.put_alarm(region, current, wanted, f"{what} (above {self.params['billing_alarm_usd']:g} USD)")
        elif current is not None:
            cloudwatch = self.client("cloudwatch", region)
            self.act(f"delete {what}", lambda: cloudwatch.delete_alarms(AlarmNames=[self.billing_alarm_name]))

    @staticmethod
    def alarm_view(alarm):
        if alarm is None:
            return None
        return {
            "metric": f"{alarm['Namespace']} {alarm['MetricName']}",
            "dimensions": {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])},
            "threshold": f"{alarm['ComparisonOperator']} {float(alarm['Threshold']):g}",
            "actions": sorted(alarm.get("AlarmActions", [])),
        }

    def cpu_alarm(self, instance):
        instance_id, instance_type = instance["instance_id"], instance["instance_type"]
        threshold = self.params["cpu_credit_threshold"]
        return dict(
            AlarmName=self.cpu_alarm_prefix + instance_id,
            AlarmDescription=(
                f"{instance_id} ({instance_type}) has fewer than {threshold:g} CPU credits left: it is throttled "
                "to its baseline (standard mode) or billed for surplus credits (unlimited mode)."
            ),
            ActionsEnabled=True,
            AlarmActions=[self.topic_arn(self.region)],
            OKActions=[],
            InsufficientDataActions=[],
            Namespace="AWS/EC2",
            MetricName="CPUCreditBalance",
            Dimensions=[{"Name": "InstanceId", "Value": instance_id}],
            Statistic="Minimum",
            Period=300,
            EvaluationPeriods=self.params["cpu_credit_periods"],
            Threshold=float(threshold),
            ComparisonOperator="LessThanThreshold",
            # A stopped instance sends no data: no alarm for that.
            TreatMissingData="notBreaching",
            Tags=aws_tags({**self.params["tags"], "InstanceId": instance_id}),
        )

    def ensure_cpu_alarms(self):
        families = set(self.params["cpu_credit_families"])
        wanted = {}
        for instance in self.params["instances"]:
            for key in ("instance_id", "instance_type"):
                if not instance.get(key):
                    self.module.fail_json(msg=f"Every item of instances needs {key}: {instance}")
            if instance["instance_type"].split(".")[0] in families:
                alarm = self.cpu_alarm(instance)
                wanted[alarm["AlarmName"]] = alarm
        current = self.read_alarms(self.region, prefix=self.cpu_alarm_prefix)
        self.before["cpu_alarms"] = sorted(current)
        self.after["cpu_alarms"] = sorted(wanted)
        for name, alarm in sorted(wanted.items()):
            self.put_alarm(self.region, current.get(name), alarm, f"the CPU-credit alarm {name}")
        stale = sorted(set(current) - set(wanted))
        if stale:
            cloudwatch = self.client("cloudwatch", self.region)
            self.act(
                f"delete the CPU-credit alarms of instances that no longer run: {', '.join(stale)}",
                lambda: cloudwatch.delete_alarms(AlarmNames=stale),
            )
        self.result["cpu_alarms"] = sorted(wanted)

    # --- AWS Budgets

    def wanted_notifications(self):
        return [
            {"NotificationType": kind, "ComparisonOperator": "GREATER_THAN", "Threshold": float(percent),
             "ThresholdType": "PERCENTAGE"}
            for kind, percent in (
                ("ACTUAL", self.params["budget_actual_percent"]),
                ("FORECASTED", self.params["budget_forecast_percent"]),
            )
        ]  # fmt: skip

    @staticmethod
    def notification_key(notification):
        return (
            notification["NotificationType"],
            notification["ComparisonOperator"],
            float(notification["Threshold"]),
            notification.get("ThresholdType", "PERCENTAGE"),
        )

    def read_budget(self, budgets):
        try:
            return budgets.describe_budget(AccountId=self.params["account_id"], BudgetName=self.budget_name)["Budget"]
        except is_boto3_error_code("NotFoundException"):
            return None

    def ensure_budget(self, present):
        budgets = self.client("budgets", self.params["billing_region"])
        account = self.params["account_id"]
        current = self.read_budget(budgets)
        limit = self.params["monthly_budget_usd"]
        current_limit = (current or {}).get("BudgetLimit", {})
        self.before["budget"] = (
            None if current is None
            else f"{current_limit.get('Amount')} {current_limit.get('Unit')} {current.get('TimeUnit')}"
        )  # fmt: skip
        if not present:
            if current is not None:
                self.act(
                    f"delete the budget {self.budget_name}",
                    lambda: budgets.delete_budget(AccountId=account, BudgetName=self.budget_name),
                )
            return
        self.after["budget"] = f"{limit:g} USD MONTHLY"
        email = self.params["alert_email"]
        subscribers = [{"SubscriptionType": "EMAIL", "Address": email}] if email else []
        with_subscribers = [{"Notification": n, "Subscribers": subscribers} for n in self.wanted_notifications()]
        budget = {
            "BudgetName": self.budget_name,
            "BudgetLimit": {"Amount": f"{limit:.2f}", "Unit": "USD"},
            "TimeUnit": "MONTHLY",
            "BudgetType": "COST",
        }
        self.result["budget"] = {
            "name": self.budget_name,
            "limit_usd": limit,
            "notifications": [f"{n['NotificationType']} > {n['Threshold']:g} %" for n in self.wanted_notifications()]
            if email else [],
            "subscribers_compared": True,
        }  # fmt: skip

        def create():
            budgets.create_budget(
                AccountId=account, Budget=budget, NotificationsWithSubscribers=with_subscribers if email else []
            )

        if current is None:
            self.act(f"create the monthly budget {self.budget_name} ({limit:g} USD)", create)
            return
        same_limit = (
            current_limit.get("Unit") == "USD"
            and math.isclose(float(current_limit.get("Amount", "nan")), limit, abs_tol=0.005)
            and current.get("TimeUnit") == "MONTHLY"
            and current.get("BudgetType") == "COST"
        )
        if not same_limit:
            # Not UpdateBudget: the embedded AWS answers it with a 500. The budget only watches the
            # account's spend, which AWS recomputes for the new one, so nothing is lost by replacing it.
            def replace():
                budgets.delete_budget(AccountId=account, BudgetName=self.budget_name)
                create()

            self.act(f"replace the budget {self.budget_name} (limit {limit:g} USD)", replace)
            return
        if email:
            self.ensure_budget_notifications(budgets, subscribers)

    def ensure_budget_notifications(self, budgets, subscribers):
        account, name = self.params["account_id"], self.budget_name
        pages = budgets.get_paginator("describe_notifications_for_budget").paginate(AccountId=account, BudgetName=name)
        current = {self.notification_key(n): n for page in pages for n in page.get("Notifications", [])}
        wanted = {self.notification_key(n): n for n in self.wanted_notifications()}
        strip = ("NotificationType", "ComparisonOperator", "Threshold", "ThresholdType")
        for key in sorted(set(current) - set(wanted)):
            notification = {k: v for k, v in current[key].items() if k in strip}
            self.act(
                f"delete the budget notification {key[0]} > {key[2]:g} %",
                lambda notification=notification: budgets.delete_notification(
                    AccountId=account, BudgetName=name, Notification=notification
                ),
            )
        for key in sorted(set(wanted) - set(current)):
            self.act(
                f"add the budget notification {key[0]} > {key[2]:g} % for {subscribers[0]['Address']}",
                lambda key=key: budgets.create_notification(
                    AccountId=account, BudgetName=name, Notification=wanted[key], Subscribers=subscribers
                ),
            )
        for key in sorted(set(wanted) & set(current)):
            notification = {k: v for k, v in current[key].items() if k in strip}
            try:
                pages = budgets.get_paginator("describe_subscribers_for_notification").paginate(
                    AccountId=account, BudgetName=name, Notification=notification
                )
                have = [s for page in pages for s in page.get("Subscribers", [])]
            except ClientError as error:
                if status_code(error) >= 500:
                    # The embedded AWS lacks this call (see the module's description).
                    self.result["budget"]["subscribers_compared"] = False
                    continue
                raise
            have_keys = {(s["SubscriptionType"], s["Address"].lower()) for s in have}
            wanted_keys = {(s["SubscriptionType"], s["Address"].lower()) for s in subscribers}
            for subscriber in subscribers:
                if (subscriber["SubscriptionType"], subscriber["Address"].lower()) not in have_keys:
                    self.act(
                        f"add {subscriber['Address']} to the budget notification {key[0]} > {key[2]:g} %",
                        lambda notification=notification, subscriber=subscriber: budgets.create_subscriber(
                            AccountId=account, BudgetName=name, Notification=notification, Subscriber=subscriber
                        ),
                    )
            for subscriber in have:
                if (subscriber["SubscriptionType"], subscriber["Address"].lower()) not in wanted_keys:
                    self.act(
                        f"remove {subscriber['Address']} from the budget notification {key[0]} > {key[2]:g} %",
                        lambda notification=notification, subscriber=subscriber: budgets.delete_subscriber(
                            AccountId=account, BudgetName=name, Notification=notification, Subscriber=subscriber
                        ),
                    )

    # --- S3 lifecycle of the media bucket

    @staticmethod
    def rule_view(rule):
        """A rule without the spellings S3 varies in (Filter {} or {Prefix: ""}, or a legacy Prefix)."""
        view = {k: v for k, v in rule.items() if k not in ("Filter", "Prefix")}
        rule_filter = rule.get("Filter", {"Prefix": rule.get("Prefix", "")}) or {"Prefix": ""}
        view["Filter"] = rule_filter
        return view

    def ensure_lifecycle(self):
        bucket = self.params["bucket_name"]
        s3 = self.client("s3", self.region)
        wanted = [
            {
                "ID": self.rule_ids[0],
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "NoncurrentVersionExpiration": {"NoncurrentDays": self.params["noncurrent_version_days"]},
            },
            {
                "ID": self.rule_ids[1],
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": self.params["abort_multipart_days"]},
            },
        ]
        self.result["lifecycle_rules"] = list(self.rule_ids)
        try:
            current = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        except is_boto3_error_code("NoSuchLifecycleConfiguration"):
            current = []
        except is_boto3_error_code("NoSuchBucket"):
            if not self.check:
                raise
            current = []  # a check-mode run on an account without the bucket yet
        ours = sorted((r for r in current if r.get("ID") in self.rule_ids), key=lambda r: r["ID"])
        self.before["lifecycle_rules"] = [self.rule_view(r) for r in ours]
        self.after["lifecycle_rules"] = [self.rule_view(r) for r in sorted(wanted, key=lambda r: r["ID"])]
        if self.before["lifecycle_rules"] == self.after["lifecycle_rules"]:
            return
        others = [r for r in current if r.get("ID") not in self.rule_ids]
        self.act(
            f"set the lifecycle rules of {bucket}: noncurrent versions expire after "
            f"{self.params['noncurrent_version_days']} days, incomplete uploads are aborted after "
            f"{self.params['abort_multipart_days']} day(s)",
            lambda: s3.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration={"Rules": others + wanted}
            ),
        )

    # --- the whole

    def run(self):
        mode = self.params["account_guardrails"]
        self.result = {
            "topics": {},
            "subscription": {"email": self.params["alert_email"], "state": "skipped"},
            "cpu_alarms": [],
        }
        if mode == "present":
            for label, value in (
                ("billing_alarm_usd", self.params["billing_alarm_usd"]),
                ("monthly_budget_usd", self.params["monthly_budget_usd"]),
            ):
                if not (math.isfinite(value) and value > 0):
                    self.module.fail_json(msg=f"{label} must be a positive number of US dollars, not {value}.")
            self.ensure_topics()
            self.result["topics"] = {region: self.topic_arn(region) for region in self.regions}
            if self.params["alert_email"]:
                states = set(self.subscription_states.values())
                state = "pending confirmation" if "pending confirmation" in states else "confirmed"
                self.result["subscription"]["state"] = state
            self.ensure_billing_alarm(present=True)
            self.result["billing_alarm"] = {
                "name": self.billing_alarm_name,
                "region": self.params["billing_region"],
                "threshold_usd": self.params["billing_alarm_usd"],
            }
            self.ensure_budget(present=True)
            if self.params["bucket_name"]:
                self.ensure_lifecycle()
        # The instance alarms go before the topics they notify.
        self.ensure_cpu_alarms()
        if mode == "absent":
            self.ensure_billing_alarm(present=False)
            self.ensure_budget(present=False)
            self.delete_topics()
        result = dict(changed=bool(self.actions), actions=self.actions, **self.result)
        if self.module._diff:
            result["diff"] = {"before": self.before, "after": self.after}
        self.module.exit_json(**result)


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name_prefix=dict(type="str", required=True),
            account_id=dict(type="str", required=True),
            partition=dict(type="str", default="aws"),
            billing_region=dict(type="str", default="us-east-1"),
            account_guardrails=dict(type="str", choices=["present", "absent", "untouched"], default="present"),
            alert_email=dict(type="str", default=""),
            billing_alarm_usd=dict(type="float", default=5),
            monthly_budget_usd=dict(type="float", default=5),
            budget_actual_percent=dict(type="float", default=80),
            budget_forecast_percent=dict(type="float", default=100),
            instances=dict(type="list", elements="dict", default=[]),
            cpu_credit_families=dict(type="list", elements="str", default=["t2", "t3", "t3a", "t4g"]),
            cpu_credit_threshold=dict(type="float", default=20),
            cpu_credit_periods=dict(type="int", default=2),
            bucket_name=dict(type="str", default=""),
            noncurrent_version_days=dict(type="int", default=30),
            abort_multipart_days=dict(type="int", default=1),
            tags=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    guardrails = Guardrails(module)
    try:
        guardrails.run()
    except BotoCoreError as error:
        module.fail_json_aws(error, msg="Cost guardrails: could not reach AWS (credentials, region, endpoint)")
    except ClientError as error:
        step = guardrails.writing or "read the current state"
        done = [action for action in guardrails.actions if action != guardrails.writing]
        module.fail_json_aws(
            error, msg=f"Cost guardrails: could not {step} (done before it: {'; '.join(done) or 'nothing'})"
        )


if __name__ == "__main__":
    main()
