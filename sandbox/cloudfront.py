"""The data plane of the embedded AWS's CloudFront distributions: an edge per distribution, in front of moto's S3.

moto answers the CloudFront API but serves nothing, so a playbook that puts the media photos behind a
distribution with origin access control (OAC) could not show that the photos load through the distribution
and only through it. ``CloudFrontDataPlane`` wraps moto's WSGI app in the server's own process, reads moto's
CloudFront and S3 backends directly (no HTTP to itself) after each CloudFront call, at ``POST
/moto-api/reset`` and every ``RECONCILE_INTERVAL`` seconds (a status that changes with time), and gives
each distribution what its edge locations would do:

- an HTTP server on 127.0.0.1 at a port of its own, kept for the distribution's lifetime (a
  ``ThreadingHTTPServer`` thread). Plain HTTP stands for the viewer's HTTPS: the sandbox does not terminate
  TLS, so ViewerProtocolPolicy is not applied. A disabled distribution answers 403; methods other than GET,
  HEAD and OPTIONS (and those the cache behaviour does not allow) answer 403, as CloudFront does for a
  behaviour that allows only cachable requests.
- the cache behaviour whose PathPattern matches (else the default one) picks the origin. An S3 origin's
  DomainName is ``<bucket>.s3.<region>.amazonaws.com`` or ``<bucket>.s3.amazonaws.com``; the key is the
  OriginPath (without its leading slash) joined to the request path (DefaultRootObject for ``/``). Any other
  origin (custom origins, S3 website endpoints) answers 502.
- the origin request is authorised as S3 would authorise it. With an ``OriginAccessControlId`` naming an
  OAC of origin type s3 that signs (``always`` or ``no-override``), the request comes from the service
  principal ``cloudfront.amazonaws.com`` with ``aws:SourceArn`` the distribution's ARN; without one it is
  anonymous. The bucket policy decides (``policy_allows``): an Allow statement naming that principal (or
  everyone), with a matching Action (wildcards) and Resource ARN (wildcards), whose Condition holds
  (String*/Arn*/Bool/Null operators, ``...IfExists``); any matching Deny wins; an operator or key the
  sandbox cannot evaluate makes its statement not apply. Refused, or a missing key without s3:ListBucket,
  answers S3's 403 AccessDenied XML (404 NoSuchKey only with s3:ListBucket), which CloudFront passes on.
- answers are cached per distribution and path (query strings, headers and cookies are not in the cache
  key) for a TTL from the object's ``Cache-Control`` (s-maxage, then max-age, else ``Expires``) bounded by
  the cache policy's min and max TTL, or its default TTL when the object says nothing; ``no-store``,
  ``no-cache`` or ``private`` cache for the minimum TTL only (none with a minimum of 0), as AWS documents.
  Policies: the managed CachingOptimized and CachingDisabled; a behaviour without CachePolicyId uses its
  legacy MinTTL/DefaultTTL/MaxTTL (moto keeps 0 for an omitted DefaultTTL or MaxTTL, where AWS puts 86400
  and 31536000); any other policy id is served uncached (moto has no cache policies to read). A cached
  object stays served until its TTL ends, whatever the origin does meanwhile; an expired one whose ETag did
  not change is a ``RefreshHit``. CreateInvalidation clears the matching paths. ``X-Cache`` says Hit,
  RefreshHit, Miss or Error from cloudfront; hits carry ``Age``; Content-Type, ETag, Last-Modified,
  Cache-Control and the object's other headers pass; If-None-Match and If-Modified-Since answer 304.
- with the behaviour's ``Compress`` and a viewer that accepts gzip, objects of the types CloudFront
  compresses, of 1,000 to 10,000,000 bytes and not already encoded, are gzipped (``Content-Encoding: gzip``,
  ``Vary: Accept-Encoding``, the ETag made weak).

Records, in ``<state>/cloudfront/<distribution id>.json`` (state: SANDBOX_STATE_DIR, else <repo>/.sandbox):
{"id", "arn", "domain_name", "aliases", "enabled", "status", "url": "http://127.0.0.1:<port>",
"server_pid"}, written before CreateDistribution's answer leaves the server and kept in step with the
status moto (or the unkind mode) answers. A deleted distribution's record goes and its server stops; so do
all at ``POST /moto-api/reset`` and at the server's exit; a server that starts removes the records of a
dead server of the same state directory.

The unkind mode (aws_realism.py) makes deployments last: it stamps a ``Deployment`` on moto's distribution
(``begin_deployment``) and the status follows it; while the first deployment (after CreateDistribution)
lasts the edge answers 503.

moto's fixes, in both modes (``install_cloudfront_fixes``): its Origin model drops ``OriginAccessControlId``
and ``S3OriginConfig``, so GetDistribution and GetDistributionConfig never return them and
community.aws.cloudfront_distribution would report a change on every run; here they are kept and returned
(``OriginAccessControlId`` "" when none, as AWS answers). DeleteOriginAccessControl of an unknown id answers
NoSuchOriginAccessControl (moto: a 500).

Not reproduced: TLS and viewer protocol policies, custom origins, origin groups, Lambda@Edge and CloudFront
Functions, signed URLs, geo restriction, custom error responses, error caching (CloudFront keeps a 4xx for
10 s), Range requests, Brotli, CORS (an allowed OPTIONS answers 200 without CORS headers), SSE-KMS, ACLs
and legacy origin access identities (an origin without OAC reads anonymously).
"""

