"""The preflight rules of plugins/filter/stack_rules.py that roles/preflight asks before any AWS call."""

from __future__ import annotations

import pytest
import yaml
from plugin_files import REPO, load

stack_rules = load("plugins/filter/stack_rules.py", "stack_rules")
# The pattern the role passes in (one definition, in roles/preflight).
DOMAIN_NAME_PATTERN = yaml.safe_load((REPO / "roles/preflight/defaults/main.yml").read_text())[
    "preflight_domain_name_pattern"
]


def load_balancer_problems(load_balancer=True, domain_name="", deregistration_delay=300, project_name="ranker"):
    return stack_rules.load_balancer_problems(
        load_balancer, domain_name, deregistration_delay, project_name, DOMAIN_NAME_PATTERN
    )


def cost_problems(alert_email="ops@example.com", budget=5, alarm=5, expiry_days=30):
    return stack_rules.cost_problems(alert_email, budget, alarm, expiry_days)


@pytest.mark.parametrize(
    "case",
    [
        {},
        {"load_balancer": False},
        {"domain_name": "api.example.com"},
        {"deregistration_delay": 0},
        {"deregistration_delay": "3600"},
        {"project_name": "p" * 28},
        {"load_balancer": False, "project_name": "p" * 40},
    ],
)
def test_valid_load_balancer_settings_have_no_problems(case):
    assert load_balancer_problems(**case) == []


def test_every_broken_load_balancer_rule_is_named_in_order():
    assert load_balancer_problems(deregistration_delay=3601, domain_name="API.example.com", project_name="p" * 29) == [
        "api_load_balancer_deregistration_delay 3601 must be a number of seconds from 0 to 3600.",
        "api_domain_name 'API.example.com' must be a DNS name such as api.example.com (lowercase labels of letters, "
        "digits and hyphens, two labels or more, no wildcard), or empty.",
        f"project_name '{'p' * 29}' must be 28 characters at most with api_load_balancer=true: the load balancer "
        f"and its target group are named '{'p' * 29}-api', 32 at most.",
    ]


def test_a_domain_needs_the_load_balancer():
    assert load_balancer_problems(load_balancer=False, domain_name="api.example.com") == [
        "api_domain_name 'api.example.com' needs api_load_balancer=true: the certificate and the HTTPS listener "
        "live on the load balancer."
    ]


@pytest.mark.parametrize("delay", [-1, 3601, "36000"])
def test_the_deregistration_delay_is_0_to_3600_seconds(delay):
    assert load_balancer_problems(deregistration_delay=delay) == [
        f"api_load_balancer_deregistration_delay {delay} must be a number of seconds from 0 to 3600."
    ]


def test_a_deregistration_delay_that_is_no_number_counts_as_0_as_jinja_s_int_does():
    assert load_balancer_problems(deregistration_delay="soon") == []


@pytest.mark.parametrize("domain_name", ["*.example.com", "api", "api.example.com.", "-api.example.com"])
def test_a_domain_name_must_be_a_plain_dns_name(domain_name):
    assert load_balancer_problems(domain_name=domain_name)[0].startswith(f"api_domain_name '{domain_name}' must be")


@pytest.mark.parametrize(
    "case",
    [
        {},
        {"alert_email": ""},
        {"budget": "12.50", "alarm": 999999.99},
        {"expiry_days": 1},
        {"expiry_days": "2.9"},
    ],
)
def test_valid_cost_settings_have_no_problems(case):
    assert cost_problems(**case) == []


def test_every_broken_cost_rule_is_named_in_order():
    # The line breaks and indentation are the ones the task's folded YAML always put in these messages.
    assert cost_problems("ops", 0, "inf", 0) == [
        "alert_email 'ops' must look like an e-mail address, such as ops@example.com, or be empty (no "
        "alerts are e-mailed then).",
        "monthly_budget_usd '0' must be a positive number of US dollars below 1000000, such as 5 or 12.50.",
        "billing_alarm_usd 'inf' must be a positive number of US dollars below 1000000, such as 5 or 12.50.",
        "media_noncurrent_version_expiry_days '0' must be a whole number of days, 1 or more.",
    ]


@pytest.mark.parametrize("alert_email", ["ops@example", "two words@example.com", "a@b@c.com", "ops@example.com."])
def test_an_alert_email_must_look_like_an_address(alert_email):
    assert cost_problems(alert_email=alert_email)[0].startswith(f"alert_email '{alert_email}' must look like")


@pytest.mark.parametrize("amount", [0, -5, 1000000, "nan", "inf", "a lot"])
def test_the_budget_and_the_alarm_are_positive_and_below_a_million(amount):
    assert [problem.split(" '")[0] for problem in cost_problems(budget=amount, alarm=amount)] == [
        "monthly_budget_usd",
        "billing_alarm_usd",
    ]


@pytest.mark.parametrize("days", [0, -3, "0.5", "never"])
def test_old_photos_expire_after_a_day_or_more(days):
    assert cost_problems(expiry_days=days) == [
        f"media_noncurrent_version_expiry_days '{days}' must be a whole number of days, 1 or more."
    ]


def test_the_filters_are_registered_under_their_names():
    filters = stack_rules.FilterModule().filters()
    assert filters["load_balancer_problems"] is stack_rules.load_balancer_problems
    assert filters["cost_problems"] is stack_rules.cost_problems


@pytest.mark.parametrize("port", [22, "22", 2222, 1, 65535])
def test_an_ssh_port_of_its_own_has_no_problems(port):
    assert stack_rules.ssh_port_problems(port, 11373, 11374, 9100) == []


@pytest.mark.parametrize(
    ("port", "words"),
    [
        (0, "ssh_port 0 must be a TCP port from 1 to 65535"),
        (65536, "ssh_port 65536 must be a TCP port from 1 to 65535"),
        ("ssh", "ssh_port 'ssh' must be a TCP port"),
        (None, "ssh_port 'None' must be a TCP port"),
        (11373, "ssh_port 11373 must differ from api_port's port (11373)"),
        ("11374", "ssh_port 11374 must differ from api_metrics_port's port (11374)"),
        (9100, "ssh_port 9100 must differ from node_exporter's port (9100)"),
    ],
)
def test_an_ssh_port_out_of_range_or_taken_is_named_with_the_rule(port, words):
    problems = stack_rules.ssh_port_problems(port, 11373, 11374, 9100)
    assert len(problems) == 1
    assert words in problems[0]


def test_the_metrics_port_may_not_take_a_moved_ssh_port():
    assert "must differ from SSH's port (2222)" in stack_rules.metrics_port_problems(2222, 11373, 9100, 2222)[0]
    assert stack_rules.metrics_port_problems(11374, 11373, 9100, 2222) == []
