"""The load balancer's listeners: the structure amazon.aws.elb_application_lb takes, valid for CreateListener."""

from __future__ import annotations

import copy

import botocore.session
import pytest
from botocore.validate import ParamValidator
from plugin_files import load

load_balancer = load("plugins/filter/load_balancer.py", "load_balancer_filters")

CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-aaaa-bbbb-cccc-0123456789ab"
POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
LOAD_BALANCER_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/ranker-api/50dc6c495c0c9188"
TARGET_GROUP_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/ranker-api/73e2d6bc24d8a067"
CREATE_LISTENER = botocore.session.get_session().get_service_model("elbv2").operation_model("CreateListener")


def create_listener_call(listener):
    """The parameters elb_application_lb gives create_listener (amazon.aws module_utils/elbv2.py): the target
    group's name looked up as its ARN, Rules dropped, the load balancer's ARN added."""
    params = copy.deepcopy(listener)
    params.pop("Rules", None)
    for action in params["DefaultActions"]:
        if "TargetGroupName" in action:
            assert action.pop("TargetGroupName") == "ranker-api"
            action["TargetGroupArn"] = TARGET_GROUP_ARN
    return {"LoadBalancerArn": LOAD_BALANCER_ARN, **params}


def test_without_a_domain_http_forwards_to_the_target_group():
    assert load_balancer.load_balancer_listeners("ranker-api", "", POLICY, "") == [
        {"Protocol": "HTTP", "Port": 80, "DefaultActions": [{"Type": "forward", "TargetGroupName": "ranker-api"}]}
    ]


def test_with_a_domain_http_redirects_and_https_forwards_with_the_certificate():
    assert load_balancer.load_balancer_listeners("ranker-api", "api.example.com", POLICY, CERTIFICATE) == [
        {
            "Protocol": "HTTP",
            "Port": 80,
            "DefaultActions": [
                {"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}
            ],
        },
        {
            "Protocol": "HTTPS",
            "Port": 443,
            "SslPolicy": POLICY,
            "Certificates": [{"CertificateArn": CERTIFICATE}],
            "DefaultActions": [{"Type": "forward", "TargetGroupName": "ranker-api"}],
        },
    ]


@pytest.mark.parametrize("domain_name", ["", "api.example.com"])
def test_each_listener_is_a_valid_create_listener_call(domain_name):
    listeners = load_balancer.load_balancer_listeners("ranker-api", domain_name, POLICY, CERTIFICATE)
    for listener in listeners:
        report = ParamValidator().validate(create_listener_call(listener), CREATE_LISTENER.input_shape)
        assert not report.has_errors(), report.generate_report()


def test_the_validation_catches_a_misspelt_key():
    listener = load_balancer.load_balancer_listeners("ranker-api", "api.example.com", POLICY, CERTIFICATE)[1]
    listener["SSLPolicy"] = listener.pop("SslPolicy")
    report = ParamValidator().validate(create_listener_call(listener), CREATE_LISTENER.input_shape)
    assert 'Unknown parameter in input: "SSLPolicy"' in report.generate_report()


def test_the_filter_is_registered_under_its_name():
    assert load_balancer.FilterModule().filters() == {"load_balancer_listeners": load_balancer.load_balancer_listeners}