from __future__ import annotations

import atexit
import contextlib
import gzip
import json
import os
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from load_balancers import state_directory
from moto.cloudfront.exceptions import NoSuchOriginAccessControl
from moto.cloudfront.models import CloudFrontBackend, Origin, cloudfront_backends
from moto.s3.models import s3_backends
from wsgi_layers import credential_scope, pass_through, read_body

RECONCILE_INTERVAL = 0.5
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
CLOUDFRONT_PRINCIPAL = "cloudfront.amazonaws.com"
S3_ORIGIN = re.compile(r"(?P<bucket>[a-z0-9][a-z0-9.-]*[a-z0-9])\.s3(?:[.-](?P<region>[a-z0-9-]+))?\.amazonaws\.com")
INVALIDATION_PATH = re.compile(r"/2020-05-31/distribution/(?P<id>[^/]+)/invalidation")
# The content types CloudFront compresses (Developer Guide, "File types that CloudFront compresses").
# fmt: off
COMPRESSIBLE = frozenset(
    {
        "application/dash+xml", "application/eot", "application/font", "application/font-sfnt",
        "application/javascript", "application/json", "application/opentype", "application/otf", "application/pdf",
        "application/pkcs7-mime", "application/protobuf", "application/rss+xml", "application/truetype",
        "application/ttf", "application/vnd.apple.mpegurl", "application/vnd.mapbox-vector-tile",
        "application/vnd.ms-fontobject", "application/wasm", "application/xhtml+xml", "application/xml",
        "application/x-font-opentype", "application/x-font-truetype", "application/x-font-ttf",
        "application/x-httpd-cgi", "application/x-javascript", "application/x-mpegurl", "application/x-opentype",
        "application/x-otf", "application/x-perl", "application/x-ttf", "font/eot", "font/opentype", "font/otf",
        "font/ttf", "image/svg+xml", "text/css", "text/csv", "text/html", "text/javascript", "text/js", "text/plain",
        "text/richtext", "text/tab-separated-values", "text/xml", "text/x-component", "text/x-java-source",
        "text/x-script", "vnd.apple.mpegurl",
    }
)
# fmt: on
COMPRESSIBLE_SIZES = range(1_000, 10_000_001)
# What a 304 keeps of the 200 it stands for.
NOT_MODIFIED_HEADERS = frozenset(
    ("Server", "ETag", "Cache-Control", "Expires", "Last-Modified", "Vary", "Age", "X-Cache", "Via", "X-Amz-Cf-Pop",
     "X-Amz-Cf-Id")
)  # fmt: skip
# The object's headers S3 answers with, as they are spelled on the wire (moto keeps them lowercased).
OBJECT_HEADERS = {
    name.lower(): name
    for name in ("Content-Type", "Cache-Control", "Expires", "Content-Encoding", "Content-Disposition",
                 "Content-Language")
}  # fmt: skip

Reply = tuple[int, list[tuple[str, str]], bytes]


# --- moto's model -------------------------------------------------------------------------------------


