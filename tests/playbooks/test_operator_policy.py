"""The operator's least-privilege policies (docs/operator-iam-policy*.json) are enough to provision, back up,
restore (with the cut-over and the photos) and tear down.

The policies are rendered from roles/operator_policy's templates (playbooks/operator_policy.yml); the files
in docs/ must be exactly the rendering with the defaults, and another project or partition must leave no
trace of the defaults in them. The base policy and the storage-and-costs one are always attached (one
policy would pass AWS's 6,144 characters), the edge's (load balancer, CloudFront) only with api_load_balancer or
media_cdn.

The slow tests run the playbooks as an IAM user that holds only the two always-attached policies, against
an embedded AWS of their own with moto's IAM enforcement on. `/moto-api/reset-auth` sets moto's
INITIAL_NO_AUTH_ACTION_COUNT: the next N requests are not checked (they create the user, its policies and
its access key with the dummy keys), every later one is authenticated and authorised against the user's
policies (the dummy keys are refused from then on).

What moto 5.2.5 enforces in server mode, and so what the test proves:

- EC2, IAM, DynamoDB, STS, SNS, CloudWatch, Budgets and SSM (query and JSON protocols,
  `BaseResponse.call_action`): every call is checked, so the test proves the policy's ACTIONS for them.
  Moto names the action after the call (`ec2:RunInstances`, `iam:CreateRole`, `dynamodb:CreateTable`),
  with two exceptions: CloudWatch calls count as `monitoring:*` (the SigV4 scope), and Budgets calls
  go by their own names (`budgets:CreateBudget`) where IAM has only budgets:ViewBudget and
  budgets:ModifyBudget. But moto checks all of them against resource `*` (IAM: against the role's ARN,
  and only when the role already exists), and it skips Conditions it has no values for
  (`aws:RequestTag`, `aws:ResourceTag`, `ec2:CreateAction`, `iam:PassedToService`), so their RESOURCE
  and CONDITION scoping is proven only by reading. `sts:GetCallerIdentity` is always allowed.
  moto/iam/access_control.py: `check_action_permitted` passes no condition values, and a condition
  without values passes (`StringLike`, as for kms:ViaService, is not even implemented: ignored).
- SSM in particular (moto/ssm/urls.py: `SimpleSystemManagerResponse.dispatch`, which has no
  `_determine_resource`): ssm:PutParameter, ssm:GetParameter, ssm:DeleteParameter, ssm:DescribeParameters,
  ssm:AddTagsToResource... are each checked, as actions, against `*`, never against the parameter's ARN.
  The policy's `parameter/<project>/*` alone is refused by moto even under that path, and with the moto
  dialect a parameter outside it is allowed: the path scoping is proven by reading the rendered policy
  (test_the_parameter_statement_names_exactly_the_projects_path), the actions under enforcement.
- KMS: moto's SSM encrypts a SecureString by prefixing "kms:<key id>:" to the value (moto/ssm/models.py,
  `Parameter.encrypt`); it makes no KMS call, so kms:Encrypt, kms:Decrypt and kms:GenerateDataKey (and
  their kms:ViaService condition) are never checked: they stand on reading alone.
- ec2:GetConsoleOutput (moto/ec2/responses/general.py, through EC2's `call_action`): checked as an
  action on `*`, so the instance ARN and the aws:ResourceTag/Project condition stand on reading. The
  sandbox's console layer (sandbox/console_output.py) lets moto answer first, so a denial stays moto's.
- S3 (its own code path): object calls and most bucket calls are checked against the real bucket and
  object ARNs, so the bucket-name patterns and the `media/` prefix ARE proven. HeadBucket is checked
  as `s3:HeadBucket` (not an IAM action; AWS checks s3:ListBucket), and only on a missing bucket. Moto
  names a request by its method and a short list of subresources: every other bucket subresource
  counts as `s3:CreateBucket` (PUT), `s3:ListBucket` (GET) or `s3:DeleteBucket` (DELETE), so
  s3:PutEncryptionConfiguration, s3:PutBucketOwnershipControls, s3:PutBucketPublicAccessBlock,
  s3:GetEncryptionConfiguration, s3:GetBucketOwnershipControls... are proven only by reading.
- S3 Control (the account's public access block) goes through `call_action`: checked, on `*`, as
  `s3:GetPublicAccessBlock` where AWS checks s3:GetAccountPublicAccessBlock.
- CloudFront (REST-XML, `call_action`): checked, on `*`. moto recomputed the signature of a bodiless GET
  with the request's headers as its body (SignatureDoesNotMatch for ListOriginAccessControls, and for
  ListDistributions signed for another region than us-east-1); the sandbox signs an empty body, as the
  client does (sandbox/cloudfront.py). The aws:RequestTag and aws:ResourceTag conditions of the edge
  policy's CloudFront statements stand on reading.
- Never checked: iam:PassRole (RunInstances, AddRoleToInstanceProfile), tag-on-create (ec2:CreateTags,
  dynamodb:TagResource, sns:TagResource, cloudwatch:TagResource, the tags of ssm:PutParameter), KMS.
  Those parts of the policies stand on reading alone.

The user holds the files' policies, attached as managed policies exactly as written, plus an inline
policy that says the same in moto's dialect (`moto_dialect`): the statements scoped to ARNs outside S3
repeated on `*` (the SSM and GetConsoleOutput statements among them; the KMS statement is on `*` already
and moto never asks for it), the actions under moto's names beside IAM's (s3:HeadBucket beside s3:ListBucket,
s3:GetPublicAccessBlock beside s3:GetAccountPublicAccessBlock, `monitoring:*` beside `cloudwatch:*`,
the Budgets calls beside budgets:ViewBudget and budgets:ModifyBudget), and s3:DeleteObject on the
bucket itself (moto checks DeleteObjects against the bucket, AWS against each object). The negative
control (the policies without ec2:RunInstances) shows that the enforcement is real, so that the first test
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
import re
import subprocess
import sys
import threading
import time
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
DOCS = REPO / "docs"
# The operator's policies as docs/ holds them: the two always attached, and the load balancer's.
ALWAYS_ATTACHED = ("operator-iam-policy.json", "operator-iam-policy-storage-and-costs.json")
POLICY_NAMES = (*ALWAYS_ATTACHED, "operator-iam-policy-load-balancer.json")
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
# AWS counts a managed policy's characters without white space.
MANAGED_POLICY_LIMIT = 6144


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
    # SSM and ec2:GetConsoleOutput need nothing of their own: moto checks them as actions on `*` like the
    # rest, so the rule above repeats their statements on `*`. KMS needs nothing: moto's SSM calls no KMS.
    return {"Version": "2012-10-17", "Statement": added}


def without_action(policies: list[dict], action: str) -> list[dict]:
    """The policies with one action taken out of every statement (and statements left empty dropped)."""
    statements = [s for policy in policies for s in policy["Statement"]]
    assert any(action in _as_list(s["Action"]) for s in statements), f"{action} is not in the policies"
    reduced = copy.deepcopy(policies)
    for policy in reduced:
        policy["Statement"] = [
            {**s, "Action": [a for a in _as_list(s["Action"]) if a != action]}
            for s in policy["Statement"]
            if _as_list(s["Action"]) != [action]
        ]
    return reduced


def always_attached_policies() -> list[dict]:
    return [json.loads((DOCS / name).read_text()) for name in ALWAYS_ATTACHED]


def render_operator_policies(folder: Path, **variables: str) -> dict[str, str]:
    """playbooks/operator_policy.yml for inventory/aws (as `make operator-policy` runs it) with extra vars:
    each policy's file name and text."""
    env = dict(
        os.environ,
        ANSIBLE_INVENTORY_IGNORE_REGEX=r"aws_ec2\.yml$",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_NOCOLOR="1",
    )
    variables = {"operator_policy_dir": str(folder), **variables}
    done = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", "inventory/aws", "playbooks/operator_policy.yml"]
        + ["-e", json.dumps(variables)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return {path.name: path.read_text() for path in sorted(folder.glob("*.json"))}


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
            "backups": [b["BackupName"] for b in dynamodb.list_backups()["BackupSummaries"]],
            "parameters": [p["Name"] for p in self.client("ssm").describe_parameters()["Parameters"]],
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


def operator_credentials(aws: EnforcingAws, policies: list[dict], dialect: bool = True) -> dict[str, str]:
    """A fresh account with one IAM user holding `policies` (and their moto dialect); enforcement on after."""
    aws.reset()
    # The requests made with the dummy keys before enforcement starts, counted below.
    aws.check_requests_after(2 * len(policies) + 2 + dialect)
    iam = aws.client("iam")
    iam.create_user(UserName=OPERATOR)  # 1
    for number, policy in enumerate(policies):  # 2 each
        name = f"{OPERATOR}-{number}"
        arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(policy))["Policy"]["Arn"]
        iam.attach_user_policy(UserName=OPERATOR, PolicyArn=arn)
    if dialect:  # 1
        dialect_policy = {"Version": "2012-10-17", "Statement": []}
        for policy in policies:
            dialect_policy["Statement"] += moto_dialect(policy)["Statement"]
        iam.put_user_policy(UserName=OPERATOR, PolicyName="moto-dialect", PolicyDocument=json.dumps(dialect_policy))
    key = iam.create_access_key(UserName=OPERATOR)["AccessKey"]  # 1
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
            "aws_region": REGION,
            "aws_connection": {"endpoint_url": enforcing_aws.endpoint, **credentials},
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
    credentials = operator_credentials(enforcing_aws, always_attached_policies())

    code, output = run_as("playbooks/provision.yml", credentials)
    assert_nothing_denied(code, output)
    enforcing_aws.check_requests_after(float("inf"))
    made = enforcing_aws.leftovers()
    enforcing_aws.check_requests_after(0)
    assert {kind: len(made[kind]) for kind in STACK} == dict.fromkeys(STACK, 1), made
    assert all(made[kind] for kind in ("topics", "alarms", "budgets")), f"no cost guardrails: {made}"

    # Day 2: a backup, then a restore of it with the cut-over, which takes the photos back to its time.
    table, bucket = made["tables"][0], made["buckets"][0]
    enforcing_aws.check_requests_after(float("inf"))  # the service's writes, made by the admin
    dynamodb, s3 = enforcing_aws.client("dynamodb"), enforcing_aws.client("s3")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "META"}, "sk": {"S": "SCHEMA"}, "version": {"N": "1"}})
    s3.put_object(Bucket=bucket, Key="media/kept.jpg", Body=b"photo")
    time.sleep(1.1)  # S3 keeps LastModified to the second
    enforcing_aws.check_requests_after(0)
    code, output = run_as("playbooks/backup.yml", credentials)
    assert_nothing_denied(code, output)
    enforcing_aws.check_requests_after(float("inf"))
    time.sleep(1.1)
    s3.delete_object(Bucket=bucket, Key="media/kept.jpg")  # undone by the restore
    enforcing_aws.check_requests_after(0)
    code, output = run_as("playbooks/restore.yml", credentials, {"restore_from": "latest", "restore_cutover": True})
    assert_nothing_denied(code, output)
    assert "1 given their version back" in " ".join(output.split()), output[-4000:]
    enforcing_aws.check_requests_after(float("inf"))
    restored = enforcing_aws.leftovers()
    enforcing_aws.check_requests_after(0)
    assert len(restored["tables"]) == 2, restored
    assert len(restored["backups"]) == 1, restored
    assert f"/{PROJECT}/datastore/table" in restored["parameters"], restored
    enforcing_aws.check_requests_after(float("inf"))  # what a write-token rotation stopped half-way leaves
    for name in ("write-token-pending", "write-token-previous"):
        enforcing_aws.client("ssm").put_parameter(Name=f"/{PROJECT}/api/{name}", Value="x" * 40, Type="SecureString")
    enforcing_aws.check_requests_after(0)

    code, output = run_as("playbooks/teardown.yml", credentials, {"teardown_delete_data": True})
    assert_nothing_denied(code, output)

    enforcing_aws.check_requests_after(float("inf"))
    left = enforcing_aws.leftovers()
    assert left.pop("users") == [OPERATOR]
    assert sorted(left.pop("policies")) == [f"{OPERATOR}-{number}" for number in range(len(ALWAYS_ATTACHED))]
    assert not any(left.values()), left


