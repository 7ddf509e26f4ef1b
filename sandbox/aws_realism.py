"""The unkind mode of the embedded AWS: a WSGI middleware in front of moto that answers as real AWS does.

moto answers every call at once and as if the account were brand new; real AWS does not, and playbooks
that pass against moto fail on their first real run. This middleware, in the moto server's own process,
reproduces what real AWS does there, each with the error code, HTTP status and message that AWS gives:

1. Public images are deprecated 730 days after creation: DescribeImages leaves them out unless asked for
   by ImageId or IncludeDeprecated=true, and gives every image a deprecationTime (Canonical sets one).
2. IAM is eventually consistent: RunInstances with an instance profile that got its role less than
   ``iam_delay`` seconds ago fails with InvalidParameterValue (Invalid IAM Instance Profile ARN/name).
3. Not every AZ offers every instance type (``unoffered``): DescribeInstanceTypeOfferings leaves the pair
   out and RunInstances into such an AZ fails with Unsupported; without a subnet or AZ, AWS picks an AZ
   that offers the type (moto would always take <region>a).
4. DynamoDB UpdateContinuousBackups less than ``pitr_delay`` seconds after CreateTable fails with
   ContinuousBackupsUnavailableException although the table is ACTIVE.
5. S3: PutBucketPolicy less than ``policy_delay`` seconds after PutPublicAccessBlock answers AccessDenied;
   a new bucket policy reaches anonymous GET/HEAD only ``policy_visible_delay`` seconds later; a public
   policy is refused while the account's Block Public Access has BlockPublicPolicy (moto stores that
   setting but never applies it).
6. Bucket names owned by other accounts (``foreign_buckets``): 403 on HeadBucket and any other call,
   409 BucketAlreadyExists on CreateBucket.
7. DeleteSecurityGroup answers DependencyViolation while an instance is in the group and for ``sg_delay``
   seconds after it was terminated; likewise while a load balancer (an ALB) has the group among its
   SecurityGroups and for ``sg_delay`` seconds after DeleteLoadBalancer, as its network interfaces linger
   (moto deletes the group at once, even under a running instance or a live load balancer).
8. An account without a default VPC: the control endpoint deletes a region's default VPC on demand.
9. An instance has no console output yet: for ``console_delay`` seconds after its launch time GetConsoleOutput
   answers without an ``output`` element (EC2 needs minutes on Xen types such as t2; this applies to every
   type). Later the answer passes unchanged: the machine's real console (console_output.py), or moto's.
10. DynamoDB point-in-time recovery restores the items as they were at RestoreDateTime (moto copies them as
    they are now, whatever the time, and even from a table without point-in-time recovery): a journal of
    every item change while recovery is enabled (dynamodb_point_in_time.py). RestoreTableToPointInTime
    answers PointInTimeRecoveryUnavailableException for a table without it and InvalidRestoreTimeException
    (An invalid restore time was specified. RestoreDateTime must be between EarliestRestorableDateTime and
    LatestRestorableDateTime.) outside the window DescribeContinuousBackups gives: from the moment recovery
    was enabled to now (AWS's LatestRestorableDateTime lags about five minutes; here a test need not wait).
11. A CloudFront distribution deploys for minutes: after CreateDistribution or UpdateDistribution its Status
    is InProgress for ``cdn_deploy_delay`` seconds (CreateDistribution's own answer included; then Deployed),
    in GetDistribution, ListDistributions and its record (cloudfront.py); moto says Deployed at the first
    read. While the first deployment lasts its edge answers 503: a probe must retry; after an update it keeps
    serving (the new configuration applies at once). DeleteDistribution answers 409 DistributionNotDisabled
    (The distribution you are trying to delete has not been disabled.) while the distribution is enabled or
    InProgress, so disabling, waiting for Deployed, then deleting is the only way; moto deletes at once.
    DeleteOriginAccessControl answers 409 OriginAccessControlInUse while an origin of a distribution names
    the control (moto deletes it from under the distribution).

Control endpoint, loopback only: ``GET /_realism`` (settings), ``POST /_realism`` (merge a JSON object of
settings), ``POST /_realism/remove-default-vpc`` with ``{"region": ...}``. ``POST /moto-api/reset``
also clears the timers and the point-in-time journals and sets ``foreign_buckets`` back to those at start;
delays and ``unoffered`` stay.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from cloudfront import begin_deployment, deployment_of, distributions, find_distribution
from dynamodb_point_in_time import PointInTimeRecovery, dynamodb_error
from moto.cloudfront.models import CloudFrontBackend, Distribution
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.elbv2.models import elbv2_backends
from moto.moto_api._internal.managed_state_model import ManagedState
from moto.s3control.models import s3control_backends
from wsgi_layers import After, credential_scope, pass_through, read_body

DEPRECATION_AGE = timedelta(days=730)
DELAYS = (
    "iam_delay",
    "pitr_delay",
    "policy_delay",
    "policy_visible_delay",
    "sg_delay",
    "console_delay",
    "cdn_deploy_delay",
)
DEFAULTS: dict[str, Any] = {
    # ec2_instance retries once, 10 s later, on "Invalid IAM Instance Profile ARN": 25 s outlasts that.
    "iam_delay": 25.0,
    "pitr_delay": 10.0,
    "policy_delay": 5.0,
    "policy_visible_delay": 4.0,
    "sg_delay": 8.0,
    # A t2 instance's console output (and the SSH host keys in it) appears minutes after launch.
    "console_delay": 120.0,
    # A new or changed distribution stays InProgress for minutes.
    "cdn_deploy_delay": 180.0,
    "foreign_buckets": [],
    # "<region>" stands for the region asked about, so the default holds in every region.
    "unoffered": {"t2.micro": ["<region>a"]},
}

Response = tuple[int, list[tuple[str, str]], bytes]


def settings_from_environment(environ: dict[str, str]) -> dict[str, Any]:
    """The defaults, with SANDBOX_AWS_REALISM_<SETTING> from the environment over them."""
    settings = copy.deepcopy(DEFAULTS)
    for name in DELAYS:
        value = environ.get(f"SANDBOX_AWS_REALISM_{name.upper()}")
        if value:
            settings[name] = float(value)
    buckets = environ.get("SANDBOX_AWS_REALISM_FOREIGN_BUCKETS")
    if buckets:
        settings["foreign_buckets"] = [name.strip() for name in buckets.split(",") if name.strip()]
    return settings


def validated(update: Any) -> dict[str, Any]:
    """The update as settings, or ValueError naming what is wrong with it."""
    if not isinstance(update, dict):
        raise ValueError("settings must be a JSON object")
    result: dict[str, Any] = {}
    for key, value in update.items():
        if key in DELAYS:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{key} must be a number of seconds >= 0")
            result[key] = float(value)
        elif key == "foreign_buckets":
            if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
                raise ValueError("foreign_buckets must be a list of bucket names")
            result[key] = list(value)
        elif key == "unoffered":
            if not isinstance(value, dict) or not all(
                isinstance(zones, list) and all(isinstance(zone, str) for zone in zones) for zones in value.values()
            ):
                raise ValueError("unoffered must map instance types to lists of availability zones")
            result[key] = {itype: list(zones) for itype, zones in value.items()}
        else:
            raise ValueError(f"unknown setting {key!r}; known: {', '.join(DEFAULTS)}")
    return result


# --- error bodies, as botocore parses them ----------------------------------------------------------


def _request_id() -> str:
    return str(uuid.uuid4())


def ec2_error(code: str, message: str, status: int = 400) -> Response:
    body = (
        f"<?xml version='1.0' encoding='UTF-8'?>\n<Response><Errors><Error><Code>{code}</Code>"
        f"<Message>{_escape(message)}</Message></Error></Errors><RequestID>{_request_id()}</RequestID></Response>"
    )
    return status, [("Content-Type", "text/xml;charset=UTF-8")], body.encode()


def s3_error(code: str, message: str, status: int, method: str, **extra: str) -> Response:
    if method == "HEAD":  # S3 answers HEAD with the status alone
        return status, [("Content-Type", "application/xml")], b""
    fields = "".join(f"<{k}>{_escape(v)}</{k}>" for k, v in extra.items())
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{_escape(message)}</Message>'
        f"{fields}<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId><HostId>realism</HostId></Error>"
    )
    return status, [("Content-Type", "application/xml")], body.encode()


def cloudfront_error(code: str, message: str, status: int) -> Response:
    body = (
        '<?xml version="1.0"?>\n<ErrorResponse xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/"><Error>'
        f"<Type>Sender</Type><Code>{code}</Code><Message>{_escape(message)}</Message></Error>"
        f"<RequestId>{_request_id()}</RequestId></ErrorResponse>"
    )
    return status, [("Content-Type", "text/xml")], body.encode()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _json(status: int, document: Any) -> Response:
    return status, [("Content-Type", "application/json")], json.dumps(document).encode()


# --- CloudFront deployments ---------------------------------------------------------------------------


def _no_delay() -> float:
    return 0.0


_deploy_delay: Callable[[], float] = _no_delay  # the seconds a deployment takes: the middleware's setting


def install_cloudfront_deployments(delay: Callable[[], float]) -> None:
    """Make a distribution deploy for ``delay()`` seconds after CreateDistribution and UpdateDistribution.

    In moto's backend, so that CreateDistribution's and UpdateDistribution's own answers say InProgress: the
    Deployment stamped on the model (cloudfront.begin_deployment) decides the Status from then on, for the
    API and for the data plane's record alike. Idempotent; the latest ``delay`` counts.
    """
    global _deploy_delay
    _deploy_delay = delay
    if "sandbox_deployments" in vars(CloudFrontBackend):
        return
    create = CloudFrontBackend.create_distribution_with_tags  # CreateDistribution calls it too
    update = CloudFrontBackend.update_distribution

    def create_deploying(self: CloudFrontBackend, config: dict[str, Any], tags: list[dict[str, str]]) -> Any:
        answer = create(self, config, tags)
        begin_deployment(answer[0], _deploy_delay(), first=True)
        return answer

    def update_deploying(self: CloudFrontBackend, dist_config: dict[str, Any], _id: str, if_match: bool) -> Any:
        answer = update(self, dist_config, _id, if_match)
        begin_deployment(answer[0], _deploy_delay(), first=False)
        return answer

    def status(self: Distribution) -> str | None:
        deployment = deployment_of(self)
        if deployment is None:
            return ManagedState.status.fget(self)  # type: ignore[attr-defined]
        return "InProgress" if deployment.in_progress else "Deployed"

    CloudFrontBackend.create_distribution_with_tags = create_deploying  # type: ignore[method-assign]
    CloudFrontBackend.update_distribution = update_deploying  # type: ignore[method-assign]
    Distribution.status = property(status, ManagedState.status.fset)  # type: ignore[attr-defined,assignment]
    CloudFrontBackend.sandbox_deployments = True  # type: ignore[attr-defined]


# --- the middleware -----------------------------------------------------------------------------------


class RealismMiddleware:
    """Wraps moto's WSGI app; every shared field is guarded by ``lock`` (the server is threaded)."""

    def __init__(self, app: Callable, settings: dict[str, Any] | None = None):
        # Innermost: it journals what moto really wrote, after this layer's refusals.
        self.app = PointInTimeRecovery(app)
        self.lock = threading.Lock()
        self.settings = settings if settings is not None else settings_from_environment(dict(os.environ))
        self.start_foreign_buckets = list(self.settings["foreign_buckets"])
        self.account = DEFAULT_ACCOUNT_ID
        self._clear_timers()
        install_cloudfront_deployments(self._cdn_deploy_delay)

    def _cdn_deploy_delay(self) -> float:
        with self.lock:
            return float(self.settings["cdn_deploy_delay"])

    def _clear_timers(self) -> None:
        # time.monotonic() of the last event, by what it happened to
        self.profile_roles: dict[str, float] = {}  # instance profile name
        self.tables: dict[tuple[str, str], float] = {}  # (region, table name)
        self.bucket_blocks: dict[str, float] = {}  # bucket name: PutPublicAccessBlock
        self.bucket_policies: dict[str, float] = {}  # bucket name: PutBucketPolicy
        self.terminated_groups: dict[str, float] = {}  # security group id: TerminateInstances
        self.balancer_groups: dict[str, float] = {}  # security group id: DeleteLoadBalancer

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/_realism" or path.startswith("/_realism/"):
            return self._respond(start_response, self._control(environ, path))
        if path == "/moto-api/reset" and environ.get("REQUEST_METHOD") == "POST":
            with self.lock:
                self._clear_timers()
                # back to those of the environment at start (none, unless SANDBOX_AWS_REALISM_FOREIGN_BUCKETS)
                self.settings["foreign_buckets"] = list(self.start_foreign_buckets)
            return self.app(environ, start_response)
        if path.startswith(("/moto-api", "/latest/")):
            return self.app(environ, start_response)

        region, service = credential_scope(environ)
        decision: Response | After | None = None
        if service in ("ec2", "iam", "elasticloadbalancing"):
            decision = self._query_protocol(environ, service, region)
        elif service == "dynamodb":
            decision = self._dynamodb(environ, region)
        elif service == "cloudfront":
            decision = self._cloudfront(environ, path)
        elif service == "s3" and not path.startswith("/v20180820/"):
            decision = self._s3(environ, anonymous=False)
        elif service is None and "HTTP_X_AMZ_TARGET" not in environ:
            decision = self._s3(environ, anonymous=True)  # moto takes other unsigned requests for S3, as AWS does
            if decision is None and environ.get("REQUEST_METHOD") == "HEAD" and "/" in path.strip("/"):
                return self._head_as_get(environ, start_response)

        if isinstance(decision, tuple):
            return self._respond(start_response, decision)
        if decision is None:
            return self.app(environ, start_response)
        return pass_through(self.app, environ, start_response, decision)

    # --- plumbing

    @staticmethod
    def _respond(start_response: Callable, response: Response) -> list[bytes]:
        status, headers, body = response
        reason = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict"}
        start_response(f"{status} {reason.get(status, '')}", [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def _head_as_get(self, environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        """An anonymous HeadObject, answered as moto answers GetObject without the body: moto checks the
        bucket policy for "s3:HeadObject", an action that does not exist, so a public-read policy
        (s3:GetObject, which AWS checks for HEAD) never lets HEAD through."""
        environ["REQUEST_METHOD"] = "GET"
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            captured.update(status=status, headers=headers)
            return lambda _data: None

        result = self.app(environ, capture)
        if hasattr(result, "close"):
            result.close()
        start_response(captured["status"], captured["headers"])
        return [b""]

    def _recent(self, timers: dict, key: Any, delay_setting: str) -> bool:
        with self.lock:
            since = timers.get(key)
            return since is not None and time.monotonic() - since < self.settings[delay_setting]

    def _stamp(self, timers: dict, keys: Iterable[Any]) -> After:
        """An After that records now for keys when moto succeeded."""

        def after(status: int, _body: bytes) -> None:
            if status < 300:
                with self.lock:
                    for key in keys:
                        timers[key] = time.monotonic()

        return after

    # --- control endpoint

    def _control(self, environ: dict[str, Any], path: str) -> Response:
        if not environ.get("REMOTE_ADDR", "").startswith("127."):
            return _json(403, {"error": "the realism control endpoint answers on the loopback only"})
        method = environ.get("REQUEST_METHOD")
        if path == "/_realism" and method == "GET":
            return _json(200, self.describe())
        try:
            document = json.loads(read_body(environ) or b"{}")
            if path == "/_realism" and method == "POST":
                update = validated(document)
                with self.lock:
                    self.settings.update(update)
                return _json(200, self.describe())
            if path == "/_realism/remove-default-vpc" and method == "POST":
                return _json(200, self.remove_default_vpc(document.get("region", "us-east-1")))
        except ValueError as error:
            return _json(400, {"error": str(error)})
        except Exception as error:  # a moto error while deleting, e.g. a default subnet still in use
            return _json(409, {"error": f"{type(error).__name__}: {error}"})
        return _json(404, {"error": f"no {method} {path}"})

    def describe(self) -> dict[str, Any]:
        with self.lock:
            return {"enabled": True, "settings": copy.deepcopy(self.settings)}

    def remove_default_vpc(self, region: str) -> dict[str, Any]:
        """Delete the region's default VPC as an account owner can: gateways, subnets, then the VPC."""
        if region not in ec2_backends[self.account]:
            raise ValueError(f"unknown region {region!r}")
        backend = ec2_backends[self.account][region]
        vpc = backend.get_default_vpc()
        if vpc is None:
            return {"region": region, "vpc": None}
        gateways = backend.describe_internet_gateways(filters={"attachment.vpc-id": [vpc.id]})
        for gateway in gateways:
            backend.detach_internet_gateway(gateway.id, vpc.id)
            backend.delete_internet_gateway(gateway.id)
        subnets = backend.describe_subnets(filters={"vpc-id": [vpc.id]})
        for subnet in subnets:
            backend.delete_subnet(subnet.id)
        # delete_vpc also takes the main route table, the default security group and the DHCP options.
        backend.delete_vpc(vpc.id)
        return {
            "region": region,
            "vpc": vpc.id,
            "subnets": [subnet.id for subnet in subnets],
            "internet_gateways": [gateway.id for gateway in gateways],
        }

    # --- EC2, IAM and ELBv2 (query protocol: Action=... form bodies)

    def _query_protocol(self, environ: dict[str, Any], service: str, region: str) -> Response | After | None:
        body = read_body(environ)
        params = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        params.update({k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()})
        action = params.get("Action")
        if service == "iam":
            if action in ("CreateInstanceProfile", "AddRoleToInstanceProfile"):
                return self._stamp(self.profile_roles, [params.get("InstanceProfileName", "")])
            return None
        if service == "elasticloadbalancing":
            if action == "DeleteLoadBalancer" and params.get("LoadBalancerArn"):
                return self._delete_load_balancer(params["LoadBalancerArn"], region)
            return None
        handler = {
            "DescribeImages": self._describe_images,
            "DescribeInstanceTypeOfferings": self._describe_offerings,
            "RunInstances": self._run_instances,
            "TerminateInstances": self._terminate_instances,
            "DeleteSecurityGroup": self._delete_security_group,
            "CreateSecurityGroup": self._create_security_group,
            "GetConsoleOutput": self._get_console_output,
        }.get(action or "")
        return handler(environ, params, region) if handler else None

    def _describe_images(self, environ: dict[str, Any], params: dict[str, str], region: str) -> After:
        by_id = any(re.fullmatch(r"ImageId\.\d+", key) for key in params)
        keep_deprecated = by_id or params.get("IncludeDeprecated", "").lower() == "true"

        def after(status: int, body: bytes) -> bytes | None:
            if status != 200:
                return None
            root, ns = _parse(body)
            images = root.find(f"{ns}imagesSet")
            now = datetime.now(UTC)
            for item in list(images if images is not None else []):
                try:
                    created = datetime.fromisoformat(item.findtext(f"{ns}creationDate", "").replace("Z", "+00:00"))
                except ValueError:
                    continue
                deprecation = created + DEPRECATION_AGE
                ET.SubElement(item, f"{ns}deprecationTime").text = deprecation.strftime("%Y-%m-%dT%H:%M:%S.000Z")
                public = item.findtext(f"{ns}isPublic") == "true"
                if public and deprecation <= now and not keep_deprecated:
                    images.remove(item)
            return _serialize(root, ns)

        return after

    def _unoffered_zones(self, instance_type: str, region: str) -> set[str]:
        with self.lock:
            zones = self.settings["unoffered"].get(instance_type, [])
        return {zone.replace("<region>", region) for zone in zones}

    def _describe_offerings(self, environ: dict[str, Any], params: dict[str, str], region: str) -> After | None:
        if params.get("LocationType") != "availability-zone":
            return None

        def after(status: int, body: bytes) -> bytes | None:
            if status != 200:
                return None
            root, ns = _parse(body)
            offerings = root.find(f"{ns}instanceTypeOfferingSet")
            for item in list(offerings if offerings is not None else []):
                if item.findtext(f"{ns}location") in self._unoffered_zones(item.findtext(f"{ns}instanceType"), region):
                    offerings.remove(item)
            return _serialize(root, ns)

        return after

    def _run_instances(self, environ: dict[str, Any], params: dict[str, str], region: str) -> Response | None:
        for field, kind in (("Arn", "ARN"), ("Name", "name")):
            value = params.get(f"IamInstanceProfile.{field}")
            if value and self._recent(self.profile_roles, value.rsplit("/", 1)[-1], "iam_delay"):
                return ec2_error(
                    "InvalidParameterValue",
                    f"Value ({value}) for parameter iamInstanceProfile.{field.lower()} is invalid. "
                    f"Invalid IAM Instance Profile {kind}",
                )

        instance_type = params.get("InstanceType", "m1.small")
        unoffered = self._unoffered_zones(instance_type, region)
        if not unoffered:
            return None
        backend = ec2_backends[self.account][region]
        subnet_ids = [
            v for k, v in params.items() if k == "SubnetId" or re.fullmatch(r"NetworkInterface\.\d+\.SubnetId", k)
        ]
        zones = []
        for subnet_id in subnet_ids:
            try:
                zones.append(backend.get_subnet(subnet_id).availability_zone)
            except Exception:
                return None  # moto answers for an unknown subnet
        if params.get("Placement.AvailabilityZone"):
            zones.append(params["Placement.AvailabilityZone"])
        offered = [zone.name for zone in backend.describe_availability_zones() if zone.name not in unoffered]
        for zone in zones:
            if zone in unoffered:
                return ec2_error(
                    "Unsupported",
                    f"Your requested instance type ({instance_type}) is not supported in your requested Availability"
                    f" Zone ({zone}). Please retry your request by not specifying an Availability Zone or choosing"
                    f" {', '.join(offered)}.",
                )
        placed = zones or any(k.startswith(("NetworkInterface.", "LaunchTemplate.")) for k in params)
        if not placed and offered:
            # AWS picks an AZ that offers the type; moto would take <region>a.
            body = environ["wsgi.input"].read() + f"&Placement.AvailabilityZone={offered[0]}".encode()
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return None

    def _terminate_instances(self, environ: dict[str, Any], params: dict[str, str], region: str) -> After:
        backend = ec2_backends[self.account][region]
        groups = set()
        for key, instance_id in params.items():
            if re.fullmatch(r"InstanceId\.\d+", key):
                instance = backend.get_instance_by_id(instance_id)
                if instance is not None:
                    groups.update(group.id for group in instance.security_groups)
        return self._stamp(self.terminated_groups, groups)

    def _delete_load_balancer(self, arn: str, region: str) -> After | None:
        # The groups now, while moto still has the balancer; stamped once moto has deleted it.
        balancer = elbv2_backends[self.account][region].load_balancers.get(arn)
        groups = list(balancer.security_groups or []) if balancer is not None else []
        return self._stamp(self.balancer_groups, groups) if groups else None

    def _delete_security_group(self, environ: dict[str, Any], params: dict[str, str], region: str) -> Response | None:
        backend = ec2_backends[self.account][region]
        group_id = params.get("GroupId")
        if not group_id and params.get("GroupName"):
            try:
                group = backend.get_security_group_by_name_or_id(params["GroupName"])
            except Exception:
                group = None
            group_id = group.id if group else None
        if not group_id:
            return None
        in_use = any(
            instance.state != "terminated" and group_id in {group.id for group in instance.security_groups}
            for instance in backend.all_instances()
        ) or any(
            group_id in (balancer.security_groups or [])
            for balancer in list(elbv2_backends[self.account][region].load_balancers.values())
        )
        if (
            in_use
            or self._recent(self.terminated_groups, group_id, "sg_delay")
            or self._recent(self.balancer_groups, group_id, "sg_delay")
        ):
            return ec2_error("DependencyViolation", f"resource {group_id} has a dependent object")
        return None

    def _get_console_output(self, environ: dict[str, Any], params: dict[str, str], region: str) -> After | None:
        instance = ec2_backends[self.account][region].get_instance_by_id(params.get("InstanceId", ""))
        if instance is None:
            return None  # moto answers InvalidInstanceID.NotFound
        launched = instance.launch_time  # moto's: naive UTC
        if launched.tzinfo is None:
            launched = launched.replace(tzinfo=UTC)
        with self.lock:
            delay = self.settings["console_delay"]
        if (datetime.now(UTC) - launched).total_seconds() >= delay:
            return None

        def after(status: int, body: bytes) -> bytes | None:
            if status != 200:
                return None
            root, ns = _parse(body)
            for output in root.findall(f"{ns}output"):
                root.remove(output)  # EC2 leaves the element out while there is no output
            return _serialize(root, ns)

        return after

    def _create_security_group(self, environ: dict[str, Any], params: dict[str, str], region: str) -> Response | None:
        # moto would put the group into the deleted default VPC (its backend keeps a reference to it).
        if not params.get("VpcId") and ec2_backends[self.account][region].get_default_vpc() is None:
            return ec2_error("VPCIdNotSpecified", "No default VPC for this user")
        return None

    # --- CloudFront (REST-XML)

    def _cloudfront(self, environ: dict[str, Any], path: str) -> Response | None:
        if environ.get("REQUEST_METHOD") != "DELETE":
            return None
        match = re.fullmatch(r"/2020-05-31/(distribution|origin-access-control)/([^/]+)", path)
        if match is None:
            return None
        kind, ident = match.groups()
        if kind == "distribution":
            found = find_distribution(ident)
            if found is None:
                return None  # moto answers NoSuchDistribution
            distribution = found[2]
            enabled = str(distribution.distribution_config.Enabled).lower() == "true"
            if enabled or distribution.status == "InProgress":
                return cloudfront_error(
                    "DistributionNotDisabled", "The distribution you are trying to delete has not been disabled.", 409
                )
            return None
        for _account, _backend, distribution in distributions():
            origins = distribution.distribution_config.Origins.get("Items") or []
            if any(getattr(origin, "origin_access_control_id", "") == ident for origin in origins):
                return cloudfront_error(
                    "OriginAccessControlInUse",
                    "Cannot delete the origin access control because it's in use by one or more distributions.",
                    409,
                )
        return None

    # --- DynamoDB (JSON with X-Amz-Target)

    def _dynamodb(self, environ: dict[str, Any], region: str) -> Response | After | None:
        operation = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
        if operation not in ("CreateTable", "UpdateContinuousBackups"):
            return None
        try:
            table = json.loads(read_body(environ) or b"{}").get("TableName", "")
        except ValueError:
            return None
        if operation == "CreateTable":
            return self._stamp(self.tables, [(region, table)])
        if self._recent(self.tables, (region, table), "pitr_delay"):
            return dynamodb_error(
                "ContinuousBackupsUnavailableException",
                f"Backups are being enabled for the table: {table}. Please retry later",
            )
        return None

    # --- S3 (REST, path-style /bucket/key)

    def _s3(self, environ: dict[str, Any], anonymous: bool) -> Response | After | None:
        method = environ.get("REQUEST_METHOD", "GET")
        bucket, _, key = environ.get("PATH_INFO", "").lstrip("/").partition("/")
        if not bucket:
            return None
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)

        with self.lock:
            foreign = bucket in self.settings["foreign_buckets"]
        if foreign:
            if method == "PUT" and not key and not query:
                return s3_error(
                    "BucketAlreadyExists",
                    "The requested bucket name is not available. The bucket namespace is shared by all users of the"
                    " system. Please select a different name and try again.",
                    409,
                    method,
                    BucketName=bucket,
                )
            return s3_error("AccessDenied", "Access Denied", 403, method)

        if anonymous:
            if key and method in ("GET", "HEAD") and self._recent(self.bucket_policies, bucket, "policy_visible_delay"):
                return s3_error("AccessDenied", "Access Denied", 403, method)
            return None
        if method != "PUT" or key:
            return None
        if "publicAccessBlock" in query:
            return self._stamp(self.bucket_blocks, [bucket])
        if "policy" in query:
            if self._recent(self.bucket_blocks, bucket, "policy_delay"):
                return s3_error("AccessDenied", "Access Denied", 403, method)
            if _is_public(read_body(environ)) and self._account_blocks_public_policy():
                return s3_error(
                    "AccessDenied",
                    f"User: arn:aws:iam::{self.account}:user/testing is not authorized to perform: s3:PutBucketPolicy"
                    f' on resource: "arn:aws:s3:::{bucket}" because public policies are blocked by the'
                    " BlockPublicPolicy block public access setting.",
                    403,
                    method,
                )
            return self._stamp(self.bucket_policies, [bucket])
        return None

    def _account_blocks_public_policy(self) -> bool:
        block = s3control_backends[self.account]["aws"].public_access_block
        return bool(block and block.block_public_policy)


def _parse(body: bytes) -> tuple[ET.Element, str]:
    root = ET.fromstring(body)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    return root, ns


def _serialize(root: ET.Element, ns: str) -> bytes:
    text = ET.tostring(root, encoding="unicode", default_namespace=ns[1:-1] or None)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text).encode()


def _is_public(policy: bytes) -> bool:
    """True when an Allow statement names everyone as principal ("*" or {"AWS": "*"})."""
    try:
        statements = json.loads(policy).get("Statement", [])
    except (ValueError, AttributeError):
        return False
    for statement in statements if isinstance(statements, list) else [statements]:
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        if isinstance(principal, dict):
            principal = principal.get("AWS")
        if principal == "*" or (isinstance(principal, list) and "*" in principal):
            return True
    return False