def install_cloudfront_fixes() -> None:
    """Keep what moto's Origin drops, answer an unknown OAC's deletion as AWS does, and check CloudFront's
    signatures under IAM enforcement as signed (idempotent)."""
    if getattr(Origin.__init__, "sandbox_fixed", False):
        return
    original_init = Origin.__init__

    def origin_init(self: Origin, origin: dict[str, Any]) -> None:
        original_init(self, origin)
        # Serialised as OriginAccessControlId and S3OriginConfig by moto's attribute picker.
        self.origin_access_control_id = origin.get("OriginAccessControlId") or ""
        if isinstance(origin.get("S3OriginConfig"), dict):
            self.s3_origin_config = {
                **origin["S3OriginConfig"],
                "OriginAccessIdentity": origin["S3OriginConfig"].get("OriginAccessIdentity") or "",
            }

    origin_init.sandbox_fixed = True  # type: ignore[attr-defined]
    Origin.__init__ = origin_init  # type: ignore[method-assign]

    original_delete = CloudFrontBackend.delete_origin_access_control

    def delete_origin_access_control(self: CloudFrontBackend, control_id: str) -> None:
        if control_id not in self.origin_access_controls:
            raise NoSuchOriginAccessControl
        original_delete(self, control_id)

    CloudFrontBackend.delete_origin_access_control = delete_origin_access_control  # type: ignore[method-assign]
    _check_bodiless_signatures_as_signed()


def _check_bodiless_signatures_as_signed() -> None:
    """Under IAM enforcement (/moto-api/reset-auth), moto recomputes each request's SigV4 signature with the
    request's parsed data as its body when it has none; for a REST-XML GET such as CloudFront's
    ListOriginAccessControls that is the headers, so every signature "does not match". The client signed
    an empty body: so does this."""
    from botocore.awsrequest import AWSRequest
    from moto.iam.access_control import IAMRequestBase

    def create_aws_request(self: IAMRequestBase) -> AWSRequest:
        signed = self._get_string_between("SignedHeaders=", ",", self._headers["Authorization"]).split(";")
        headers = self._create_headers_for_aws_request(signed, self._headers)
        bodiless = self._method in ("GET", "HEAD", "DELETE") and not self._body
        request = AWSRequest(
            method=self._method, url=self._path, data=b"" if bodiless else self._body or self._data, headers=headers
        )
        request.context["timestamp"] = headers["X-Amz-Date"]
        return request

    IAMRequestBase._create_aws_request = create_aws_request  # type: ignore[method-assign]


@dataclass(frozen=True)
class Deployment:
    """A deployment the unkind mode makes last: InProgress until ``ends`` (time.monotonic()). ``first``: the
    distribution's first one (after CreateDistribution), during which its edges answer nothing yet."""

    first: bool
    ends: float

    @property
    def in_progress(self) -> bool:
        return time.monotonic() < self.ends


DEPLOYMENT = "sandbox_deployment"  # the attribute on moto's Distribution


def deployment_of(distribution: Any) -> Deployment | None:
    return distribution.__dict__.get(DEPLOYMENT)


def begin_deployment(distribution: Any, seconds: float, first: bool) -> None:
    """An update during the first deployment prolongs it: the distribution has still never answered."""
    previous = deployment_of(distribution)
    first = first or (previous is not None and previous.first and previous.in_progress)
    distribution.__dict__[DEPLOYMENT] = Deployment(first, time.monotonic() + seconds)


def distributions() -> Iterator[tuple[str, CloudFrontBackend, Any]]:
    """(account, backend, distribution) of every distribution moto holds."""
    for account, partitions in list(cloudfront_backends.items()):
        for _partition, backend in list(partitions.items()):
            for distribution in list(backend.distributions.values()):
                yield account, backend, distribution


def find_distribution(distribution_id: str) -> tuple[str, CloudFrontBackend, Any] | None:
    for found in distributions():
        if found[2].id == distribution_id:
            return found
    return None


def _true(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


# --- S3's authorisation of the origin request -------------------------------------------------------


@dataclass(frozen=True)
class Requester:
    """Who reads from S3: CloudFront signing for a distribution (OAC), or nobody in particular."""

    signed: bool
    source_arn: str = ""
    source_account: str = ""

    def context(self) -> dict[str, str]:
        """The request context keys a bucket policy's conditions may name (lowercase)."""
        keys = {"aws:securetransport": "true"}  # CloudFront reaches S3 REST origins over HTTPS
        if self.signed:
            keys |= {
                "aws:sourcearn": self.source_arn,
                "aws:sourceaccount": self.source_account,
                "aws:principalservicename": CLOUDFRONT_PRINCIPAL,
            }
        return keys


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM's matching: ``*`` any run of characters, ``?`` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def _names(principal: Any, requester: Requester) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    if "*" in _listed(principal.get("AWS")):
        return True
    return requester.signed and CLOUDFRONT_PRINCIPAL in _listed(principal.get("Service"))


CONDITION_TESTS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda actual, wanted: actual == wanted,
    "StringEqualsIgnoreCase": lambda actual, wanted: actual.lower() == wanted.lower(),
    "StringLike": lambda actual, wanted: _wildcard(wanted, actual),
    "ArnEquals": lambda actual, wanted: _wildcard(wanted, actual),
    "ArnLike": lambda actual, wanted: _wildcard(wanted, actual),
    "Bool": lambda actual, wanted: actual.lower() == wanted.lower(),
}