def test_enforcement_is_real_the_policy_without_run_instances_cannot_launch(enforcing_aws, run_as):
    policies = without_action(always_attached_policies(), "ec2:RunInstances")
    credentials = operator_credentials(enforcing_aws, policies)

    code, output = run_as("playbooks/provision.yml", credentials)

    assert code != 0
    text = " ".join(output.split())
    assert "not authorized to perform: ec2:RunInstances" in text, output[-4000:]
    enforcing_aws.check_requests_after(float("inf"))
    left = enforcing_aws.leftovers()
    # Everything before the launch was made: the denial is of that one action.
    assert {kind: len(left[kind]) for kind in STACK} == {**dict.fromkeys(STACK, 1), "instances": 0}, left


def statement(policy: dict, sid_prefix: str) -> dict:
    [found] = [s for s in policy["Statement"] if s["Sid"].startswith(sid_prefix)]
    return found


def minified_size(document: dict) -> int:
    return len(json.dumps(document, separators=(",", ":")))


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_each_operator_policy_fits_into_a_managed_policy(name):
    # AWS counts a managed policy's characters without whitespace: 6,144 at most. One policy for all of
    # the stack would not fit, which is why there are three (docs/operator-iam-policy.md).
    document = json.loads((DOCS / name).read_text())
    assert minified_size(document) <= MANAGED_POLICY_LIMIT
    assert all(statement["Effect"] == "Allow" and statement.get("Sid") for statement in document["Statement"])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The policies rendered by playbooks/operator_policy.yml, by case: the defaults; another project
    in China; the longest project name in GovCloud pinned to an account (the largest policies)."""
    cases = {
        "defaults": {},
        "shop-two in cn-north-1": {"project_name": "shop-two", "aws_region": "cn-north-1"},
        "longest name in us-gov-west-1, one account": {
            "project_name": "a" + "b" * 30 + "c",  # preflight allows 32 characters at most
            "aws_region": "us-gov-west-1",
            "operator_policy_account_id": ACCOUNT,
        },
    }
    return {case: render_operator_policies(tmp_path_factory.mktemp("iam"), **v) for case, v in cases.items()}


def test_the_files_in_docs_are_the_rendering_with_the_defaults(rendered):
    assert sorted(rendered["defaults"]) == sorted(POLICY_NAMES)
    for name, text in rendered["defaults"].items():
        assert text == (DOCS / name).read_text(), f"docs/{name} differs from its template: make operator-policy"


def test_another_project_and_partition_leave_nothing_of_the_defaults(rendered):
    for name, text in rendered["shop-two in cn-north-1"].items():
        document = json.loads(text)
        assert "coffee-ranker" not in text, name
        assert "arn:aws:" not in text, name
        arns = re.findall(r'"(arn:[^"]*)"', text)
        assert arns, name
        assert all(arn.startswith("arn:aws-cn:") for arn in arns), name
        assert minified_size(document) <= MANAGED_POLICY_LIMIT, name
    kms = statement(json.loads(rendered["shop-two in cn-north-1"]["operator-iam-policy.json"]), "KmsEncryptAndDecrypt")
    assert kms["Condition"] == {"StringLike": {"kms:ViaService": "ssm.*.amazonaws.com.cn"}}


def test_the_largest_rendering_still_fits_into_managed_policies(rendered):
    for name, text in rendered["longest name in us-gov-west-1, one account"].items():
        assert f":{ACCOUNT}:" in text, name
        assert minified_size(json.loads(text)) <= MANAGED_POLICY_LIMIT, name


def test_the_parameter_statement_names_exactly_the_projects_path(rendered):
    # Moto checks SSM calls on `*` only (module docstring), so the path scoping is proven here, by reading.
    base = json.loads(rendered["shop-two in cn-north-1"]["operator-iam-policy.json"])
    parameters = statement(base, "SsmManageTheProject")
    assert parameters["Resource"] == "arn:aws-cn:ssm:*:*:parameter/shop-two/*"
    assert "Condition" not in parameters
    assert sorted(parameters["Action"]) == [
        "ssm:AddTagsToResource",
        "ssm:DeleteParameter",
        "ssm:GetParameter",
        "ssm:GetParameters",
        "ssm:ListTagsForResource",
        "ssm:PutParameter",
        "ssm:RemoveTagsFromResource",
    ]
    pinned = json.loads(rendered["longest name in us-gov-west-1, one account"]["operator-iam-policy.json"])
    assert statement(pinned, "SsmManageTheProject")["Resource"] == (
        f"arn:aws-us-gov:ssm:*:{ACCOUNT}:parameter/{'a' + 'b' * 30 + 'c'}/*"
    )
    # GetParametersByPath is authorised against the path asked for, with or without its trailing slash.
    by_path = statement(base, "SsmReadTheProjectParametersByTheirPath")
    assert by_path["Action"] == "ssm:GetParametersByPath"
    assert by_path["Resource"] == ["arn:aws-cn:ssm:*:*:parameter/shop-two", "arn:aws-cn:ssm:*:*:parameter/shop-two/*"]
    # Only DescribeParameters, which has no resource-level permissions, is on `*`; no other ssm: action is.
    everywhere = [s for s in base["Statement"] if s["Resource"] == "*"]
    ssm_everywhere = [a for s in everywhere for a in _as_list(s["Action"]) if a.startswith("ssm:")]
    assert ssm_everywhere == ["ssm:DescribeParameters"]
    # KMS only through SSM: every kms: action sits in the one statement with the condition.
    kms = statement(base, "KmsEncryptAndDecrypt")
    assert sorted(_as_list(kms["Action"])) == ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    assert [s for s in base["Statement"] if any(a.startswith("kms:") for a in _as_list(s["Action"]))] == [kms]


def test_backups_and_restores_are_scoped_to_the_projects_tables_and_photos(rendered):
    # Moto checks DynamoDB calls on `*` only (module docstring): the scoping stands on reading.
    storage = json.loads(rendered["shop-two in cn-north-1"]["operator-iam-policy-storage-and-costs.json"])
    tables = "arn:aws-cn:dynamodb:*:*:table/shop-two-*"
    restore_into = statement(storage, "DynamoDbBackUpRestoreIntoAndCheckTheProjectTables")
    assert restore_into["Resource"] == tables
    # Restoring writes the target table's items: AWS asks for the item writes on the target too.
    assert {"dynamodb:PutItem", "dynamodb:BatchWriteItem", "dynamodb:RestoreTableToPointInTime"} <= set(
        restore_into["Action"]
    )
    assert statement(storage, "DynamoDbDescribeRestoreAndDeleteTheProjectBackups")["Resource"] == f"{tables}/backup/*"
    everywhere = [a for s in storage["Statement"] if s["Resource"] == "*" for a in _as_list(s["Action"])]
    assert sorted(a for a in everywhere if a.startswith("dynamodb:")) == ["dynamodb:ListBackups", "dynamodb:ListTables"]
    versions = statement(storage, "S3TakeThePhotosBackToTheirVersionsAtATime")
    assert all(resource.endswith("-media-*/media/*") for resource in versions["Resource"])


def test_the_console_output_statement_is_the_projects_instances_only():
    base = json.loads((DOCS / "operator-iam-policy.json").read_text())
    console = [s for s in base["Statement"] if "ec2:GetConsoleOutput" in _as_list(s["Action"])]
    assert console == [statement(base, "Ec2ReadTheConsoleOutput")]
    assert console[0]["Resource"] == "arn:aws:ec2:*:*:instance/*"
    assert console[0]["Condition"] == {"StringEquals": {"aws:ResourceTag/Project": PROJECT}}
    # The host key pins are tags of the project's instances: CreateTags on them is granted once, here.
    tagging = statement(base, "Ec2ChangeAndDeleteOnlyResourcesTaggedForTheProject")
    assert "ec2:CreateTags" in tagging["Action"]
    assert "arn:aws:ec2:*:*:instance/*" in tagging["Resource"]


def test_under_enforcement_the_operator_keeps_the_projects_secrets_and_reads_consoles(enforcing_aws):
    # The policies as moto can check them (module docstring): the actions, on `*`.
    credentials = operator_credentials(enforcing_aws, always_attached_policies())
    enforcing_aws.check_requests_after(float("inf"))  # an instance of the project, made by the admin
    instance = enforcing_aws.client("ec2").run_instances(
        ImageId=json.loads((REPO / "sandbox" / "amis.json").read_text())[0]["ami_id"],
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Project", "Value": PROJECT}]}],
    )["Instances"][0]["InstanceId"]
    enforcing_aws.check_requests_after(0)
    ssm = enforcing_aws.client("ssm", credentials["access_key"], credentials["secret_key"])
    name = f"/{PROJECT}/api/write-token"

    ssm.put_parameter(Name=name, Value="s3cret", Type="SecureString", Tags=[{"Key": "Project", "Value": PROJECT}])
    assert ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"] == "s3cret"
    assert [p["Name"] for p in ssm.describe_parameters()["Parameters"]] == [name]
    ssm.add_tags_to_resource(ResourceType="Parameter", ResourceId=name, Tags=[{"Key": "Role", "Value": "api"}])
    assert len(ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]) == 2
    ssm.remove_tags_from_resource(ResourceType="Parameter", ResourceId=name, TagKeys=["Role"])
    ssm.delete_parameter(Name=name)
    ec2 = enforcing_aws.client("ec2", credentials["access_key"], credentials["secret_key"])
    assert ec2.get_console_output(InstanceId=instance)["InstanceId"] == instance
    # What moto cannot tell: a parameter outside /<project>/ passes too, since moto checks SSM on `*` only.
    # If this starts failing, moto checks parameter ARNs: assert AccessDenied here instead.
    ssm.put_parameter(Name="/another-project/secret", Value="x", Type="SecureString")


def test_under_enforcement_moto_checks_ssm_actions_on_star_not_the_parameter(enforcing_aws):
    # The policies exactly as written, without the moto dialect: refused even under the project's path,
    # since moto asks for `*` and the policy names `parameter/<project>/*`. The dialect is needed.
    credentials = operator_credentials(enforcing_aws, always_attached_policies(), dialect=False)
    ssm = enforcing_aws.client("ssm", credentials["access_key"], credentials["secret_key"])
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        ssm.put_parameter(Name=f"/{PROJECT}/api/write-token", Value="s3cret", Type="SecureString")
    ssm.describe_parameters()  # on `*` in the policy itself
