"""The operator's least-privilege policy (docs/operator-iam-policy.json) is enough to provision and tear down.

Both tests run the playbooks as an IAM user that holds only that policy, against an embedded AWS of their
own with moto's IAM enforcement on. `/moto-api/reset-auth` sets moto's INITIAL_NO_AUTH_ACTION_COUNT: the
next N requests are not checked (they create the user, its policies and its access key with the dummy
keys), every later one is authenticated and authorised against the user's policies (the dummy keys are
refused from then on).

What moto 5.2.5 enforces in server mode, and so what the test proves:

- EC2, IAM, DynamoDB, STS, SNS, CloudWatch and Budgets (query and JSON protocols,
  `BaseResponse.call_action`): every call is checked, so the test proves the policy's ACTIONS for them.
  Moto names the action after the call (`ec2:RunInstances`, `iam:CreateRole`, `dynamodb:CreateTable`),
  with two exceptions: CloudWatch calls count as `monitoring:*` (the SigV4 scope), and Budgets calls
  go by their own names (`budgets:CreateBudget`) where IAM has only budgets:ViewBudget and
  budgets:ModifyBudget. But moto checks all of them against resource `*` (IAM: against the role's ARN,
  and only when the role already exists), and it skips Conditions it has no values for
  (`aws:RequestTag`, `aws:ResourceTag`, `ec2:CreateAction`, `iam:PassedToService`), so their RESOURCE
  and CONDITION scoping is proven only by reading. `sts:GetCallerIdentity` is always allowed.
- S3 (its own code path): object calls and most bucket calls are checked against the real bucket and
  object ARNs, so the bucket-name patterns and the `media/` prefix ARE proven. HeadBucket is checked
  as `s3:HeadBucket` (not an IAM action; AWS checks s3:ListBucket), and only on a missing bucket. Moto
  names a request by its method and a short list of subresources: every other bucket subresource
  counts as `s3:CreateBucket` (PUT), `s3:ListBucket` (GET) or `s3:DeleteBucket` (DELETE), so
  s3:PutEncryptionConfiguration, s3:PutBucketOwnershipControls, s3:PutBucketPublicAccessBlock,
  s3:GetEncryptionConfiguration, s3:GetBucketOwnershipControls... are proven only by reading.
- S3 Control (the account's public access block) goes through `call_action`: checked, on `*`, as
  `s3:GetPublicAccessBlock` where AWS checks s3:GetAccountPublicAccessBlock.
- Never checked: iam:PassRole (RunInstances, AddRoleToInstanceProfile), tag-on-create (ec2:CreateTags,
  dynamodb:TagResource, sns:TagResource, cloudwatch:TagResource), KMS. Those parts of the policy stand on reading alone.

The user holds the file's policy, attached as a managed policy exactly as written, plus an inline
policy that says the same in moto's dialect (`moto_dialect`): the statements scoped to ARNs outside S3
repeated on `*`, the actions under moto's names beside IAM's (s3:HeadBucket beside s3:ListBucket,
s3:GetPublicAccessBlock beside s3:GetAccountPublicAccessBlock, `monitoring:*` beside `cloudwatch:*`,
the Budgets calls beside budgets:ViewBudget and budgets:ModifyBudget), and s3:DeleteObject on the
bucket itself (moto checks DeleteObjects against the bucket, AWS against each object). The negative
control (the file without ec2:RunInstances) shows that the enforcement is real, so that the first test
cannot pass with it off.

The media bucket's probe is fetched ANONYMOUSLY over HTTP, which moto 5.2.5 cannot serve while
enforcement is on (no Authorization header: a 500). That fetch is the public's, not the operator's,
so the test routes the public URL through a small proxy that pauses enforcement for just that request;
moto still answers it from the bucket policy, anonymously.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from conftest import embedded_aws_server

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
POLICY_FILE = REPO / "docs" / "operator-iam-policy.json"
# The policy is scoped by the default project name, so the playbooks run with the defaults.
PROJECT = "coffee-ranker"
OPERATOR = f"{PROJECT}-operator"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's

# Requests that AWS authorises under one action and moto 5.2.5 under another name.
MOTO_ACTION_ALIASES = {
    "s3:ListBucket": ["s3:HeadBucket"],  # HeadBucket (moto: an action IAM does not have)
    "s3:GetAccountPublicAccessBlock": ["s3:GetPublicAccessBlock"],  # s3control GetPublicAccessBlock
    # AWS Budgets: IAM has two actions for all of its calls, moto names each call.
    "budgets:ViewBudget": [
        "budgets:DescribeBudget",
        "budgets:DescribeBudgets",
        "budgets:DescribeNotificationsForBudget",
        "budgets:DescribeSubscribersForNotification",
    ],
    "budgets:ModifyBudget": [
        f"budgets:{verb}{noun}"
        for verb in ("Create", "Delete", "Update")
        for noun in ("Budget", "Notification", "Subscriber")
    ],
}
# Moto takes an action's prefix from the request's SigV4 scope, which is not always IAM's service prefix.
MOTO_SERVICE_PREFIXES = {"cloudwatch": "monitoring"}
# What provisioning makes, one of each with the defaults (`EnforcingAws.leftovers` kinds).
STACK = ("instances", "security_groups", "key_pairs", "buckets", "tables", "roles", "instance_profiles")
# The requests made with the dummy keys before enforcement starts: see `operator_credentials`.
SETUP_REQUESTS = 5


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def moto_dialect(policy: dict) -> dict:
    """The statements moto 5.2.5 needs on top of `policy` to allow what AWS would allow with `policy`."""
    added = []
    for statement in policy["Statement"]:
        actions, resources = _as_list(statement["Action"]), _as_list(statement["Resource"])
        # Moto names the resource of S3 requests only; it checks every other request against `*`.
        checked_on = resources if all(action.startswith("s3:") for action in actions) else ["*"]
        if checked_on != resources:
            added.append({**statement, "Sid": statement["Sid"] + "OnMotosPlaceholder", "Resource": "*"})
        aliases = [alias for action in actions for alias in MOTO_ACTION_ALIASES.get(action, [])]
        aliases += [
            f"{MOTO_SERVICE_PREFIXES[service]}:{name}"
            for service, name in (action.split(":") for action in actions)
            if service in MOTO_SERVICE_PREFIXES
        ]
        if aliases:
            added.append(
                {**statement, "Sid": statement["Sid"] + "UnderMotosNames", "Action": aliases, "Resource": checked_on}
            )
        if "s3:DeleteObject" in actions:
            buckets = [resource.split("/")[0] for resource in resources]
            added.append(
                {**statement, "Sid": statement["Sid"] + "OnTheBucket", "Action": "s3:DeleteObject", "Resource": buckets}
            )
    return {"Version": "2012-10-17", "Statement": added}


def without_action(policy: dict, action: str) -> dict:
    """The policy with one action taken out of every statement (and statements left empty dropped)."""
    assert any(action in _as_list(s["Action"]) for s in policy["Statement"]), f"{action} is not in the policy"
    reduced = copy.deepcopy(policy)
    reduced["Statement"] = [
        {**s, "Action": [a for a in _as_list(s["Action"]) if a != action]}
        for s in reduced["Statement"]
        if _as_list(s["Action"]) != [action]
    ]
    return reduced


class EnforcingAws:
    """The module's own embedded AWS: its admin side (the dummy keys) and its enforcement switch."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint

    def client(self, service: str, access_key: str = "testing", secret_key: str = "testing"):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
        )

    def _post(self, path: str, body: bytes = b"") -> None:
        request = urllib.request.Request(
            f"{self.endpoint}{path}", data=body, method="POST", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(request, timeout=10).close()

    def reset(self) -> None:
        self._post("/moto-api/reset")

    def check_requests_after(self, unchecked: float) -> None:
        """Enforcement from the request after the next `unchecked` ones (`inf`: off)."""
        self._post("/moto-api/reset-auth", str(unchecked).encode())

    def leftovers(self) -> dict[str, list[str]]:
        """What the account holds beyond a fresh region; enforcement must be off."""
        ec2, s3, iam, dynamodb = self.client("ec2"), self.client("s3"), self.client("iam"), self.client("dynamodb")
        return {
            "instances": [
                i["InstanceId"]
                for r in ec2.describe_instances()["Reservations"]
                for i in r["Instances"]
                if i["State"]["Name"] != "terminated"
            ],
            "security_groups": [
                g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"
            ],
            "key_pairs": [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]],
            "buckets": [b["Name"] for b in s3.list_buckets()["Buckets"]],
            "tables": dynamodb.list_tables()["TableNames"],
            "roles": [r["RoleName"] for r in iam.list_roles()["Roles"]],
            "instance_profiles": [p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]],
            "topics": [t["TopicArn"].split(":")[-1] for t in self.client("sns").list_topics()["Topics"]],
            "alarms": [a["AlarmName"] for a in self.client("cloudwatch").describe_alarms()["MetricAlarms"]],
            "budgets": [
                b["BudgetName"] for b in self.client("budgets").describe_budgets(AccountId=ACCOUNT).get("Budgets", [])
            ],
            "users": [u["UserName"] for u in iam.list_users()["Users"]],
            "policies": [p["PolicyName"] for p in iam.list_policies(Scope="Local")["Policies"]],
        }