def _condition_test(operator: str, actual: str | None, wanted: list[str]) -> bool:
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    if base == "Null":
        return (actual is None) == (bool(wanted) and wanted[0].lower() == "true")
    negated = "Not" in base
    test = CONDITION_TESTS.get(base.replace("Not", "", 1))
    if test is None:
        return False  # not evaluated here: the statement does not apply
    if actual is None:
        return if_exists or negated  # IAM: a missing key matches only ...IfExists and the negated operators
    matched = any(test(actual, value) for value in wanted)
    return not matched if negated else matched


def _condition_holds(condition: Any, context: dict[str, str]) -> bool:
    if not condition:
        return True
    if not isinstance(condition, dict):
        return False
    for operator, clauses in condition.items():
        if not isinstance(clauses, dict):
            return False
        for key, wanted in clauses.items():
            if not _condition_test(operator, context.get(key.lower()), [str(v) for v in _listed(wanted)]):
                return False
    return True


def _applies(statement: dict[str, Any], action: str, resource: str, requester: Requester) -> bool:
    if "Principal" in statement:
        if not _names(statement["Principal"], requester):
            return False
    elif "NotPrincipal" not in statement or _names(statement["NotPrincipal"], requester):
        return False
    if "Action" in statement:
        if not any(_wildcard(str(p), action, ignore_case=True) for p in _listed(statement["Action"])):
            return False
    elif any(_wildcard(str(p), action, ignore_case=True) for p in _listed(statement.get("NotAction"))):
        return False
    if "Resource" in statement:
        if not any(_wildcard(str(p), resource) for p in _listed(statement["Resource"])):
            return False
    elif any(_wildcard(str(p), resource) for p in _listed(statement.get("NotResource"))):
        return False
    return _condition_holds(statement.get("Condition"), requester.context())


def policy_decision(policy: bytes | str | None, action: str, resource: str, requester: Requester) -> str | None:
    """ "Deny" when a statement that applies denies, else "Allow" when one allows, else None (neither)."""
    try:
        document = json.loads(policy) if policy else {}
    except ValueError:
        return None
    statements = _listed(document.get("Statement")) if isinstance(document, dict) else []
    decision = None
    for statement in statements:
        if not isinstance(statement, dict) or not _applies(statement, action, resource, requester):
            continue
        if statement.get("Effect") == "Deny":
            return "Deny"
        if statement.get("Effect") == "Allow":
            decision = "Allow"
    return decision


def policy_allows(policy: bytes | str | None, action: str, resource: str, requester: Requester) -> bool:
    """True when the bucket policy allows the action on the resource to the requester and nothing denies it."""
    return policy_decision(policy, action, resource, requester) == "Allow"


def install_anonymous_bucket_policy() -> None:
    """S3 lets an anonymous reader through a bucket policy only where a statement names everyone (``*``).

    moto's FakeBucket.get_permission, which decides an unsigned GET or HEAD of an object, lets any Allow
    through, whoever its principal: a policy that grants only CloudFront (OAC) would serve the bucket to
    everyone, where AWS answers 403. Here the policy is read as for an anonymous requester (idempotent).
    """
    from moto.iam.access_control import PermissionResult
    from moto.s3.models import FakeBucket

    if getattr(FakeBucket.get_permission, "sandbox_fixed", False):
        return

    def get_permission(self: FakeBucket, action: str, resource: str) -> PermissionResult:
        policy = self.policy.decode() if isinstance(self.policy, bytes) else self.policy
        decision = policy_decision(policy, action, resource, Requester(signed=False))
        return {"Deny": PermissionResult.DENIED, "Allow": PermissionResult.PERMITTED}.get(
            decision, PermissionResult.NEUTRAL
        )

    get_permission.sandbox_fixed = True  # type: ignore[attr-defined]
    FakeBucket.get_permission = get_permission  # type: ignore[method-assign]


