#!/usr/bin/python
# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: one monthly AWS cost budget and its e-mail notifications.

Why a module of our own: amazon.aws and community.aws 7.x have no AWS Budgets module. Everything else of
the cost guardrails (topic, alarms, lifecycle rules) uses the collections' modules; this one covers Budgets
only.
"""

DOCUMENTATION = r"""
module: cost_guardrails_budget
short_description: A monthly COST budget with actual and forecast e-mail notifications
author: Coffee Shop Ranker operations team (!UNKNOWN)
description:
  - Creates the budget C(name) of C(account_id) with a monthly limit of C(limit_usd), or updates it in
    place (UpdateBudget) when the limit differs, keeping its history and any setting this module does not
    manage (cost types, filters, time period). Never deleted and created again to change it.
  - With C(email), one notification per item of C(notifications) e-mails C(email); notifications not
    listed are deleted, other subscribers of the listed ones removed. Without C(email), the notifications
    are neither created nor removed.
  - C(state=absent) deletes the budget.
options:
  name: {description: Name of the budget., type: str, required: true}
  account_id: {description: Account that owns the budget., type: str, required: true}
  limit_usd: {description: Monthly limit in US dollars (required with state=present)., type: float}
  email: {description: Who the notifications e-mail; empty leaves the notifications alone., type: str, default: ""}
  notifications:
    description: The notifications, each C(type) (ACTUAL or FORECASTED) and C(percent) of the limit.
    type: list
    elements: dict
    default: []
  state: {description: Whether the budget exists., type: str, choices: [present, absent], default: present}
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Keep a monthly budget of 20 USD that e-mails at 80 % spent and at a forecast of 100 %
  coffeeshop.ranker.cost_guardrails_budget:
    name: coffee-ranker-monthly-cost
    account_id: "123456789012"
    region: us-east-1
    limit_usd: 20
    email: ops@example.com
    notifications:
      - {type: ACTUAL, percent: 80}
      - {type: FORECASTED, percent: 100}

- name: Delete the budget
  coffeeshop.ranker.cost_guardrails_budget:
    name: coffee-ranker-monthly-cost
    account_id: "123456789012"
    region: us-east-1
    state: absent
"""

RETURN = r"""
budget:
  description: Name, limit and notifications after the run (empty when absent).
  returned: always
  type: dict
actions:
  description: What was changed (or would be in check mode), one sentence each.
  returned: always
  type: list
