"""DynamoDB point-in-time recovery in the unkind embedded AWS restores the items as they were at that time.

moto alone copies the source table's items as they are now (test_embedded_aws_realism.py checks that it still
does without the unkind mode). These tests start their own unkind server, with no delay before
UpdateContinuousBackups. botocore sends RestoreDateTime in whole seconds, so each restore point is a whole
second that passed between two writes (``next_second``).
"""

from __future__ import annotations

import json
import math
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from conftest import embedded_aws_server
from moto.dynamodb.models import dynamodb_backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.test import Client

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "sandbox"))
from dynamodb_point_in_time import PointInTimeRecovery  # noqa: E402

ACCOUNT = "123456789012"
ENABLE = {"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}}
DISABLE = {"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": False}}
INVALID_TIME = (
    "InvalidRestoreTimeException",
    400,
    "An invalid restore time was specified. RestoreDateTime must be between EarliestRestorableDateTime and"
    " LatestRestorableDateTime.",
)


@pytest.fixture(scope="module")
def unkind_server():
    with embedded_aws_server(realism=True, SANDBOX_AWS_REALISM_PITR_DELAY="0") as aws:
        yield aws


@pytest.fixture
def dynamodb(unkind_server):
    """A DynamoDB client of the emptied unkind server."""
    unkind_server.reset()
    return unkind_server.client("dynamodb")


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def create_table(dynamodb, name: str, sort_key: bool = False, **settings) -> None:
    keys = [("pk", "HASH", "S")] + ([("sk", "RANGE", "N")] if sort_key else [])
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": a, "KeyType": k} for a, k, _ in keys],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, _, t in keys],
        BillingMode="PAY_PER_REQUEST",
        **settings,
    )


def items(dynamodb, table: str) -> dict[tuple, dict]:
    """The table's items by key: (pk,) or (pk, sk)."""
    found = dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
    return {(i["pk"]["S"], int(i["sk"]["N"])) if "sk" in i else (i["pk"]["S"],): i for i in found}


def next_second() -> datetime:
    """The next whole second, once it has passed: the writes before it and after it fall on its two sides."""
    now = time.time()
    boundary = math.floor(now) + 1
    time.sleep(boundary - now + 0.05)
    return datetime.fromtimestamp(boundary, UTC)


def restore(dynamodb, source: str, target: str, **when) -> dict:
    return dynamodb.restore_table_to_point_in_time(SourceTableName=source, TargetTableName=target, **when)[
        "TableDescription"
    ]


