"""coffeeshop.ranker.acm_dns_certificate against the embedded AWS: a certificate requested again after a
teardown is a new one.

ACM keeps a request's IdempotencyToken for an hour and answers the same token with the certificate it
made for it, deleted or not (moto implements the token too, and fails with a 500 on a deleted one). A
token made from the domain name alone therefore broke a rebuild within the hour of a teardown.
"""

from __future__ import annotations

import pytest

PROJECT = "acm-token-test"
DOMAIN = "api.example.com"

TASK = """
- name: Request or delete the certificate
  coffeeshop.ranker.acm_dns_certificate:
    domain_name: "{{ certificate_domain }}"
    tags: {Project: "{{ certificate_project }}"}
    state: "{{ certificate_state }}"
    wait_timeout: 30
  register: module_answer
"""


@pytest.fixture
def certificate(run_module):
    """Run the module with that state; returns the run and what the module answered."""

    def run(state: str):
        variables = dict(certificate_domain=DOMAIN, certificate_project=PROJECT, certificate_state=state)
        return run_module(TASK, extra_vars=variables)

    return run


def test_a_certificate_requested_again_after_its_deletion_is_a_new_one(aws, certificate):
    acm = aws.client("acm")
    _, first = certificate("present")
    assert first["changed"] is True
    deleted = first["certificate_arn"]
    assert acm.describe_certificate(CertificateArn=deleted)["Certificate"]["DomainName"] == DOMAIN

    removed, _ = certificate("absent")
    assert removed.recap["changed"] == 1
    assert not acm.list_certificates()["CertificateSummaryList"]

    # Within the hour ACM keeps a token: the old token named the deleted certificate again.
    _, again = certificate("present")

    assert again["changed"] is True
    assert again["certificate_arn"] != deleted
    described = acm.describe_certificate(CertificateArn=again["certificate_arn"])["Certificate"]
    assert described["DomainName"] == DOMAIN
    assert again["validation_record"]["type"] == "CNAME"
    listed = acm.list_certificates()["CertificateSummaryList"]
    assert [c["CertificateArn"] for c in listed] == [again["certificate_arn"]]

    # And a rerun still finds it by its tags rather than requesting another.
    rerun, same = certificate("present")
    assert rerun.recap["changed"] == 0
    assert same["certificate_arn"] == again["certificate_arn"]