# --- answers ------------------------------------------------------------------------------------------


def _request_id() -> str:
    return uuid.uuid4().hex[:16].upper()


def s3_error(status: int, code: str, message: str, **extra: str) -> Reply:
    """S3's error, as CloudFront passes an origin's error on."""
    fields = "".join(f"<{k}>{_escape(v)}</{k}>" for k, v in extra.items())
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{_escape(message)}</Message>'
        f"{fields}<RequestId>{_request_id()}</RequestId><HostId>sandbox</HostId></Error>"
    )
    return status, [("Content-Type", "application/xml"), ("Server", "AmazonS3")], body.encode()


def edge_error(status: int, detail: str) -> Reply:
    """An error CloudFront makes itself: its HTML page."""
    body = (
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN" "http://www.w3.org/TR/html4/loose.dtd">\n'
        '<HTML><HEAD><META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=iso-8859-1">\n'
        "<TITLE>ERROR: The request could not be satisfied</TITLE>\n</HEAD><BODY>\n"
        f'<H1>{status} ERROR</H1>\n<H2>The request could not be satisfied.</H2>\n<HR noshade size="1px">\n'
        f'{_escape(detail)}\n<BR clear="all">\n</BODY></HTML>\n'
    )
    return status, [("Content-Type", "text/html"), ("Server", "CloudFront")], body.encode()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class TtlPolicy:
    minimum: float
    default: float
    maximum: float


MANAGED_CACHE_POLICIES = {
    CACHING_OPTIMIZED: TtlPolicy(1, 86_400, 31_536_000),
    CACHING_DISABLED: TtlPolicy(0, 0, 0),
}


def ttl_policy(behaviour: Any) -> TtlPolicy:
    policy_id = behaviour.cache_policy_id or ""
    if not policy_id:
        return TtlPolicy(*(float(ttl or 0) for ttl in (behaviour.min_ttl, behaviour.default_ttl, behaviour.max_ttl)))
    return MANAGED_CACHE_POLICIES.get(policy_id, MANAGED_CACHE_POLICIES[CACHING_DISABLED])


