"""Point-in-time recovery of the embedded DynamoDB that restores the items as they were, as AWS's does.

moto's RestoreTableToPointInTime copies the source table's items as they are now, whatever RestoreDateTime
says, restores tables that never had point-in-time recovery, and leaves out the source's billing mode and
encryption; its DescribeContinuousBackups keeps the LatestRestorableDateTime of the moment recovery was
enabled. ``PointInTimeRecovery`` wraps moto's WSGI app in the server's own process (the unkind mode puts it
inside ``aws_realism.RealismMiddleware``) and keeps a journal of each table's items (``TableJournal``)
while its point-in-time recovery is enabled:

- UpdateContinuousBackups that enables it records every item as the baseline; that instant, rounded up to
  the millisecond, is the EarliestRestorableDateTime. Disabling it, or DeleteTable, forgets the journal, as
  AWS forgets the history (AWS keeps a deleted table's for a restore by SourceTableArn: not reproduced).
- After every PutItem, UpdateItem, DeleteItem, BatchWriteItem and TransactWriteItems, each item the request
  named is read back from moto and recorded with the time when it changed; after a PartiQL statement
  (ExecuteStatement, BatchExecuteStatement, ExecuteTransaction) the whole table is compared with the
  journal. A write that failed (a condition not met, a cancelled transaction) changed nothing, so nothing
  is recorded. Writes, journal reads and restores take turns (one lock), so the journal's order is moto's.
- RestoreTableToPointInTime (RestoreDateTime, or UseLatestRestorableTime) lets moto create the target
  table, then gives it the source's items as they were at that time (every change up to and including
  it), the source's billing mode (or BillingModeOverride with ProvisionedThroughputOverride) and
  encryption (or SSESpecificationOverride), and answers with that RestoreDateTime and the ItemCount.
  Tags, streams, TTL and point-in-time recovery are not copied (AWS does not copy them either); the
  indexes are the source's (GlobalSecondaryIndexOverride and LocalSecondaryIndexOverride are ignored). A
  SourceTableArn works as well as a SourceTableName (moto reads only the name). Refused as AWS refuses,
  before any table is created: a source without point-in-time recovery (PointInTimeRecoveryUnavailableException),
  a time outside [EarliestRestorableDateTime, LatestRestorableDateTime] (InvalidRestoreTimeException);
  neither or both of RestoreDateTime and UseLatestRestorableTime: ValidationException (our message).
- DescribeContinuousBackups, and the answer of UpdateContinuousBackups, give EarliestRestorableDateTime
  (the later of the baseline and RecoveryPeriodInDays ago) and LatestRestorableDateTime: now. AWS's is
  about five minutes before now; here a test need not wait.

Times are UTC, in epoch seconds with sub-second precision. botocore sends RestoreDateTime in whole seconds
(it drops the fraction), so the state between two writes of one second cannot be asked for through boto3;
AWS restores "to the second" too.

Rather than restore wrong items, a restore is refused with HTTP 500 InternalServerError saying why when the
journal cannot be trusted: moto reports point-in-time recovery enabled for a table with no journal (it was
not enabled through UpdateContinuousBackups), or the table's items differ from the journal's latest images
(a write this layer did not see); botocore retries a 500 (up to ten attempts for DynamoDB) before it gives
up. ``POST /moto-api/reset`` forgets every journal.
"""

from __future__ import annotations

import copy
import io
import json
import math
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.exceptions import JsonRESTError
from moto.dynamodb.exceptions import PointInTimeRecoveryUnavailable
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table
from wsgi_layers import After, credential_scope, pass_through, read_body

Response = tuple[int, list[tuple[str, str]], bytes]
# An item's key as moto holds it (hash and range value), so that "1" and "1.0" are one number key, as in moto.
ItemKey = tuple[DynamoType, DynamoType | None]
Image = dict[str, Any]  # an item's attributes in DynamoDB JSON
INVALID_RESTORE_TIME = (
    "An invalid restore time was specified. RestoreDateTime must be between EarliestRestorableDateTime and"
    " LatestRestorableDateTime."
)
SECONDS_PER_DAY = 86400
LATEST = "UseLatestRestorableTime"


