#!/usr/bin/python
# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: an ACM certificate requested with DNS validation, found again by its domain and tags."""

DOCUMENTATION = r"""
module: acm_dns_certificate
short_description: Request an ACM certificate validated by DNS, wait until it is issued, or delete it
author: Coffee Shop Ranker operations team (!UNKNOWN)
description:
  - community.aws.acm_certificate (7.2) only imports certificates; it cannot request one from ACM. This
    module requests one for a domain name with DNS validation and returns the CNAME record that proves
    the domain, which the caller puts into the hosted zone; with I(wait) it then waits until ACM has
    issued the certificate.
  - The certificate is found again by its domain name and all of I(tags), among the account's
    certificates that are pending validation or issued, so a rerun requests nothing. A certificate
    that failed validation or expired is left alone and a new one is requested.
  - With I(state=absent) every certificate of the domain carrying I(tags) is deleted; ACM refuses while
    a listener still uses one (ResourceInUseException), which is retried for a while.
options:
  domain_name:
    description: The certificate's domain name, such as C(api.example.com).
    type: str
    required: true
  tags: {description: Tags on the certificate; also how it is found again., type: dict, required: true}
  state: {description: Present or absent., type: str, choices: [present, absent], default: present}
  wait: {description: Wait until it is issued (its validation record in place)., type: bool, default: false}
  wait_timeout:
    description: Seconds to wait for the issue, or for a listener to let go.
    type: int
    default: 600
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Request the load balancer's certificate; its validation record goes into the hosted zone
  coffeeshop.ranker.acm_dns_certificate:
    domain_name: api.example.com
    tags: {Project: coffee-ranker}
  register: certificate

- name: Wait until ACM has issued it, once the validation record is in place
  coffeeshop.ranker.acm_dns_certificate:
    domain_name: api.example.com
    tags: {Project: coffee-ranker}
    wait: true

- name: Delete it
  coffeeshop.ranker.acm_dns_certificate:
    domain_name: api.example.com
    tags: {Project: coffee-ranker}
    state: absent
"""

RETURN = r"""
certificate_arn: {description: The certificate's ARN; empty when absent., returned: always, type: str}
status:
  description: ACM's status (C(PENDING_VALIDATION), C(ISSUED)); empty when absent.
  returned: always
  type: str
validation_record:
  description:
    - The DNS record that proves the domain - name, type (CNAME) and value; {} until ACM has made it.
  returned: always
  type: dict
"""

import time
import uuid

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency.

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

USABLE = ["PENDING_VALIDATION", "ISSUED"]


def matching_certificates(acm, domain_name, tags, statuses):
    """ARNs of the domain's certificates in those statuses that carry every tag, newest request first."""
    found = []
    paginator = acm.get_paginator("list_certificates")
    for page in paginator.paginate(CertificateStatuses=statuses):
        for summary in page["CertificateSummaryList"]:
            if summary["DomainName"] != domain_name:
                continue
            arn = summary["CertificateArn"]
            held = {t["Key"]: t.get("Value", "") for t in acm.list_tags_for_certificate(CertificateArn=arn)["Tags"]}
            if all(held.get(key) == value for key, value in tags.items()):
                found.append(acm.describe_certificate(CertificateArn=arn)["Certificate"])
    return sorted(found, key=lambda c: str(c.get("CreatedAt", "")), reverse=True)


def validation_record(certificate):
    for option in certificate.get("DomainValidationOptions", []):
        record = option.get("ResourceRecord")
        if record:
            return {"name": record["Name"], "type": record["Type"], "value": record["Value"]}
    return {}


def result(certificate):
    if not certificate:
        return dict(certificate_arn="", status="", validation_record={})
    return dict(
        certificate_arn=certificate["CertificateArn"],
        status=certificate["Status"],
        validation_record=validation_record(certificate),
    )


def present(module, acm):
    params = module.params
    tags = {k: str(v) for k, v in params["tags"].items()}
    certificates = matching_certificates(acm, params["domain_name"], tags, USABLE)
    # An issued certificate is preferred over one still pending (a request made since).
    certificates.sort(key=lambda c: c["Status"] != "ISSUED")
    changed = False
    if not certificates:
        if module.check_mode:
            module.exit_json(changed=True, **result(None))
        arn = acm.request_certificate(
            DomainName=params["domain_name"],
            ValidationMethod="DNS",
            # ACM answers a token it saw within the hour with that request's certificate, even a deleted
            # one: so a new token for each run that found none (botocore's retries of this call resend it,
            # so a retried request still makes no twin; a rerun finds the certificate by its tags).
            IdempotencyToken=uuid.uuid4().hex,
            Tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items())],
        )["CertificateArn"]
        changed = True
        certificates = [acm.describe_certificate(CertificateArn=arn)["Certificate"]]
    certificate = certificates[0]
    deadline = time.monotonic() + params["wait_timeout"]
    # ACM fills in the validation record a few seconds after the request.
    while not validation_record(certificate) and time.monotonic() < deadline:
        time.sleep(2)
        certificate = acm.describe_certificate(CertificateArn=certificate["CertificateArn"])["Certificate"]
    if params["wait"] and not module.check_mode:
        while certificate["Status"] == "PENDING_VALIDATION" and time.monotonic() < deadline:
            time.sleep(5)
            certificate = acm.describe_certificate(CertificateArn=certificate["CertificateArn"])["Certificate"]
        if certificate["Status"] != "ISSUED":
            module.fail_json(
                msg=(
                    f"ACM has not issued the certificate of {params['domain_name']} within "
                    f"{params['wait_timeout']} s (status {certificate['Status']}): check that the validation "
                    f"record {validation_record(certificate).get('name', '')} is in the domain's public hosted "
                    "zone, and that the zone is the one the domain's registrar delegates to."
                ),
                changed=changed,
                **result(certificate),
            )
    module.exit_json(changed=changed, **result(certificate))


def absent(module, acm):
    params = module.params
    tags = {k: str(v) for k, v in params["tags"].items()}
    certificates = matching_certificates(acm, params["domain_name"], tags, USABLE + ["FAILED", "EXPIRED", "INACTIVE"])
    if certificates and not module.check_mode:
        deadline = time.monotonic() + params["wait_timeout"]
        for certificate in certificates:
            while True:
                try:
                    acm.delete_certificate(CertificateArn=certificate["CertificateArn"])
                    break
                except is_boto3_error_code("ResourceInUseException"):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(5)
    module.exit_json(changed=bool(certificates), **result(None))


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            domain_name=dict(type="str", required=True),
            tags=dict(type="dict", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            wait=dict(type="bool", default=False),
            wait_timeout=dict(type="int", default=600),
        ),
        supports_check_mode=True,
    )
    acm = module.client("acm")
    try:
        if module.params["state"] == "present":
            present(module, acm)
        else:
            absent(module, acm)
    except (BotoCoreError, ClientError) as error:
        module.fail_json_aws(error, msg=f"ACM refused a call for the certificate of {module.params['domain_name']}")


if __name__ == "__main__":
    main()
