"""Typed settings read from the environment (the systemd unit's environment file).

Every variable is prefixed ``RANKER_``. An empty value counts as unset, so an environment file may
list a variable with nothing after ``=``. Rules:

================================  ========  ==========================================================
Variable                          Required  Default / meaning
================================  ========  ==========================================================
RANKER_BUCKET                     yes       S3 bucket that holds shop photos.
RANKER_AWS_REGION                 yes       AWS region of the bucket (and of the DynamoDB table).
RANKER_WRITE_TOKEN                yes       Bearer token for writes; at least 16 characters. Also
                                            keys the HMAC that signs pagination cursors.
RANKER_WRITE_TOKEN_ALSO_ACCEPTED  no        A second write token, accepted while the token is rotated;
                                            same rules, and it must differ from RANKER_WRITE_TOKEN.
                                            Cursors signed with either token's key are accepted; new
                                            ones are signed with RANKER_WRITE_TOKEN's. Rotated host
                                            by host in three phases: (1) token=old, also=new;
                                            (2) token=new, also=old; (3) token=new, also unset.
                                            Hosts of neighbouring phases accept each other's cursors
                                            and share an accepted token.
RANKER_S3_ENDPOINT_URL            no        S3 endpoint (the embedded AWS); AWS's own when unset.
RANKER_DB_PATH                    no        SQLite file; /var/lib/coffee-ranker/ranker.sqlite3. Its
                                            directory must exist. Unused with DynamoDB.
RANKER_DYNAMODB_TABLE             no        DynamoDB table; when set it replaces SQLite.
RANKER_DYNAMODB_ENDPOINT_URL      no        DynamoDB endpoint (the embedded AWS); needs the table.
RANKER_HOST                       no        0.0.0.0
RANKER_PORT                       no        11373
RANKER_METRICS_PORT               no        11374: the port of the Prometheus metrics (on RANKER_HOST),
                                            never the API's; it must differ from RANKER_PORT. 0: no
                                            metrics served.
RANKER_WORKERS                    no        1: worker processes serving the API (1-16). With more
                                            than one, the parent serves the metrics of all of them.
RANKER_MAX_UPLOAD_BYTES           no        10485760 (10 MiB): the largest photo accepted.
RANKER_MEDIA_BASE_URL             no        Base URL of public photo links (a CDN or CNAME); the
                                            bucket's own URL when unset.
RANKER_MEDIA_PREFIX               no        media/: the key prefix photos are stored under, the only
                                            one the bucket policy makes public. Ends with "/".
RANKER_MAX_JSON_BYTES             no        65536 (64 KiB): the largest JSON request body accepted.
RANKER_MAX_IMAGE_PIXELS           no        40000000: the most pixels a photo may decode to (a guard
                                            against decompression bombs).
RANKER_LOG_FORMAT                 no        text (one escaped line per record) or json (JSON lines).
RANKER_CORS_ORIGINS               no        Comma-separated origins (https://app.example.com) a web
                                            front end is served from; CORS is off when unset.
================================  ========  ==========================================================
"""

import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

DEFAULT_HOST = "0.0.0.0"  # noqa: S104 - the service is meant to be reached from outside the host.
DEFAULT_PORT = 11373
DEFAULT_METRICS_PORT = 11374
MAX_WORKERS = 16
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_MEDIA_PREFIX = "media/"
DEFAULT_DB_PATH = "/var/lib/coffee-ranker/ranker.sqlite3"
DEFAULT_MAX_JSON_BYTES = 64 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
LOG_FORMATS = ("text", "json")
MIN_WRITE_TOKEN_LENGTH = 16

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_MEDIA_PREFIX_SEGMENT = re.compile(r"^(?!\.+$)[A-Za-z0-9._-]+$")
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9-]{1,63})*$")


#: Fields that hold secrets: never in a repr, a log line or an error message.
_SECRET_FIELDS = ("write_token", "write_token_also_accepted")


