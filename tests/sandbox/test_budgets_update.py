"""The Budgets calls the embedded AWS adds to moto (sandbox/budgets_update.py), as AWS answers them.

roles/cost_guardrails updates its budget in place and keeps the notifications' subscribers; these tests
hold the sandbox to what AWS does for those calls, so that the role's tests prove something about AWS.
"""

from __future__ import annotations

import botocore.exceptions
import pytest

ACCOUNT = "123456789012"  # moto's
NAME = "ranker-budget-monthly-cost"
ACTUAL = {"NotificationType": "ACTUAL", "ComparisonOperator": "GREATER_THAN", "Threshold": 80.0}
ACTUAL["ThresholdType"] = "PERCENTAGE"
OPS = {"SubscriptionType": "EMAIL", "Address": "ops@example.com"}
FINANCE = {"SubscriptionType": "EMAIL", "Address": "finance@example.com"}


def budget(amount: str) -> dict:
    return {
        "BudgetName": NAME,
        "BudgetLimit": {"Amount": amount, "Unit": "USD"},
        "TimeUnit": "MONTHLY",
        "BudgetType": "COST",
        "CostTypes": {"IncludeCredit": True, "IncludeTax": True},
    }


@pytest.fixture
def budgets(aws):
    client = aws.client("budgets")
    client.create_budget(
        AccountId=ACCOUNT,
        Budget=budget("5.0"),
        NotificationsWithSubscribers=[{"Notification": ACTUAL, "Subscribers": [OPS]}],
    )
    return client


def described(client) -> dict:
    return client.describe_budget(AccountId=ACCOUNT, BudgetName=NAME)["Budget"]


def subscribers(client) -> list[str]:
    listed = client.describe_subscribers_for_notification(AccountId=ACCOUNT, BudgetName=NAME, Notification=ACTUAL)
    return [s["Address"] for s in listed["Subscribers"]]


def error_code(call) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        call()
    return raised.value.response["Error"]["Code"]


def test_update_budget_changes_the_definition_in_place_and_keeps_what_it_does_not_name(budgets):
    before = described(budgets)
    # As roles/cost_guardrails sends it: the budget it read, with the new limit (UpdateBudget replaces
    # the definition; what it leaves out is undocumented, so the role leaves nothing out).
    changed = {**budget("12.5"), "CostTypes": {"IncludeCredit": False}, "TimePeriod": before["TimePeriod"]}
    budgets.update_budget(AccountId=ACCOUNT, NewBudget=changed)

    after = described(budgets)
    assert after["BudgetLimit"] == {"Amount": "12.5", "Unit": "USD"}
    assert after["CostTypes"]["IncludeCredit"] is False
    assert after["TimePeriod"] == before["TimePeriod"]
    # The same budget: its notifications and their subscribers stay (a budget deleted and made again
    # would have lost them, with its history).
    notifications = budgets.describe_notifications_for_budget(AccountId=ACCOUNT, BudgetName=NAME)["Notifications"]
    assert [(n["NotificationType"], n["Threshold"]) for n in notifications] == [("ACTUAL", 80.0)]
    assert subscribers(budgets) == ["ops@example.com"]
    assert after["LastUpdatedTime"] >= before["LastUpdatedTime"]


def test_update_of_an_unknown_budget_is_not_found(budgets):
    unknown = {**budget("1.0"), "BudgetName": "nobody-has-it"}
    assert error_code(lambda: budgets.update_budget(AccountId=ACCOUNT, NewBudget=unknown)) == "NotFoundException"


def test_subscribers_are_added_and_removed_one_at_a_time(budgets):
    budgets.create_subscriber(AccountId=ACCOUNT, BudgetName=NAME, Notification=ACTUAL, Subscriber=FINANCE)
    assert subscribers(budgets) == ["ops@example.com", "finance@example.com"]
    duplicate = lambda: budgets.create_subscriber(  # noqa: E731
        AccountId=ACCOUNT, BudgetName=NAME, Notification=ACTUAL, Subscriber=FINANCE
    )
    assert error_code(duplicate) == "DuplicateRecordException"

    budgets.delete_subscriber(AccountId=ACCOUNT, BudgetName=NAME, Notification=ACTUAL, Subscriber=OPS)
    assert subscribers(budgets) == ["finance@example.com"]
    gone = lambda: budgets.delete_subscriber(  # noqa: E731
        AccountId=ACCOUNT, BudgetName=NAME, Notification=ACTUAL, Subscriber=OPS
    )
    assert error_code(gone) == "NotFoundException"


def test_the_subscribers_of_an_unknown_notification_or_budget_are_not_found(budgets):
    forecast = {**ACTUAL, "NotificationType": "FORECASTED", "Threshold": 100.0}
    unknown_notification = lambda: budgets.describe_subscribers_for_notification(  # noqa: E731
        AccountId=ACCOUNT, BudgetName=NAME, Notification=forecast
    )
    assert error_code(unknown_notification) == "NotFoundException"
    unknown_budget = lambda: budgets.describe_subscribers_for_notification(  # noqa: E731
        AccountId=ACCOUNT, BudgetName="nobody-has-it", Notification=ACTUAL
    )
    assert error_code(unknown_budget) == "NotFoundException"
