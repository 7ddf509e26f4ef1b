"""AWS Budgets calls moto 5.2 lacks: UpdateBudget and the subscribers of a notification.

moto answers UpdateBudget, DescribeSubscribersForNotification, CreateSubscriber and DeleteSubscriber with a
500 (no such method on its BudgetsResponse). ``install_budget_calls()`` adds them to moto's own backend and response
classes, in the server's process, as AWS behaves:

- UpdateBudget replaces the budget's definition with ``NewBudget`` in place: the budget object stays (its
  notifications and their subscribers too, which UpdateBudget never touches); ``CalculatedSpend`` is
  AWS's, never the caller's (AWS: zero until new usage data; moto's is zero anyway); ``LastUpdatedTime``
  is now. Unknown budgets answer NotFoundException, as AWS does. (tests/sandbox/test_budgets_update.py)
- DescribeSubscribersForNotification lists a notification's subscribers; CreateSubscriber and
  DeleteSubscriber add and remove one (a duplicate answers DuplicateRecordException). An unknown
  notification answers NotFoundException.

Both modes (plain and realism) get them: they are missing API calls, not unkind behaviour.
"""

from __future__ import annotations

import json
from typing import Any

from moto.budgets.exceptions import DuplicateRecordException, NotFoundException
from moto.budgets.models import Budget, BudgetsBackend, Notification
from moto.budgets.responses import BudgetsResponse
from moto.core.utils import unix_time

COMPUTED = ("CalculatedSpend", "LastUpdatedTime")


def _budget(backend: BudgetsBackend, account_id: str, name: str, action: str) -> Budget:
    if name not in backend.budgets[account_id]:
        raise NotFoundException(f"Unable to {action}: {name} - the budget doesn't exist.")
    return backend.budgets[account_id][name]


def _notification(budget: Budget, details: dict[str, Any]) -> Notification:
    wanted = {k: v for k, v in details.items() if k != "NotificationState"}
    for notification in budget.notifications:
        have = {k: v for k, v in notification.details.items() if k != "NotificationState"}
        if have == wanted:
            return notification
    raise NotFoundException("Unable to find the notification: it doesn't exist.")


def update_budget(self: BudgetsBackend, account_id: str, new_budget: dict[str, Any]) -> None:
    budget = _budget(self, account_id, new_budget["BudgetName"], "update budget")
    kept = {k: v for k, v in budget.budget.items() if k in COMPUTED and k != "LastUpdatedTime"}
    budget.budget = {**{k: v for k, v in new_budget.items() if k not in COMPUTED}, **kept}
    budget.budget.setdefault("TimePeriod", {"Start": unix_time(), "End": 3706473600})
    budget.budget["LastUpdatedTime"] = unix_time()


def describe_subscribers(self: BudgetsBackend, account_id: str, name: str, details: dict) -> list[dict]:
    return list(_notification(_budget(self, account_id, name, "describe subscribers"), details).subscribers)


def create_subscriber(self: BudgetsBackend, account_id: str, name: str, details: dict, subscriber: dict) -> None:
    notification = _notification(_budget(self, account_id, name, "create subscriber"), details)
    if subscriber in notification.subscribers:
        raise DuplicateRecordException(record_type="subscriber", record_name=subscriber.get("Address", ""))
    notification.subscribers = [*notification.subscribers, subscriber]


def delete_subscriber(self: BudgetsBackend, account_id: str, name: str, details: dict, subscriber: dict) -> None:
    notification = _notification(_budget(self, account_id, name, "delete subscriber"), details)
    if subscriber not in notification.subscribers:
        raise NotFoundException("Unable to delete subscriber: it doesn't exist.")
    notification.subscribers = [s for s in notification.subscribers if s != subscriber]


def _update_budget(self: BudgetsResponse) -> str:
    self.backend.update_budget(self._get_param("AccountId"), self._get_param("NewBudget"))
    return json.dumps({})


def _describe_subscribers_for_notification(self: BudgetsResponse) -> str:
    subscribers = self.backend.describe_subscribers(
        self._get_param("AccountId"), self._get_param("BudgetName"), self._get_param("Notification")
    )
    return json.dumps({"Subscribers": subscribers})


def _create_subscriber(self: BudgetsResponse) -> str:
    self.backend.create_subscriber(
        self._get_param("AccountId"),
        self._get_param("BudgetName"),
        self._get_param("Notification"),
        self._get_param("Subscriber"),
    )
    return json.dumps({})


def _delete_subscriber(self: BudgetsResponse) -> str:
    self.backend.delete_subscriber(
        self._get_param("AccountId"),
        self._get_param("BudgetName"),
        self._get_param("Notification"),
        self._get_param("Subscriber"),
    )
    return json.dumps({})


def install_budget_calls() -> None:
    """Add the calls to moto's budgets backend and responses (idempotent)."""
    BudgetsBackend.update_budget = update_budget  # type: ignore[attr-defined]
    BudgetsBackend.describe_subscribers = describe_subscribers  # type: ignore[attr-defined]
    BudgetsBackend.create_subscriber = create_subscriber  # type: ignore[attr-defined]
    BudgetsBackend.delete_subscriber = delete_subscriber  # type: ignore[attr-defined]
    BudgetsResponse.update_budget = _update_budget  # type: ignore[attr-defined]
    BudgetsResponse.describe_subscribers_for_notification = _describe_subscribers_for_notification  # type: ignore[attr-defined]
    BudgetsResponse.create_subscriber = _create_subscriber  # type: ignore[attr-defined]
    BudgetsResponse.delete_subscriber = _delete_subscriber  # type: ignore[attr-defined]