def test_a_restore_gives_the_items_as_they_were_at_that_time(dynamodb):
    create_table(dynamodb, "ratings", SSESpecification={"Enabled": True, "SSEType": "KMS"})
    dynamodb.put_item(TableName="ratings", Item={"pk": {"S": "A"}, "stars": {"N": "3"}})
    dynamodb.update_continuous_backups(TableName="ratings", **ENABLE)
    dynamodb.put_item(TableName="ratings", Item={"pk": {"S": "B"}, "stars": {"N": "4"}})
    t1 = next_second()
    dynamodb.update_item(
        TableName="ratings",
        Key={"pk": {"S": "A"}},
        UpdateExpression="SET stars = :stars",
        ExpressionAttributeValues={":stars": {"N": "5"}},
    )
    dynamodb.delete_item(TableName="ratings", Key={"pk": {"S": "B"}})
    dynamodb.put_item(TableName="ratings", Item={"pk": {"S": "C"}, "stars": {"N": "1"}})

    window = dynamodb.describe_continuous_backups(TableName="ratings")["ContinuousBackupsDescription"]
    recovery = window["PointInTimeRecoveryDescription"]
    assert recovery["PointInTimeRecoveryStatus"] == "ENABLED"
    assert recovery["EarliestRestorableDateTime"] <= t1 <= recovery["LatestRestorableDateTime"]
    assert datetime.now(UTC) - recovery["LatestRestorableDateTime"] < timedelta(seconds=1)  # now, not 5 min ago

    restored = restore(dynamodb, "ratings", "ratings-t1", RestoreDateTime=t1)
    assert items(dynamodb, "ratings-t1") == {
        ("A",): {"pk": {"S": "A"}, "stars": {"N": "3"}},
        ("B",): {"pk": {"S": "B"}, "stars": {"N": "4"}},
    }
    assert restored["ItemCount"] == 2
    assert restored["RestoreSummary"]["RestoreDateTime"] == t1
    assert restored["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert restored["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert restored["SSEDescription"]["Status"] == "ENABLED"  # AWS copies the encryption settings
    described = dynamodb.describe_table(TableName="ratings-t1")["Table"]
    assert described["ItemCount"] == 2
    assert described["RestoreSummary"]["RestoreDateTime"] == t1
    # AWS leaves point-in-time recovery and tags to be set on the restored table
    recovery_of_restored = dynamodb.describe_continuous_backups(TableName="ratings-t1")["ContinuousBackupsDescription"]
    assert recovery_of_restored["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "DISABLED"

    latest = restore(dynamodb, "ratings", "ratings-now", UseLatestRestorableTime=True)
    assert items(dynamodb, "ratings-now") == items(dynamodb, "ratings")
    assert set(items(dynamodb, "ratings-now")) == {("A",), ("C",)}
    assert latest["ItemCount"] == 2

    arn = dynamodb.describe_table(TableName="ratings")["Table"]["TableArn"]  # moto alone knows only the name
    dynamodb.restore_table_to_point_in_time(SourceTableArn=arn, TargetTableName="ratings-by-arn", RestoreDateTime=t1)
    assert items(dynamodb, "ratings-by-arn") == items(dynamodb, "ratings-t1")


def test_a_time_outside_the_window_is_refused_and_creates_no_table(dynamodb):
    create_table(dynamodb, "ratings")
    dynamodb.put_item(TableName="ratings", Item={"pk": {"S": "A"}})
    with pytest.raises(ClientError) as excinfo:
        restore(dynamodb, "ratings", "ratings-copy", UseLatestRestorableTime=True)
    assert error_of(excinfo) == (
        "PointInTimeRecoveryUnavailableException",
        400,
        "Point in time recovery is not enabled for table 'ratings'",
    )

    before = next_second()
    enabled = dynamodb.update_continuous_backups(TableName="ratings", **ENABLE)["ContinuousBackupsDescription"]
    earliest = enabled["PointInTimeRecoveryDescription"]["EarliestRestorableDateTime"]
    assert before < earliest
    for when in (before, datetime.now(UTC) + timedelta(hours=1)):
        with pytest.raises(ClientError) as excinfo:
            restore(dynamodb, "ratings", "ratings-copy", RestoreDateTime=when)
        assert error_of(excinfo) == INVALID_TIME
    for when in ({}, {"RestoreDateTime": next_second(), "UseLatestRestorableTime": True}):
        with pytest.raises(ClientError) as excinfo:
            restore(dynamodb, "ratings", "ratings-copy", **when)
        assert error_of(excinfo)[:2] == ("ValidationException", 400)
    assert dynamodb.list_tables()["TableNames"] == ["ratings"]

    # Disabling forgets the history: enabled again, the window starts anew.
    within = next_second()
    restore(dynamodb, "ratings", "ratings-copy", RestoreDateTime=within)
    dynamodb.update_continuous_backups(TableName="ratings", **DISABLE)
    with pytest.raises(ClientError) as excinfo:
        restore(dynamodb, "ratings", "ratings-again", RestoreDateTime=within)
    assert error_of(excinfo)[0] == "PointInTimeRecoveryUnavailableException"
    dynamodb.update_continuous_backups(TableName="ratings", **ENABLE)
    with pytest.raises(ClientError) as excinfo:
        restore(dynamodb, "ratings", "ratings-again", RestoreDateTime=within)
    assert error_of(excinfo) == INVALID_TIME


def test_batch_and_transaction_writes_are_journaled_and_failed_writes_are_not(dynamodb):
    create_table(dynamodb, "visits", sort_key=True)
    dynamodb.update_continuous_backups(TableName="visits", **ENABLE)
    dynamodb.batch_write_item(
        RequestItems={
            "visits": [
                {"PutRequest": {"Item": {"pk": {"S": "p"}, "sk": {"N": "1"}, "n": {"N": "10"}}}},
                {"PutRequest": {"Item": {"pk": {"S": "p"}, "sk": {"N": "2"}, "n": {"N": "20"}}}},
                {"PutRequest": {"Item": {"pk": {"S": "q"}, "sk": {"N": "1"}, "n": {"N": "30"}}}},
            ]
        }
    )
    t1 = next_second()
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "visits", "Item": {"pk": {"S": "p"}, "sk": {"N": "3"}}}},
            {
                "Update": {
                    "TableName": "visits",
                    "Key": {"pk": {"S": "p"}, "sk": {"N": "1.0"}},  # the number 1, as DynamoDB compares keys
                    "UpdateExpression": "SET n = :n",
                    "ExpressionAttributeValues": {":n": {"N": "11"}},
                }
            },
            {"Delete": {"TableName": "visits", "Key": {"pk": {"S": "q"}, "sk": {"N": "1"}}}},
        ]
    )
    with pytest.raises(ClientError) as excinfo:
        dynamodb.put_item(
            TableName="visits",
            Item={"pk": {"S": "p"}, "sk": {"N": "2"}, "n": {"N": "999"}},
            ConditionExpression="attribute_not_exists(pk)",
        )
    assert error_of(excinfo)[0] == "ConditionalCheckFailedException"
    with pytest.raises(ClientError) as excinfo:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "visits", "Item": {"pk": {"S": "p"}, "sk": {"N": "9"}}}},
                {
                    "ConditionCheck": {
                        "TableName": "visits",
                        "Key": {"pk": {"S": "q"}, "sk": {"N": "1"}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
            ]
        )
    assert error_of(excinfo)[0] == "TransactionCanceledException"
    t2 = next_second()
    dynamodb.batch_write_item(
        RequestItems={"visits": [{"DeleteRequest": {"Key": {"pk": {"S": "p"}, "sk": {"N": "2"}}}}]}
    )

    restore(dynamodb, "visits", "visits-t1", RestoreDateTime=t1)
    assert {k: i["n"]["N"] for k, i in items(dynamodb, "visits-t1").items()} == {
        ("p", 1): "10",
        ("p", 2): "20",
        ("q", 1): "30",
    }
    restore(dynamodb, "visits", "visits-t2", RestoreDateTime=t2)
    assert {k: i.get("n", {}).get("N") for k, i in items(dynamodb, "visits-t2").items()} == {
        ("p", 1): "11",
        ("p", 2): "20",  # not the 999 of the failed conditional put
        ("p", 3): None,  # the cancelled transaction's p/9 is not there
    }
    restore(dynamodb, "visits", "visits-now", UseLatestRestorableTime=True)
    assert set(items(dynamodb, "visits-now")) == {("p", 1), ("p", 3)}


def test_partiql_writes_are_journaled(dynamodb):
    create_table(dynamodb, "ratings")
    dynamodb.update_continuous_backups(TableName="ratings", **ENABLE)
    dynamodb.execute_statement(Statement="INSERT INTO ratings VALUE {'pk': 'A', 'stars': 3}")
    dynamodb.batch_execute_statement(Statements=[{"Statement": "INSERT INTO ratings VALUE {'pk': 'B', 'stars': 4}"}])
    t1 = next_second()
    dynamodb.execute_statement(Statement="UPDATE ratings SET stars = ? WHERE pk = 'A'", Parameters=[{"N": "5"}])
    dynamodb.execute_statement(Statement="DELETE FROM ratings WHERE pk = 'B'")
    dynamodb.execute_transaction(
        TransactStatements=[{"Statement": "INSERT INTO ratings VALUE {'pk': 'C', 'stars': 2}"}]
    )

    restore(dynamodb, "ratings", "ratings-t1", RestoreDateTime=t1)
    assert {k: i["stars"]["N"] for k, i in items(dynamodb, "ratings-t1").items()} == {("A",): "3", ("B",): "4"}
    restore(dynamodb, "ratings", "ratings-now", UseLatestRestorableTime=True)
    assert {k: i["stars"]["N"] for k, i in items(dynamodb, "ratings-now").items()} == {("A",): "5", ("C",): "2"}


def test_a_reset_or_a_deleted_table_forgets_the_history(unkind_server, dynamodb):
    create_table(dynamodb, "ratings")
    dynamodb.update_continuous_backups(TableName="ratings", **ENABLE)
    dynamodb.put_item(TableName="ratings", Item={"pk": {"S": "A"}})
    t1 = next_second()

    for forget in (lambda: dynamodb.delete_table(TableName="ratings"), unkind_server.reset):
        forget()
        create_table(dynamodb, "ratings")
        dynamodb.update_continuous_backups(TableName="ratings", **ENABLE)
        with pytest.raises(ClientError) as excinfo:
            restore(dynamodb, "ratings", "ratings-t1", RestoreDateTime=t1)
        assert error_of(excinfo) == INVALID_TIME
        restore(dynamodb, "ratings", "ratings-now", UseLatestRestorableTime=True)
        assert items(dynamodb, "ratings-now") == {}
        dynamodb.delete_table(TableName="ratings-now")


def test_a_restore_the_journal_cannot_vouch_for_is_refused():
    """In this process, around moto's own app: items written past the layer (no API call does that), or a
    recovery enabled past it, make the journal unreliable; the restore is refused, not answered wrongly."""
    region = "ap-southeast-2"  # moto's state in this process: a region of its own
    backend = dynamodb_backends[ACCOUNT][region]
    client = Client(PointInTimeRecovery(DomainDispatcherApplication(create_backend_app)))

    def call(operation: str, **request) -> tuple[int, dict]:
        scope = f"testing/20260101/{region}/dynamodb/aws4_request"
        response = client.post(
            "/",
            data=json.dumps(request),
            headers={
                "X-Amz-Target": f"DynamoDB_20120810.{operation}",
                "Content-Type": "application/x-amz-json-1.0",
                "Authorization": f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=0",
            },
        )
        return response.status_code, json.loads(response.get_data())

    def restore_latest(source: str) -> tuple[int, dict]:
        return call(
            "RestoreTableToPointInTime", SourceTableName=source, TargetTableName="copy", UseLatestRestorableTime=True
        )

    table = {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
    }
    try:
        assert call("CreateTable", TableName="ratings", **table)[0] == 200
        assert call("UpdateContinuousBackups", TableName="ratings", **ENABLE)[0] == 200
        assert call("PutItem", TableName="ratings", Item={"pk": {"S": "A"}})[0] == 200
        assert restore_latest("ratings")[0] == 200
        assert call("DeleteTable", TableName="copy")[0] == 200

        backend.put_item("ratings", {"pk": {"S": "unseen"}})
        status, answer = restore_latest("ratings")
        assert (status, answer["__type"].rpartition("#")[2]) == (500, "InternalServerError")
        assert "its items changed in a way the point-in-time journal did not see" in answer["message"]

        assert call("CreateTable", TableName="elsewhere", **table)[0] == 200
        backend.update_continuous_backups("elsewhere", {"PointInTimeRecoveryEnabled": True})
        status, answer = restore_latest("elsewhere")
        assert status == 500
        assert "its point in time recovery was not enabled by UpdateContinuousBackups" in answer["message"]
        assert sorted(backend.tables) == ["elsewhere", "ratings"]
    finally:
        backend.reset()
