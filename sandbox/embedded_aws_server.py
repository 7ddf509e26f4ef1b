"""The embedded AWS: moto's server (as ``moto_server``), with an optional unkind mode.

Same flags and same app as ``moto.server.main``. With SANDBOX_AWS_REALISM=1 the app is wrapped in
``aws_realism.RealismMiddleware``, in this process so that it can read moto's state: it reproduces what
real AWS does and moto does not (deprecated images, IAM eventual consistency, instance types missing from
an AZ, DynamoDB backups and S3 public access that take effect late, foreign bucket names, security groups
still in use, an account without a default VPC), so that the playbooks meet those before AWS shows them.
See sandbox/aws_realism.py for each behaviour and the ``/_realism`` control endpoint. Without the
variable this is plain moto_server, but for two things in both modes:

GetConsoleOutput answers with the console of the instance's sandbox machine, when it has one
(``console_output.ConsoleOutput``, innermost): cloud-init's SSH host key block included, as on EC2.

Application Load Balancers pass traffic. ``load_balancers.LoadBalancerDataPlane`` (outermost) runs one real
HAProxy per ALB on 127.0.0.1 that follows the elbv2 API: listeners, target groups' health checks, targets
(the sandbox machines) and deregistration with draining; DescribeTargetHealth answers from it. Each ALB's
listener URLs are in ``<state>/load-balancers/<name>.json``. The HAProxies stop with this server (and at
``POST /moto-api/reset``); those a killed server left behind stop when the next one starts.

CloudFront distributions serve. ``cloudfront.CloudFrontDataPlane`` gives each distribution an HTTP server on
127.0.0.1 (its URL in ``<state>/cloudfront/<id>.json``) that reads its S3 origin as CloudFront would: only
what the bucket policy grants the distribution through its origin access control, cached for the object's
TTL, gzipped when the behaviour compresses. moto's Origin keeps OriginAccessControlId and S3OriginConfig
(``cloudfront.install_cloudfront_fixes``), so the collection's module sees no change where there is none;
and an anonymous read of a bucket passes only a policy statement for everyone, as on S3
(``cloudfront.install_anonymous_bucket_policy``: moto lets any Allow through, a grant to CloudFront too).
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
from typing import Any

# ACM issues a DNS-validated certificate once its record is in Route 53, in minutes; moto issues it a
# fixed time after the request (60 s by default, read when moto is imported). Here at once, as the
# embedded Route 53 holds the record at once too. An explicit setting still wins.
os.environ.setdefault("MOTO_ACM_VALIDATION_WAIT", "0")

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


def realism_enabled(environ: dict[str, str] | os._Environ = os.environ) -> bool:
    return environ.get("SANDBOX_AWS_REALISM") == "1"


def make_app() -> Any:
    moto = DomainDispatcherApplication(create_backend_app)
    moto.debug = True  # as moto.server.main sets it
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from budgets_update import install_budget_calls
    from console_output import ConsoleOutput

    install_budget_calls()  # UpdateBudget and the subscriber calls moto lacks (sandbox/budgets_update.py)
    from cloudfront import CloudFrontDataPlane, install_anonymous_bucket_policy, install_cloudfront_fixes

    install_cloudfront_fixes()  # what moto's CloudFront Origin drops (sandbox/cloudfront.py)
    install_anonymous_bucket_policy()  # a grant to CloudFront (or anyone but "*") is not one to the public

    # Inside the unkind mode, which withholds the console output for a while after launch.
    app: Any = ConsoleOutput(moto)
    if realism_enabled():
        # Imported only here: it loads moto's EC2, ELB, IAM and S3 Control backends at start.
        from aws_realism import RealismMiddleware

        app = RealismMiddleware(app)
    # Outside the unkind mode, so that it records what the client is answered (a refused deletion included).
    app = CloudFrontDataPlane(app)
    from load_balancers import LoadBalancerDataPlane

    # Outermost, so that it sees every elbv2 call and the reset before anything answers them.
    return LoadBalancerDataPlane(app)


def exit_on_signal(*_: object) -> None:
    """SIGTERM or SIGINT: exit through atexit, where the load balancers stop their HAProxies (in seconds)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)  # a second one would cut that short and leave HAProxies running
    # moto's state ends with the process: the interpreter's last collections would only walk it (most of a
    # second with the load balancers' EC2 backends loaded).
    gc.freeze()
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", type=str, default="127.0.0.1", help="Which host to bind")
    parser.add_argument(
        "-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", 5000)), help="Port number to use"
    )
    args = parser.parse_args(argv)
    # moto builds some URLs (e.g. SQS queue URLs) from MOTO_PORT
    os.environ.setdefault("MOTO_PORT", str(args.port))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, exit_on_signal)
    run_simple(args.host, args.port, make_app(), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
