"""A rerun changes only what differs: roles/preflight reads the stack's AWS resources in one module run,
and each role skips its module when AWS already holds what it asks for. Changes made behind the
playbooks' back (drift) are still found and undone, each by the role that owns the resource."""

import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PROJECT = "ranker-drift"
VARS = {"project_name": PROJECT}
BUCKET = f"sandbox-{PROJECT}-media-123456789012"  # moto's account id
TABLE = f"{PROJECT}-data"
ROLE = f"{PROJECT}-api"

# The task of each role that writes its AWS resource, as the run prints it.
WRITES = {
    "key_pair": "key_pair : Import the public key into AWS as the key pair",
    "security_group": "security_group : Open SSH to the admin network, the API port to everyone or the load balancer",
    "datastore": "datastore : Create the API's table, on demand, KMS-encrypted, with point-in-time recovery",
    "role": "instance_profile : Create the API's IAM role and instance profile",
    "policy": "instance_profile : Allow the API only its media objects and its datastore's items",
    "bucket": "media_bucket : Create the media bucket (encrypted, tagged, read under the media prefix only)",
    "instances": "api_instances : Find the API instances",
    "cpu_credits": "api_instances : Set the CPU credit mode of the running burstable instances",
}


def task_results(output):
    """{task name: the first result line after its banner} for the tasks the run printed."""
    results, task = {}, None
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK [") :].split("]")[0]
        elif task and line.split(":")[0] in ("ok", "changed", "failed", "fatal", "skipping"):
            results.setdefault(task, line.split(":")[0])
    return results


def another_public_key():
    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


def group_id(ec2):
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"{PROJECT}-api"]}])
    return groups["SecurityGroups"][0]["GroupId"]


def test_a_rerun_skips_every_aws_write_and_drift_is_undone_by_the_role_that_owns_it(run_playbook, aws):
    first = run_playbook("playbooks/provision.yml", extra_vars=VARS)
    assert first.returncode == 0, first.output[-3000:]
    assert all(WRITES[name] in task_results(first.output) for name in WRITES if name != "instances")

    rerun = run_playbook("playbooks/provision.yml", extra_vars=VARS)
    assert rerun.returncode == 0, rerun.output[-3000:]
    assert rerun.recap["changed"] == 0, rerun.output[-3000:]
    ran = task_results(rerun.output)
    assert not [task for task in WRITES.values() if task in ran], "a rerun must not run the AWS writes"

    # Behind the playbooks' back: each resource drifts in a way its role must notice.
    ec2, iam, dynamodb, s3 = (aws.client(service) for service in ("ec2", "iam", "dynamodb", "s3"))
    ec2.delete_key_pair(KeyName=PROJECT)
    ec2.import_key_pair(KeyName=PROJECT, PublicKeyMaterial=another_public_key())
    ec2.authorize_security_group_ingress(
        GroupId=group_id(ec2),
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 3306, "ToPort": 3306, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    dynamodb.update_continuous_backups(
        TableName=TABLE, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False}
    )
    iam.tag_role(RoleName=ROLE, Tags=[{"Key": "Owner", "Value": "someone"}])
    iam.put_role_policy(
        RoleName=ROLE,
        PolicyName=f"{ROLE}-access",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        ),
    )
    s3.delete_bucket_encryption(Bucket=BUCKET)
    s3.put_bucket_tagging(Bucket=BUCKET, Tagging={"TagSet": [{"Key": "Project", "Value": "someone-else"}]})

    repaired = run_playbook("playbooks/provision.yml", extra_vars=VARS)
    assert repaired.returncode == 0, repaired.output[-3000:]
    ran = task_results(repaired.output)
    # (The embedded AWS cannot change a credit mode: test_metrics_ports.py shows one that differs.)
    drifted = [name for name in WRITES if name not in ("instances", "cpu_credits")]
    assert {name: ran.get(WRITES[name]) for name in drifted} == {name: "changed" for name in drifted}

    # What AWS holds again is what the roles ask for.
    public_key = (run_playbook.secrets / "ssh" / f"{PROJECT}.pub").read_text().split()[:2]
    held = ec2.describe_key_pairs(KeyNames=[PROJECT], IncludePublicKey=True)["KeyPairs"][0]
    assert held["PublicKey"].split()[:2] == public_key
    group = ec2.describe_security_groups(GroupIds=[group_id(ec2)])["SecurityGroups"][0]
    assert sorted(p["FromPort"] for p in group["IpPermissions"]) == [22, 9100, 11373, 11374]
    backups = dynamodb.describe_continuous_backups(TableName=TABLE)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    assert {t["Key"] for t in iam.list_role_tags(RoleName=ROLE)["Tags"]} == {"Project", "Role"}
    policy = iam.get_role_policy(RoleName=ROLE, PolicyName=f"{ROLE}-access")["PolicyDocument"]
    assert "s3:*" not in json.dumps(policy)
    encryption = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]
    assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]}["Project"] == PROJECT

    settled = run_playbook("playbooks/provision.yml", extra_vars=VARS)
    assert settled.returncode == 0, settled.output[-3000:]
    assert settled.recap["changed"] == 0, settled.output[-3000:]
    assert not [task for task in WRITES.values() if task in task_results(settled.output)]


def test_instances_terminated_behind_the_playbooks_back_are_replaced(run_playbook, aws):
    assert run_playbook("playbooks/provision.yml", extra_vars=VARS).returncode == 0
    ec2 = aws.client("ec2")
    tagged = [{"Name": "tag:Project", "Values": [PROJECT]}, {"Name": "instance-state-name", "Values": ["running"]}]
    gone = [i["InstanceId"] for r in ec2.describe_instances(Filters=tagged)["Reservations"] for i in r["Instances"]]
    ec2.terminate_instances(InstanceIds=gone)

    result = run_playbook("playbooks/provision.yml", extra_vars=VARS)

    assert result.returncode == 0, result.output[-3000:]
    assert WRITES["instances"] not in task_results(result.output), "preflight's read stands in for the lookup"
    running = [i["InstanceId"] for r in ec2.describe_instances(Filters=tagged)["Reservations"] for i in r["Instances"]]
    assert len(running) == 1
    assert running != gone
