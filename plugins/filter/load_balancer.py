# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The load balancer's listeners, as amazon.aws.elb_application_lb takes them (the ELBv2 API's keys)."""


def load_balancer_listeners(target_group_name, domain_name, ssl_policy, certificate_arn):
    """HTTP forwards to the target group; with a domain, HTTP answers a permanent redirect to HTTPS,
    which forwards with the domain's certificate.

    The module turns TargetGroupName into the group's TargetGroupArn; every other key is CreateListener's.
    """
    forward = [{"Type": "forward", "TargetGroupName": target_group_name}]
    if domain_name == "":
        return [{"Protocol": "HTTP", "Port": 80, "DefaultActions": forward}]
    redirect_to_https = {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}
    return [
        {"Protocol": "HTTP", "Port": 80, "DefaultActions": [{"Type": "redirect", "RedirectConfig": redirect_to_https}]},
        {
            "Protocol": "HTTPS",
            "Port": 443,
            "SslPolicy": ssl_policy,
            "Certificates": [{"CertificateArn": certificate_arn}],
            "DefaultActions": forward,
        },
    ]


class FilterModule:
    def filters(self):
        return {"load_balancer_listeners": load_balancer_listeners}