def dynamodb_error(code: str, message: str, status: int = 400) -> Response:
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message})
    headers = [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-RequestId", str(uuid.uuid4()))]
    return status, headers, body.encode()


def _millisecond_up(seconds: float) -> float:
    return math.ceil(seconds * 1000) / 1000


def _millisecond_down(seconds: float) -> float:
    return math.floor(seconds * 1000) / 1000


# --- state: a table's items over time -------------------------------------------------------------------


@dataclass
class TableJournal:
    """A table's items since its point-in-time recovery was enabled: the baseline, then every change in order."""

    enabled_at: float  # epoch seconds: the baseline's instant, rounded up to the millisecond
    baseline: dict[ItemKey, Image]
    changes: list[tuple[float, ItemKey, Image | None]] = field(default_factory=list)  # None: deleted
    latest: dict[ItemKey, Image] = field(init=False)

    def __post_init__(self) -> None:
        self.latest = dict(self.baseline)

    def record(self, when: float, key: ItemKey, image: Image | None) -> None:
        """Record an item's image (None: no item) at `when`, if it changed."""
        if self.latest.get(key) == image:
            return
        self.changes.append((when, key, image))
        if image is None:
            self.latest.pop(key, None)
        else:
            self.latest[key] = image

    def record_table(self, when: float, images: dict[ItemKey, Image]) -> None:
        """Record every difference between the journal's latest images and the table's `images`."""
        for key in list(self.latest.keys() | images.keys()):
            self.record(when, key, images.get(key))

    def items_at(self, when: float) -> dict[ItemKey, Image]:
        """The items as they were at `when`: the baseline and every change up to and including `when`."""
        items = dict(self.baseline)
        for changed, key, image in self.changes:
            if changed > when:
                continue
            if image is None:
                items.pop(key, None)
            else:
                items[key] = image
        return items

    def window(self, now: float, recovery_period_days: float) -> tuple[float, float]:
        """The earliest and latest restorable times: from the baseline (or the recovery period ago, if later)
        to now, in milliseconds that are inside it (right after enabling, now may be before the earliest)."""
        earliest = _millisecond_up(max(self.enabled_at, now - recovery_period_days * SECONDS_PER_DAY))
        return earliest, max(earliest, _millisecond_down(now))


def key_of(table: Table, attributes: Any) -> ItemKey | None:
    """The key of the item these attributes (an item, or a Key) name in the table; None if they name none."""
    try:
        hash_key = DynamoType(attributes[table.hash_key_attr])
        range_key = DynamoType(attributes[table.range_key_attr]) if table.range_key_attr else None
    except (AttributeError, IndexError, KeyError, TypeError):
        return None  # moto refuses the request: nothing was written
    return hash_key, range_key


def image_of(item: Item | None) -> Image | None:
    return copy.deepcopy(item.to_json()["Attributes"]) if item is not None else None


def item_images(table: Table) -> dict[ItemKey, Image]:
    return {(item.hash_key, item.range_key): image_of(item) for item in table.all_items()}


def find_table(backend: DynamoDBBackend, name_or_arn: Any) -> Table | None:
    if not isinstance(name_or_arn, str):
        return None
    try:
        return backend.get_table(name_or_arn)
    except JsonRESTError:
        return None


def recovery_description(table: Table) -> dict[str, Any]:
    return table.continuous_backups["PointInTimeRecoveryDescription"]


def written_items(operation: str, request: dict[str, Any]) -> list[tuple[Any, Any]]:
    """(table name or ARN, the item or key) of every item a key-addressed write request names."""
    if operation == "PutItem":
        return [(request.get("TableName"), request.get("Item"))]
    if operation in ("UpdateItem", "DeleteItem"):
        return [(request.get("TableName"), request.get("Key"))]
    written = []
    if operation == "BatchWriteItem":
        for table, requests in (request.get("RequestItems") or {}).items():
            for write in requests:
                if "PutRequest" in write:
                    written.append((table, write["PutRequest"].get("Item")))
                elif "DeleteRequest" in write:
                    written.append((table, write["DeleteRequest"].get("Key")))
    elif operation == "TransactWriteItems":
        for entry in request.get("TransactItems") or []:
            for kind, action in entry.items():
                if kind == "Put":
                    written.append((action.get("TableName"), action.get("Item")))
                elif kind in ("Update", "Delete"):
                    written.append((action.get("TableName"), action.get("Key")))
    return written


def requested_time(request: dict[str, Any]) -> float | str | None:
    """The time a RestoreTableToPointInTime request asks for: epoch seconds, or LATEST; None when it asks for
    neither or both, or the time is unreadable."""
    latest = request.get("UseLatestRestorableTime") is True
    asked = request.get("RestoreDateTime")
    if latest == (asked is not None):
        return None
    if latest:
        return LATEST
    if isinstance(asked, int | float) and not isinstance(asked, bool):
        return float(asked)  # the JSON protocol's timestamp: epoch seconds
    if isinstance(asked, str):
        try:
            return float(asked)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(asked.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None


# --- HTTP face ----------------------------------------------------------------------------------------------


class PointInTimeRecovery:
    """Wraps moto's WSGI app; the journals are guarded by ``lock``, held across moto's answer to each request
    that writes items or reads the journal (the server is threaded)."""

    KEY_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
    STATEMENTS = ("ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction")

    def __init__(self, app: Callable, account: str = DEFAULT_ACCOUNT_ID):
        self.app = app
        self.account = account
        self.lock = threading.Lock()
        self.journals: dict[tuple[str, str], TableJournal] = {}  # (region, table name)
        handlers: dict[str, Callable[[str, dict[str, Any], str, dict[str, Any]], Response | After | None]] = {
            "UpdateContinuousBackups": self._update_continuous_backups,
            "DescribeContinuousBackups": self._describe_continuous_backups,
            "DeleteTable": self._delete_table,
            "RestoreTableToPointInTime": self._restore,
        }
        handlers.update(dict.fromkeys(self.KEY_WRITES, self._key_write))
        handlers.update(dict.fromkeys(self.STATEMENTS, self._statement))
        self.handlers = handlers

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/moto-api/reset" and environ.get("REQUEST_METHOD") == "POST":
            with self.lock:
                self.journals.clear()
                return self._answer(environ, start_response, None)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        handler = self.handlers.get(target.rpartition(".")[2]) if target.startswith("DynamoDB_") else None
        if handler is None:
            return self.app(environ, start_response)
        try:
            request = json.loads(read_body(environ) or b"{}")
        except ValueError:
            return self.app(environ, start_response)  # moto answers SerializationException
        if not isinstance(request, dict):
            return self.app(environ, start_response)
        region, _ = credential_scope(environ)
        with self.lock:
            decision = handler(target.rpartition(".")[2], request, region, environ)
            if isinstance(decision, tuple):
                return self._respond(start_response, decision)
            return self._answer(environ, start_response, decision)

    def _backend(self, region: str) -> DynamoDBBackend:
        return dynamodb_backends[self.account][region]

    def _answer(self, environ: dict[str, Any], start_response: Callable, after: After | None) -> list[bytes]:
        """moto's answer, seen (and maybe replaced) by ``after``, with its CRC32 header made to match the body:
        botocore checks DynamoDB's x-amz-crc32 and retries on a mismatch."""
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            captured.update(status=status, headers=headers)

        body = b"".join(pass_through(self.app, environ, capture, after or (lambda _status, _body: None)))
        headers = captured["headers"]
        if any(name.lower() == "x-amz-crc32" for name, _ in headers):
            headers = [(name, value) for name, value in headers if name.lower() != "x-amz-crc32"]
            headers.append(("x-amz-crc32", str(zlib.crc32(body))))
        start_response(captured["status"], headers)
        return [body]

    @staticmethod
    def _respond(start_response: Callable, response: Response) -> list[bytes]:
        status, headers, body = response
        reason = {400: "Bad Request", 500: "Internal Server Error"}.get(status, "")
        start_response(f"{status} {reason}", [*headers, ("Content-Length", str(len(body)))])
        return [body]

    # --- writes

    def _key_write(self, operation: str, request: dict[str, Any], region: str, environ: dict[str, Any]) -> After | None:
        if not any(journal_region == region for journal_region, _ in self.journals):
            return None
        backend = self._backend(region)
        try:
            written: list[tuple[Any, Any]] | None = written_items(operation, request)
        except (AttributeError, TypeError):
            written = None  # a request moto will refuse; compare whole tables all the same

        def after(_status: int, _body: bytes) -> None:
            # Whatever moto answered: a write that failed changed nothing, and an image unchanged is not recorded.
            now = time.time()
            if written is None:
                self._record_tables(region, now)
                return
            for table_reference, attributes in written:
                table = find_table(backend, table_reference)
                journal = self.journals.get((region, table.name)) if table is not None else None
                key = key_of(table, attributes) if journal is not None else None
                if key is not None:
                    journal.record(now, key, image_of(table.get_item(*key)))

        return after

    def _statement(self, operation: str, request: dict[str, Any], region: str, environ: dict[str, Any]) -> After | None:
        if not any(journal_region == region for journal_region, _ in self.journals):
            return None
        return lambda _status, _body: self._record_tables(region, time.time())

    def _record_tables(self, region: str, now: float) -> None:
        backend = self._backend(region)
        for (journal_region, name), journal in self.journals.items():
            table = backend.tables.get(name) if journal_region == region else None
            if table is not None:
                journal.record_table(now, item_images(table))

    # --- the recovery settings

    def _update_continuous_backups(
        self, operation: str, request: dict[str, Any], region: str, environ: dict[str, Any]
    ) -> After:
        backend = self._backend(region)

        def after(status: int, body: bytes) -> bytes | None:
            table = find_table(backend, request.get("TableName")) if status == 200 else None
            if table is None:
                return None
            if recovery_description(table)["PointInTimeRecoveryStatus"] == "ENABLED":
                if (region, table.name) not in self.journals:
                    self.journals[region, table.name] = TableJournal(
                        enabled_at=_millisecond_up(time.time()), baseline=item_images(table)
                    )
            else:
                self.journals.pop((region, table.name), None)
            return self._with_restorable_times(body, table, region)

        return after

    def _describe_continuous_backups(
        self, operation: str, request: dict[str, Any], region: str, environ: dict[str, Any]
    ) -> After:
        backend = self._backend(region)

        def after(status: int, body: bytes) -> bytes | None:
            table = find_table(backend, request.get("TableName")) if status == 200 else None
            return self._with_restorable_times(body, table, region) if table is not None else None

        return after

    def _with_restorable_times(self, body: bytes, table: Table, region: str) -> bytes | None:
        journal = self.journals.get((region, table.name))
        if journal is None:
            return None
        document = json.loads(body)
        description = document["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
        window = journal.window(time.time(), description.get("RecoveryPeriodInDays", 35))
        description["EarliestRestorableDateTime"], description["LatestRestorableDateTime"] = window
        return json.dumps(document).encode()

    def _delete_table(
        self, operation: str, request: dict[str, Any], region: str, environ: dict[str, Any]
    ) -> After | None:
        table = find_table(self._backend(region), request.get("TableName"))
        if table is None or (region, table.name) not in self.journals:
            return None

        def after(status: int, _body: bytes) -> None:
            if status == 200:
                self.journals.pop((region, table.name), None)

        return after

    # --- the restore

    def _restore(
        self, operation: str, request: dict[str, Any], region: str, environ: dict[str, Any]
    ) -> Response | After | None:
        asked = requested_time(request)
        if asked is None:
            return dynamodb_error(
                "ValidationException", "Specify exactly one of RestoreDateTime and UseLatestRestorableTime=true."
            )
        backend = self._backend(region)
        source = find_table(backend, request.get("SourceTableName") or request.get("SourceTableArn"))
        target_name = request.get("TargetTableName")
        if source is None or find_table(backend, target_name) is not None:
            return None  # moto answers SourceTableNotFoundException or TableAlreadyExistsException
        if not request.get("SourceTableName"):
            request["SourceTableName"] = source.name  # moto finds the source by name only
            body = json.dumps(request).encode()
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))

        description = recovery_description(source)
        if description["PointInTimeRecoveryStatus"] != "ENABLED":
            error = PointInTimeRecoveryUnavailable(source.name)
            return dynamodb_error(error.relative_error_type, error.message)
        journal = self.journals.get((region, source.name))
        if journal is None:
            return self._cannot_restore(source, "its point in time recovery was not enabled by UpdateContinuousBackups")
        if journal.latest != item_images(source):
            return self._cannot_restore(source, "its items changed in a way the point-in-time journal did not see")
        now = time.time()
        earliest, latest = journal.window(now, description.get("RecoveryPeriodInDays", 35))
        latest = max(latest, now)  # this very instant, not only its millisecond
        when = latest if asked == LATEST else float(asked)
        if not earliest <= when <= latest:
            return dynamodb_error("InvalidRestoreTimeException", INVALID_RESTORE_TIME)
        items = journal.items_at(when)

        def after(status: int, body: bytes) -> bytes | None:
            target = find_table(backend, target_name) if status == 200 else None
            if target is None:
                return None
            self._restored(target, source, items, request, when)
            document = json.loads(body)
            answered = document["TableDescription"]
            restored = target.describe()["TableDescription"]
            for name in ("ItemCount", "BillingModeSummary", "ProvisionedThroughput"):
                answered[name] = restored[name]
            answered.pop("SSEDescription", None)
            if "SSEDescription" in restored:
                answered["SSEDescription"] = restored["SSEDescription"]
            answered.setdefault("RestoreSummary", {})["RestoreDateTime"] = _millisecond_down(when)
            return json.dumps(document).encode()

        return after

    @staticmethod
    def _restored(
        target: Table, source: Table, items: dict[ItemKey, Image], request: dict[str, Any], when: float
    ) -> None:
        """Make moto's restored table (a copy of the source as it is now) the source as it was at `when`."""
        target.items.clear()
        for image in items.values():
            target.put_item(copy.deepcopy(image))
        target.billing_mode = request.get("BillingModeOverride") or source.billing_mode
        throughput = request.get("ProvisionedThroughputOverride")
        if isinstance(throughput, dict):
            target.throughput = {**throughput, "NumberOfDecreasesToday": 0}
        encryption = request.get("SSESpecificationOverride")
        if isinstance(encryption, dict):
            target.sse_specification = dict(encryption)
            if encryption.get("Enabled") and "KMSMasterKeyId" not in encryption:
                target.sse_specification["KMSMasterKeyId"] = target._get_default_encryption_key(
                    target.account_id, target.region_name
                )
        else:
            target.sse_specification = copy.deepcopy(source.sse_specification)
        target.restore_date_time = datetime.fromtimestamp(when, UTC).replace(tzinfo=None)  # moto's: naive UTC

    @staticmethod
    def _cannot_restore(source: Table, reason: str) -> Response:
        return dynamodb_error(
            "InternalServerError",
            f"The embedded AWS cannot restore table {source.name} to a point in time: {reason}, so it would"
            " not restore the items as they were.",
            status=500,
        )