"""

import contextlib
import math

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

with contextlib.suppress(ImportError):  # AnsibleAWSModule reports the missing dependency.
    from botocore.exceptions import BotoCoreError, ClientError


# Budget fields AWS computes; UpdateBudget takes the rest of the budget as it stands.
COMPUTED = ("CalculatedSpend", "LastUpdatedTime")
NOTIFICATION_KEYS = ("NotificationType", "ComparisonOperator", "Threshold", "ThresholdType")


def notification_key(notification):
    return (notification["NotificationType"], float(notification["Threshold"]), notification.get("ThresholdType"))


class Budget:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.client = module.client("budgets")
        self.ids = {"AccountId": self.params["account_id"], "BudgetName": self.params["name"]}
        self.actions = []

    def act(self, sentence, call, **arguments):
        """Record a change; make it unless in check mode."""
        self.actions.append(sentence)
        if not self.module.check_mode:
            call(**self.ids, **arguments)

    def read(self):
        try:
            return self.client.describe_budget(**self.ids)["Budget"]
        except is_boto3_error_code("NotFoundException"):
            return None

    def wanted_notifications(self):
        return [
            {
                "NotificationType": item["type"],
                "ComparisonOperator": "GREATER_THAN",
                "Threshold": float(item["percent"]),
                "ThresholdType": "PERCENTAGE",
            }
            for item in self.params["notifications"]
        ]

    def ensure(self):
        name, limit, email = self.params["name"], self.params["limit_usd"], self.params["email"]
        current = self.read()
        if self.params["state"] == "absent":
            if current is not None:
                self.act(f"delete the budget {name}", self.client.delete_budget)
            return {}
        if not (math.isfinite(limit) and limit > 0):
            self.module.fail_json(msg=f"limit_usd must be a positive number of US dollars, not {limit}.")
        for item in self.params["notifications"]:
            # Negated on purpose: `not percent > 0` refuses a NaN percent too, which `percent <= 0` lets through.
            # pylint: disable-next=unnecessary-negation
            if item.get("type") not in ("ACTUAL", "FORECASTED") or not float(item.get("percent", 0)) > 0:
                self.module.fail_json(msg=f"Each notification needs type ACTUAL or FORECASTED and percent > 0: {item}")
        limit_field = {"Amount": f"{limit:.2f}", "Unit": "USD"}
        subscribers = [{"SubscriptionType": "EMAIL", "Address": email}] if email else []
        summary = {"name": name, "limit_usd": limit, "notifications": []}
        if email:
            summary["notifications"] = [
                f"{n['NotificationType']} > {n['Threshold']:g} %" for n in self.wanted_notifications()
            ]
        if current is None:
            budget = {"BudgetName": name, "BudgetLimit": limit_field, "TimeUnit": "MONTHLY", "BudgetType": "COST"}
            with_subscribers = [{"Notification": n, "Subscribers": subscribers} for n in self.wanted_notifications()]
            self.act(
                f"create the monthly budget {name} ({limit:g} USD)",
                lambda AccountId, BudgetName: self.client.create_budget(
                    AccountId=AccountId, Budget=budget, NotificationsWithSubscribers=with_subscribers if email else []
                ),
            )
            return summary
        if current.get("BudgetType") != "COST":
            self.module.fail_json(msg=f"The budget {name} exists with type {current.get('BudgetType')}, not COST.")
        have = current.get("BudgetLimit", {})
        if (
            have.get("Unit") != "USD"
            or not math.isclose(float(have.get("Amount", "nan")), limit, abs_tol=0.005)
            or current.get("TimeUnit") != "MONTHLY"
        ):
            # In place: the budget keeps its history (and settings made elsewhere); only the limit changes.
            new = {k: v for k, v in current.items() if k not in COMPUTED}
            new.update(BudgetLimit=limit_field, TimeUnit="MONTHLY")
            new.pop("PlannedBudgetLimits", None)
            self.act(
                f"update the budget {name} in place (limit {have.get('Amount')} -> {limit:g} USD)",
                lambda AccountId, BudgetName: self.client.update_budget(AccountId=AccountId, NewBudget=new),
            )
        if email:
            self.ensure_notifications(subscribers)
        return summary

    def ensure_notifications(self, subscribers):
        pages = self.client.get_paginator("describe_notifications_for_budget").paginate(**self.ids)
        current = {notification_key(n): n for page in pages for n in page.get("Notifications", [])}
        wanted = {notification_key(n): n for n in self.wanted_notifications()}
        for key in sorted(set(current) - set(wanted)):
            notification = {k: v for k, v in current[key].items() if k in NOTIFICATION_KEYS}
            self.act(
                f"delete the budget notification {key[0]} > {key[1]:g} %",
                self.client.delete_notification,
                Notification=notification,
            )
        for key in sorted(set(wanted) - set(current)):
            self.act(
                f"add the budget notification {key[0]} > {key[1]:g} % for {subscribers[0]['Address']}",
                self.client.create_notification,
                Notification=wanted[key],
                Subscribers=subscribers,
            )
        wanted_keys = {(s["SubscriptionType"], s["Address"].lower()) for s in subscribers}
        for key in sorted(set(wanted) & set(current)):
            notification = {k: v for k, v in current[key].items() if k in NOTIFICATION_KEYS}
            pages = self.client.get_paginator("describe_subscribers_for_notification").paginate(
                **self.ids, Notification=notification
            )
            have = [s for page in pages for s in page.get("Subscribers", [])]
            have_keys = {(s["SubscriptionType"], s["Address"].lower()) for s in have}
            for subscriber in subscribers:
                if (subscriber["SubscriptionType"], subscriber["Address"].lower()) not in have_keys:
                    self.act(
                        f"add {subscriber['Address']} to the budget notification {key[0]} > {key[1]:g} %",
                        self.client.create_subscriber,
                        Notification=notification,
                        Subscriber=subscriber,
                    )
            for subscriber in have:
                if (subscriber["SubscriptionType"], subscriber["Address"].lower()) not in wanted_keys:
                    self.act(
                        f"remove {subscriber['Address']} from the budget notification {key[0]} > {key[1]:g} %",
                        self.client.delete_subscriber,
                        Notification=notification,
                        Subscriber=subscriber,
                    )


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            account_id=dict(type="str", required=True),
            limit_usd=dict(type="float"),
            email=dict(type="str", default=""),
            notifications=dict(type="list", elements="dict", default=[]),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_if=[("state", "present", ["limit_usd"])],
        supports_check_mode=True,
    )
    budget = Budget(module)
    try:
        summary = budget.ensure()
    except (BotoCoreError, ClientError) as error:
        module.fail_json_aws(error, msg=f"Budget {module.params['name']}: done before the error: {budget.actions}")
    module.exit_json(changed=bool(budget.actions), actions=budget.actions, budget=summary)


if __name__ == "__main__":
    main()