class SettingsError(Exception):
    """One or more RANKER_* variables are missing or invalid; ``problems`` has one line for each."""

    def __init__(self, problems: List[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    bucket: str
    aws_region: str
    write_token: str
    write_token_also_accepted: Optional[str] = None
    s3_endpoint_url: Optional[str] = None
    db_path: str = DEFAULT_DB_PATH
    dynamodb_table: Optional[str] = None
    dynamodb_endpoint_url: Optional[str] = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    #: None: no metrics served (RANKER_METRICS_PORT=0).
    metrics_port: Optional[int] = DEFAULT_METRICS_PORT
    workers: int = 1
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    media_base_url: Optional[str] = None
    media_prefix: str = DEFAULT_MEDIA_PREFIX
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    log_format: str = "text"
    cors_origins: Tuple[str, ...] = ()

    @property
    def storage_backend(self) -> str:
        return "dynamodb" if self.dynamodb_table else "sqlite"

    @property
    def accepted_write_tokens(self) -> Tuple[str, ...]:
        """The tokens that authorise a write: RANKER_WRITE_TOKEN, and the other one during a rotation."""
        if self.write_token_also_accepted is None:
            return (self.write_token,)
        return (self.write_token, self.write_token_also_accepted)

    def __repr__(self) -> str:  # never print a token into a log; only whether a second one is set
        fields = {k: v for k, v in self.__dict__.items() if k not in _SECRET_FIELDS}
        second = "<hidden>" if self.write_token_also_accepted is not None else "None"
        return "Settings({}, write_token=<hidden>, write_token_also_accepted={})".format(
            ", ".join(f"{k}={v!r}" for k, v in fields.items()), second
        )

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "Settings":
        """Read and validate every variable, then report all problems at once."""
        reader = _Reader(os.environ if environ is None else environ)
        values: Dict[str, object] = {
            "bucket": reader.required("RANKER_BUCKET", _bucket, "the S3 bucket for shop photos"),
            "aws_region": reader.required("RANKER_AWS_REGION", _region, "the AWS region, e.g. eu-west-1"),
            "write_token": reader.required(
                "RANKER_WRITE_TOKEN", _write_token, "the bearer token that authorises writes"
            ),
            "write_token_also_accepted": reader.optional("RANKER_WRITE_TOKEN_ALSO_ACCEPTED", _write_token),
            "s3_endpoint_url": reader.optional("RANKER_S3_ENDPOINT_URL", _url),
            "dynamodb_table": reader.optional("RANKER_DYNAMODB_TABLE", _table),
            "dynamodb_endpoint_url": reader.optional("RANKER_DYNAMODB_ENDPOINT_URL", _url),
            "host": reader.optional("RANKER_HOST", _host, DEFAULT_HOST),
            "port": reader.optional("RANKER_PORT", _port, DEFAULT_PORT),
            "metrics_port": reader.optional("RANKER_METRICS_PORT", _metrics_port, DEFAULT_METRICS_PORT),
            "workers": reader.optional("RANKER_WORKERS", _workers, 1),
            "max_upload_bytes": reader.optional(
                "RANKER_MAX_UPLOAD_BYTES", _positive_int, DEFAULT_MAX_UPLOAD_BYTES
            ),
            "media_base_url": reader.optional("RANKER_MEDIA_BASE_URL", _url),
            "media_prefix": reader.optional("RANKER_MEDIA_PREFIX", _media_prefix, DEFAULT_MEDIA_PREFIX),
            "max_json_bytes": reader.optional("RANKER_MAX_JSON_BYTES", _positive_int, DEFAULT_MAX_JSON_BYTES),
            "max_image_pixels": reader.optional(
                "RANKER_MAX_IMAGE_PIXELS", _positive_int, DEFAULT_MAX_IMAGE_PIXELS
            ),
            "log_format": reader.optional("RANKER_LOG_FORMAT", _log_format, "text"),
            "cors_origins": reader.optional("RANKER_CORS_ORIGINS", _origins, ()),
        }
        if values["write_token_also_accepted"] is not None and (
            values["write_token_also_accepted"] == values["write_token"]
        ):
            reader.fail(
                "RANKER_WRITE_TOKEN_ALSO_ACCEPTED",
                "is the same as RANKER_WRITE_TOKEN; during a rotation set it to the other token "
                "(the old one or the new one), else unset it",
            )
        if values["metrics_port"] is not None and values["metrics_port"] == values["port"]:
            if reader.environ.get("RANKER_METRICS_PORT", "").strip():
                reader.fail(
                    "RANKER_METRICS_PORT",
                    f"is {values['port']}, the same as RANKER_PORT; the metrics need a port of their own "
                    "(or 0 for none)",
                )
            else:
                reader.fail(
                    "RANKER_METRICS_PORT",
                    f"is not set and its default {DEFAULT_METRICS_PORT} is RANKER_PORT; set it to another "
                    "port for the metrics (or 0 for none)",
                )
        if values["dynamodb_table"] is None:
            values["db_path"] = reader.optional("RANKER_DB_PATH", _db_path)
            if values["db_path"] is None and "RANKER_DB_PATH" not in " ".join(reader.problems):
                if os.path.isdir(os.path.dirname(DEFAULT_DB_PATH)):
                    values["db_path"] = DEFAULT_DB_PATH
                else:
                    reader.fail(
                        "RANKER_DB_PATH",
                        f"is not set and the directory of its default {DEFAULT_DB_PATH} does not exist; "
                        "create that directory or set RANKER_DB_PATH",
                    )
            if values["dynamodb_endpoint_url"] is not None:
                reader.fail(
                    "RANKER_DYNAMODB_ENDPOINT_URL",
                    "is set but RANKER_DYNAMODB_TABLE is not; set the table too, or unset the endpoint",
                )
        if reader.problems:
            raise SettingsError(reader.problems)
        return cls(**values)  # type: ignore[arg-type]


class _Invalid(ValueError):
    pass


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: List[str] = []

    def fail(self, name: str, message: str) -> None:
        self.problems.append(f"{name} {message}")

    def required(self, name: str, parse, meaning: str):
        raw = self.environ.get(name, "").strip()
        if not raw:
            self.fail(name, f"is required but not set ({meaning})")
            return None
        return self._parse(name, raw, parse)

    def optional(self, name: str, parse, default=None):
        raw = self.environ.get(name, "").strip()
        if not raw:
            return default
        return self._parse(name, raw, parse)

    def _parse(self, name: str, raw: str, parse):
        try:
            return parse(raw)
        except _Invalid as error:
            self.fail(name, f"is invalid: {error}")
            return None


def _bucket(raw: str) -> str:
    if not _BUCKET_NAME.match(raw) or ".." in raw:
        raise _Invalid(f"{raw!r} is not an S3 bucket name (3-63 lowercase letters, digits, '.' or '-')")
    return raw


def _region(raw: str) -> str:
    if not _REGION.match(raw):
        raise _Invalid(f"{raw!r} is not an AWS region name such as eu-west-1")
    return raw


def _write_token(raw: str) -> str:
    if len(raw) < MIN_WRITE_TOKEN_LENGTH:
        raise _Invalid(f"it must be at least {MIN_WRITE_TOKEN_LENGTH} characters long (got {len(raw)})")
    if any(ch.isspace() or not ch.isprintable() or ord(ch) > 126 for ch in raw):
        raise _Invalid("it must be printable ASCII without spaces (it travels in an HTTP header)")
    return raw


def _url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _Invalid(f"{raw!r} is not an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise _Invalid(f"{raw!r} must not have a query string or fragment")
    return raw.rstrip("/")


def _media_prefix(raw: str) -> str:
    segments = raw.split("/")
    if (
        not raw.endswith("/")
        or len(raw) > 200
        or not all(segment and _MEDIA_PREFIX_SEGMENT.match(segment) for segment in segments[:-1])
    ):
        raise _Invalid(
            f"{raw!r} is not a key prefix such as media/ (segments of letters, digits, '.', '_' or '-' "
            "that are not all dots, each followed by '/')"
        )
    return raw


def _table(raw: str) -> str:
    if not _TABLE_NAME.match(raw):
        raise _Invalid(f"{raw!r} is not a DynamoDB table name (3-255 of letters, digits, '_', '-', '.')")
    return raw


def _host(raw: str) -> str:
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        if not _HOSTNAME.match(raw):
            raise _Invalid(f"{raw!r} is neither an IP address nor a host name") from None
    return raw


def _integer(raw: str) -> int:
    try:
        return int(raw, 10)
    except ValueError:
        raise _Invalid(f"{raw!r} is not a whole number") from None


def _port(raw: str) -> int:
    port = _integer(raw)
    if not 1 <= port <= 65535:
        raise _Invalid(f"{port} is not a TCP port (1-65535)")
    return port


def _metrics_port(raw: str) -> Optional[int]:
    port = _integer(raw)
    if port == 0:
        return None
    if not 1 <= port <= 65535:
        raise _Invalid(f"{port} is not a TCP port (1-65535), nor 0 for no metrics")
    return port


def _workers(raw: str) -> int:
    workers = _integer(raw)
    if not 1 <= workers <= MAX_WORKERS:
        raise _Invalid(f"{workers} is not a number of worker processes from 1 to {MAX_WORKERS}")
    return workers


def _positive_int(raw: str) -> int:
    value = _integer(raw)
    if value < 1:
        raise _Invalid(f"{value} must be a positive number of bytes")
    return value


def _db_path(raw: str) -> str:
    path = os.path.abspath(raw)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise _Invalid(f"its directory {directory} does not exist (create it, or point it elsewhere)")
    return path


def _log_format(raw: str) -> str:
    if raw not in LOG_FORMATS:
        raise _Invalid(f"{raw!r} is not one of {', '.join(LOG_FORMATS)}")
    return raw


def _origins(raw: str) -> Tuple[str, ...]:
    origins = []
    for origin in (part.strip() for part in raw.split(",")):
        parts = urlsplit(origin)
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or origin != f"{parts.scheme}://{parts.netloc}"
        ):
            raise _Invalid(f"{origin!r} is not an origin such as https://app.example.com (no path, no '*')")
        origins.append(origin)
    return tuple(origins)