def time_to_live(headers: dict[str, str], policy: TtlPolicy) -> float:
    """Seconds CloudFront keeps the object: what it says, bounded by the policy; the default when it says nothing."""
    directives: dict[str, str] = {}
    for part in headers.get("Cache-Control", "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            directives[name.lower()] = value.strip().strip('"')
    if directives.keys() & {"no-store", "no-cache", "private"}:
        return policy.minimum
    for name in ("s-maxage", "max-age"):
        if directives.get(name, "").isdigit():
            return min(max(float(directives[name]), policy.minimum), policy.maximum)
    if headers.get("Expires"):
        try:
            seconds = (parsedate_to_datetime(headers["Expires"]) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            seconds = 0.0  # an invalid Expires is in the past
        return min(max(seconds, policy.minimum), policy.maximum)
    return policy.default


def _accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.split(","):
        coding, _, parameters = part.strip().partition(";")
        quality = parameters.strip().removeprefix("q=") if parameters.strip().startswith("q=") else "1"
        try:
            if coding.strip().lower() in ("gzip", "*") and float(quality) > 0:
                return True
        except ValueError:
            continue
    return False


@dataclass
class Cached:
    """An object as the origin gave it (200), and how long it may be served from the edge."""

    body: bytes
    headers: dict[str, str]
    stored: float  # time.monotonic()
    ttl: float
    gzipped: bytes | None = None

    @property
    def fresh(self) -> bool:
        return time.monotonic() - self.stored < self.ttl

    def compressible(self) -> bool:
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        encoded = "Content-Encoding" in self.headers  # the origin's own: CloudFront does not compress it again
        return content_type in COMPRESSIBLE and len(self.body) in COMPRESSIBLE_SIZES and not encoded

    def gzip(self) -> bytes:
        if self.gzipped is None:
            self.gzipped = gzip.compress(self.body, mtime=0)
        return self.gzipped


def _not_modified(headers: Any, cached: Cached) -> bool:
    etag = cached.headers.get("ETag", "")
    if_none_match = headers.get("If-None-Match")
    if if_none_match:
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return "*" in tags or etag.removeprefix("W/") in tags
    since = headers.get("If-Modified-Since")
    if since and cached.headers.get("Last-Modified"):
        try:
            return parsedate_to_datetime(cached.headers["Last-Modified"]) <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


# --- an edge: one distribution's HTTP server ----------------------------------------------------------


class _EdgeServer(ThreadingHTTPServer):
    daemon_threads = True
    edge: Edge


class _EdgeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a viewer's connection to CloudFront
    server: _EdgeServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # the body of a refused POST or PUT: read so the connection stays usable
        try:
            status, headers, body = self.server.edge.answer(self.command, self.path, self.headers)
        except Exception as error:  # moto's state changed under us: the viewer gets CloudFront's 502
            print(f"cloudfront: {self.command} {self.path} on {self.server.edge.id}: {error!r}", flush=True)
            status, headers, body = edge_error(502, "CloudFront wasn't able to connect to the origin.")
            headers.append(("X-Cache", "Error from cloudfront"))
        self.send_response_only(status)
        self.send_header("Date", formatdate(usegmt=True))
        for name, value in headers:
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))  # HEAD: that of the GET
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Edge:
    """A distribution's edge: its server on 127.0.0.1 and its cache, both for the distribution's lifetime."""

    id: str
    server: _EdgeServer = field(init=False)
    cache: dict[str, Cached] = field(default_factory=dict)  # path: object
    cache_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.server = _EdgeServer(("127.0.0.1", 0), _EdgeHandler)
        self.server.edge = self
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"cloudfront-{self.id}", daemon=True
        ).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def invalidate(self, paths: Iterable[str]) -> None:
        with self.cache_lock:
            for given in paths:
                pattern = "/" + unquote(given).lstrip("/")
                prefix = pattern.removesuffix("*") if pattern.endswith("*") else None  # "*" only at the end
                for path in [p for p in self.cache if p == pattern or (prefix is not None and p.startswith(prefix))]:
                    del self.cache[path]

    # --- a viewer's request

    def answer(self, method: str, target: str, headers: Any) -> Reply:
        found = find_distribution(self.id)
        if found is None:
            return self._error(edge_error(403, "Bad request. The distribution does not exist."))
        account, backend, distribution = found
        deployment = deployment_of(distribution)
        if deployment is not None and deployment.first and deployment.in_progress:
            return self._error(edge_error(503, "The distribution is still being deployed (InProgress). Retry later."))
        config = distribution.distribution_config
        if not _true(config.Enabled):
            return self._error(edge_error(403, "Bad request. The distribution is disabled."))
        path = target.split("?", 1)[0] or "/"  # the query string is not in the cache key, nor sent to S3
        behaviour = self._behaviour(config, path)
        if method not in ("GET", "HEAD", "OPTIONS") or method not in behaviour.allowed_methods.items:
            return self._error(
                edge_error(
                    403,
                    "This distribution is not configured to allow the HTTP request method that was used for this"
                    " request. The distribution supports only cachable requests.",
                )
            )
        if method == "OPTIONS":
            return 200, [("Allow", ", ".join(behaviour.allowed_methods.items)), ("Content-Type", "text/plain")], b""
        origin = next((o for o in config.Origins["Items"] if o.id == behaviour.target_origin_id), None)
        match = S3_ORIGIN.fullmatch(origin.domain_name) if origin is not None else None
        if origin is None or match is None or "s3-website" in origin.domain_name:
            return self._error(edge_error(502, "CloudFront wasn't able to connect to the origin (not an S3 origin)."))
        if path == "/" and config.DefaultRootObject:
            path = "/" + config.DefaultRootObject
        with self.cache_lock:
            cached = self.cache.get(path)
        if cached is not None and cached.fresh:
            return self._object(method, headers, behaviour, cached, "Hit")
        requester = self._requester(account, backend, distribution, origin)
        key = "/".join(part for part in (origin.origin_path.strip("/"), unquote(path).lstrip("/")) if part)
        fetched = self._fetch(match.group("bucket"), key, requester)
        if isinstance(fetched, tuple):
            with self.cache_lock:
                self.cache.pop(path, None)
            return self._error(fetched)
        fetched.ttl = time_to_live(fetched.headers, ttl_policy(behaviour))
        outcome = "Miss"
        if cached is not None and cached.headers.get("ETag") == fetched.headers.get("ETag"):
            outcome = "RefreshHit"  # CloudFront asked the origin whether it changed: not modified
        with self.cache_lock:
            if fetched.ttl > 0:
                self.cache[path] = fetched
            else:
                self.cache.pop(path, None)
        return self._object(method, headers, behaviour, fetched, outcome)

    @staticmethod
    def _behaviour(config: Any, path: str) -> Any:
        behaviours = config.CacheBehaviors.get("Items") if isinstance(config.CacheBehaviors, dict) else None
        for behaviour in behaviours or []:
            if _wildcard(behaviour.path_pattern.lstrip("/"), path.lstrip("/")):
                return behaviour
        return config.DefaultCacheBehavior

    @staticmethod
    def _requester(account: str, backend: CloudFrontBackend, distribution: Any, origin: Any) -> Requester:
        control_id = getattr(origin, "origin_access_control_id", "")
        control = backend.origin_access_controls.get(control_id) if control_id else None
        signs = (
            control is not None
            and str(control.origin_type).lower() == "s3"
            and str(control.signing_behavior).lower() in ("always", "no-override")
        )
        return Requester(True, distribution.arn, account) if signs else Requester(False)

    @staticmethod
    def _fetch(bucket_name: str, key: str, requester: Requester) -> Cached | Reply:
        """GetObject as S3 answers CloudFront's request."""
        located = s3_backends.bucket_accounts.get(bucket_name)
        bucket = s3_backends[located[1]][located[0]].buckets.get(bucket_name) if located else None
        if bucket is None:
            return s3_error(404, "NoSuchBucket", "The specified bucket does not exist", BucketName=bucket_name)
        partition = located[0] if located else "aws"
        resource = f"arn:{partition}:s3:::{bucket_name}/{key}"
        if not key or not policy_allows(bucket.policy, "s3:GetObject", resource, requester):
            return s3_error(403, "AccessDenied", "Access Denied")
        try:
            found = s3_backends[located[1]][located[0]].get_object(bucket_name, key)
        except Exception:
            found = None
        if found is None:
            if policy_allows(bucket.policy, "s3:ListBucket", f"arn:{partition}:s3:::{bucket_name}", requester):
                return s3_error(404, "NoSuchKey", "The specified key does not exist.", Key=key)
            return s3_error(403, "AccessDenied", "Access Denied")  # S3 hides what does not exist
        headers = {"Content-Type": "binary/octet-stream"}
        for name, value in found.metadata.items():
            if name.lower() in OBJECT_HEADERS:
                headers[OBJECT_HEADERS[name.lower()]] = str(value)
            elif name.lower().startswith("x-amz-meta-"):
                headers[name.lower()] = str(value)
        headers |= {"ETag": found.etag, "Last-Modified": found.last_modified_RFC1123}
        return Cached(found.value, headers, time.monotonic(), 0.0)

    @staticmethod
    def _error(reply: Reply) -> Reply:
        status, headers, body = reply
        return status, [*headers, *_edge_headers("Error")], body

    @staticmethod
    def _object(method: str, request_headers: Any, behaviour: Any, cached: Cached, outcome: str) -> Reply:
        headers = dict(cached.headers)
        body = cached.body
        compress = behaviour.compress and _accepts_gzip(request_headers.get("Accept-Encoding", ""))
        if compress and cached.compressible():
            body = cached.gzip()
            headers["Content-Encoding"] = "gzip"
            headers["Vary"] = "Accept-Encoding"
            if headers.get("ETag", "").startswith('"'):
                headers["ETag"] = "W/" + headers["ETag"]  # CloudFront weakens the ETag of what it compressed
        extra = _edge_headers(outcome)
        if outcome == "Hit":
            extra.append(("Age", str(int(time.monotonic() - cached.stored))))
        listed = [("Server", "AmazonS3"), ("Accept-Ranges", "bytes"), *headers.items(), *extra]
        if _not_modified(request_headers, cached):
            return 304, [(name, value) for name, value in listed if name in NOT_MODIFIED_HEADERS], b""
        return 200, listed, body