@pytest.fixture(scope="module")
def enforcing_aws():
    """An embedded AWS of this module's own (the shared one must stay permissive): plain moto, whose
    delays and quirks are other tests' subject, with enforcement off until a test turns it on."""
    assert "INITIAL_NO_AUTH_ACTION_COUNT" not in os.environ, "enforcement is switched on by the tests"
    with embedded_aws_server(realism=False) as server:
        yield EnforcingAws(server.endpoint)


@pytest.fixture(scope="module")
def anonymous_proxy(enforcing_aws):
    """A public URL for anonymous GETs: enforcement paused for each one (see the module's docstring)."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            assert "Authorization" not in self.headers, "only anonymous requests come this way"
            with lock:
                enforcing_aws.check_requests_after(float("inf"))
                try:
                    request = urllib.request.Request(enforcing_aws.endpoint + self.path, method=self.command)
                    try:
                        with urllib.request.urlopen(request, timeout=10) as response:
                            status, body = response.status, response.read()
                    except urllib.error.HTTPError as error:
                        status, body = error.code, error.read()
                finally:
                    enforcing_aws.check_requests_after(0)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        do_GET = do_HEAD = _forward

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def operator_credentials(aws: EnforcingAws, policy: dict) -> dict[str, str]:
    """A fresh account with one IAM user holding `policy` (and its moto dialect); enforcement on after."""
    aws.reset()
    aws.check_requests_after(SETUP_REQUESTS)
    iam = aws.client("iam")
    iam.create_user(UserName=OPERATOR)  # 1
    arn = iam.create_policy(PolicyName=OPERATOR, PolicyDocument=json.dumps(policy))["Policy"]["Arn"]  # 2
    iam.attach_user_policy(UserName=OPERATOR, PolicyArn=arn)  # 3
    iam.put_user_policy(  # 4
        UserName=OPERATOR, PolicyName="moto-dialect", PolicyDocument=json.dumps(moto_dialect(policy))
    )
    key = iam.create_access_key(UserName=OPERATOR)["AccessKey"]  # 5 = SETUP_REQUESTS
    with pytest.raises(botocore.exceptions.ClientError, match="InvalidClientTokenId"):
        aws.client("iam").list_users()  # enforcement is on: the dummy keys are refused now
    return {"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}


@pytest.fixture
def run_as(enforcing_aws, anonymous_proxy, tmp_path):
    """Run a playbook of this repository as the given credentials against the enforcing embedded AWS."""
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "group_vars").symlink_to(REPO / "inventory" / "sandbox" / "group_vars")
    (inventory / "hosts.yml").write_text("all: {}\n")

    def run(playbook: str, credentials: dict[str, str], extra_vars: dict | None = None) -> tuple[int, str]:
        variables = {
            "controller_secrets_dir": str(tmp_path / "secrets"),
            "machines_role": "",
            "aws_connection": {"region": REGION, "endpoint_url": enforcing_aws.endpoint, **credentials},
            # The public URL of the media bucket (derived.yml; the role's default before it), via the proxy.
            "media_public_base_url": anonymous_proxy + "/{{ media_bucket_name }}",
            "media_bucket_public_base_url": anonymous_proxy + "/{{ media_bucket_name }}",
            **(extra_vars or {}),
        }
        command = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / playbook)]
        env = dict(
            os.environ, SANDBOX_AWS_ENDPOINT=enforcing_aws.endpoint, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0"
        )
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
        done = subprocess.run(
            [*command, "-e", json.dumps(variables)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
        )
        return done.returncode, done.stdout + done.stderr

    return run


def assert_nothing_denied(code: int, output: str) -> None:
    """Success, and no denial either (a module may turn one into a warning and carry on)."""
    assert code == 0, output[-4000:]
    for sign in ("AccessDenied", "not authorized", "UnauthorizedOperation", "Access Denied"):
        assert sign not in output, output[-4000:]


def test_a_user_with_only_the_operator_policy_provisions_and_tears_down_everything(enforcing_aws, run_as):
    policy = json.loads(POLICY_FILE.read_text())
    credentials = operator_credentials(enforcing_aws, policy)

    code, output = run_as("playbooks/provision.yml", credentials)
    assert_nothing_denied(code, output)
    enforcing_aws.check_requests_after(float("inf"))
    made = enforcing_aws.leftovers()
    enforcing_aws.check_requests_after(0)
    assert {kind: len(made[kind]) for kind in STACK} == dict.fromkeys(STACK, 1), made
    assert all(made[kind] for kind in ("topics", "alarms", "budgets")), f"no cost guardrails: {made}"

    code, output = run_as("playbooks/teardown.yml", credentials, {"teardown_delete_data": True})
    assert_nothing_denied(code, output)

    enforcing_aws.check_requests_after(float("inf"))
    left = enforcing_aws.leftovers()
    assert left.pop("users") == [OPERATOR]
    assert left.pop("policies") == [OPERATOR]
    assert not any(left.values()), left


def test_enforcement_is_real_the_policy_without_run_instances_cannot_launch(enforcing_aws, run_as):
    policy = without_action(json.loads(POLICY_FILE.read_text()), "ec2:RunInstances")
    credentials = operator_credentials(enforcing_aws, policy)

    code, output = run_as("playbooks/provision.yml", credentials)

    assert code != 0
    text = " ".join(output.split())
    assert "not authorized to perform: ec2:RunInstances" in text, output[-4000:]
    enforcing_aws.check_requests_after(float("inf"))
    left = enforcing_aws.leftovers()
    # Everything before the launch was made: the denial is of that one action.
    assert {kind: len(left[kind]) for kind in STACK} == {**dict.fromkeys(STACK, 1), "instances": 0}, left


@pytest.mark.parametrize("name", ["operator-iam-policy.json", "operator-iam-policy-load-balancer.json"])
def test_each_operator_policy_fits_into_a_managed_policy(name):
    # AWS counts a managed policy's characters without whitespace: 6,144 at most. The base policy is
    # close to it, which is why the load balancer's permissions are a policy of their own.
    document = json.loads((REPO / "docs" / name).read_text())
    assert len(json.dumps(document, separators=(",", ":"))) <= 6144
    assert all(statement["Effect"] == "Allow" and statement.get("Sid") for statement in document["Statement"])