def _edge_headers(outcome: str) -> list[tuple[str, str]]:
    return [
        ("X-Cache", f"{outcome} from cloudfront"),
        ("Via", "1.1 sandbox.cloudfront.net (CloudFront)"),
        ("X-Amz-Cf-Pop", "SANDBOX"),
        ("X-Amz-Cf-Id", uuid.uuid4().hex),
    ]


# --- the middleware -----------------------------------------------------------------------------------


def _server_running(pid: int) -> bool:
    """True when that embedded AWS server still runs (and is not this one)."""
    try:
        return pid != os.getpid() and b"embedded_aws_server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class CloudFrontDataPlane:
    def __init__(self, app: Callable, state_dir: Path | None = None, interval: float = RECONCILE_INTERVAL):
        self.app = app
        self.root = (state_dir or state_directory()) / "cloudfront"
        self.lock = threading.RLock()
        self.edges: dict[str, Edge] = {}  # distribution id
        self.stopping = threading.Event()
        self.remove_stale()
        atexit.register(self.shutdown)
        self.thread = threading.Thread(target=self._loop, args=(interval,), name="cloudfront", daemon=True)
        self.thread.start()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/moto-api/reset" and environ.get("REQUEST_METHOD") == "POST":
            with self.lock:  # no reconciliation between the edges' end and moto's reset
                self.stop_all()
                return self.app(environ, start_response)
        _region, service = credential_scope(environ)
        if service != "cloudfront":
            return self.app(environ, start_response)
        invalidated = INVALIDATION_PATH.fullmatch(path) if environ.get("REQUEST_METHOD") == "POST" else None
        paths = _invalidation_paths(read_body(environ)) if invalidated else []

        def after(status: int, _body: bytes) -> None:
            with self.lock:
                self._reconcile_safely()
                if invalidated and status < 300 and invalidated.group("id") in self.edges:
                    self.edges[invalidated.group("id")].invalidate(paths)

        return pass_through(self.app, environ, start_response, after)

    def _loop(self, interval: float) -> None:
        while not self.stopping.wait(interval):
            if not self.edges and not any(True for _ in distributions()):
                continue
            with self.lock:
                self._reconcile_safely()

    def _reconcile_safely(self) -> None:
        """Reconcile; a failure is printed (the server's log) and retried at the next round, never answered
        to the API call (moto's dicts may change under us). Not once exiting."""
        if self.stopping.is_set():
            return
        try:
            self.reconcile()
        except Exception as error:
            if not self.stopping.is_set():
                print(f"cloudfront: reconcile failed: {error!r}", flush=True)

    def reconcile(self) -> None:
        """An edge and a record for each distribution moto holds, none for the others (lock held)."""
        present = {distribution.id: distribution for _account, _backend, distribution in distributions()}
        for gone in [ident for ident in self.edges if ident not in present]:
            self._stop(self.edges.pop(gone))
        for ident, distribution in present.items():
            edge = self.edges.get(ident)
            if edge is None:
                edge = self.edges[ident] = Edge(ident)
            self._write_record(edge, distribution)

    def _write_record(self, edge: Edge, distribution: Any) -> None:
        config = distribution.distribution_config
        aliases = config.Aliases.get("Items") if isinstance(config.Aliases, dict) else None
        record = {
            "id": distribution.id,
            "arn": distribution.arn,
            "domain_name": distribution.domain_name,
            "aliases": list(aliases or []),
            "enabled": _true(config.Enabled),
            "status": distribution.status,
            "url": f"http://127.0.0.1:{edge.port}",
            "server_pid": os.getpid(),
        }
        path = self.root / f"{edge.id}.json"
        text = json.dumps(record, indent=2) + "\n"
        if not path.exists() or path.read_text() != text:
            self.root.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".json.tmp")
            temporary.write_text(text)
            temporary.replace(path)

    def _stop(self, edge: Edge) -> None:
        edge.stop()
        with contextlib.suppress(FileNotFoundError):
            (self.root / f"{edge.id}.json").unlink()

    def stop_all(self) -> None:
        with self.lock:
            for edge in self.edges.values():
                self._stop(edge)
            self.edges.clear()

    def shutdown(self) -> None:
        """The server's exit (atexit): stop the edges and remove their records, without waiting long for the
        lock (a request may hold it)."""
        self.stopping.set()
        locked = self.lock.acquire(timeout=1.0)
        try:
            for edge in list(self.edges.values()):
                self._stop(edge)
        finally:
            if locked:
                self.lock.release()

    def remove_stale(self) -> None:
        """Remove the records a dead server of this state directory left (those of a running one stay)."""
        for path in self.root.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
                if not _server_running(int(json.loads(path.read_text()).get("server_pid"))):
                    path.unlink()


def _invalidation_paths(body: bytes) -> list[str]:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return []
    return [element.text or "" for element in root.iter() if element.tag.rsplit("}", 1)[-1] == "Path"]
