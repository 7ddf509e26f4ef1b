"""The converged site as its clients see it: three instances behind one shared datastore and bucket."""

import base64
import ipaddress
import json
import os
import socket
import subprocess
import uuid
from pathlib import Path

import boto3
import httpx
import pytest

ENDPOINT = os.environ.get("SANDBOX_AWS_ENDPOINT", "http://127.0.0.1:5000")
PROJECT = os.environ.get("MOLECULE_PROJECT_NAME", "ranker-site")
REPOSITORY = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
API_PORT = 11373
SSH_PORT = 2222  # molecule.yml's ssh_port
SANDBOX_NETWORK = ipaddress.ip_network("10.213.0.0/16")
# A valid 1x1 PNG (the API recognises images by their content).
PHOTO = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def ec2_client():
    return boto3.client(
        "ec2",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def instance_ids():
    reservations = ec2_client().describe_instances(
        Filters=[{"Name": "tag:Project", "Values": [PROJECT]}, {"Name": "instance-state-name", "Values": ["running"]}]
    )["Reservations"]
    return sorted(i["InstanceId"] for r in reservations for i in r["Instances"])


@pytest.fixture(scope="module")
def sandbox_hosts():
    """The project's running sandbox hosts, by name."""
    listed = subprocess.run([str(REPOSITORY / "sandbox" / "hosts"), "list"], capture_output=True, text=True, check=True)
    return {h["name"]: h for h in json.loads(listed.stdout) if h["name"].startswith(f"{PROJECT}-i-")}


@pytest.fixture(scope="module")
def apis(instance_ids, sandbox_hosts):
    """One HTTP client per instance, at its sandbox host's address."""
    clients = [
        httpx.Client(base_url=f"http://{sandbox_hosts[f'{PROJECT}-{i}']['address']}:{API_PORT}", timeout=30)
        for i in instance_ids
    ]
    yield clients
    for client in clients:
        client.close()


@pytest.fixture(scope="module")
def write_token():
    # The stack's own write token (api_write_token empty): kept in SSM, this controller's copy in .secrets/.
    return (REPOSITORY / ".secrets" / f"{PROJECT}.api-write-token").read_text().strip()


def authorised(token):
    return {"Authorization": f"Bearer {token}"}


def all_shops(api):
    shops, cursor = [], None
    while True:
        page = api.get("/shops", params={"limit": 100, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        shops += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return shops


def test_three_instances_run_each_on_a_sandbox_host_of_its_own(instance_ids, sandbox_hosts):
    assert len(instance_ids) == 3
    assert sorted(sandbox_hosts) == [f"{PROJECT}-{i}" for i in instance_ids]
    assert len({h["address"] for h in sandbox_hosts.values()}) == 3


def test_every_instance_is_alive_and_ready(apis):
    for api in apis:
        assert api.get("/healthz").json() == {"status": "ok"}
        ready = api.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"
        assert set(ready.json()["checks"].values()) == {"ok"}


def test_a_shop_created_through_one_host_is_ranked_with_its_reviews_by_the_others(apis, write_token):
    writer, *readers = apis
    run = uuid.uuid4().hex[:8]
    best = writer.post(
        "/shops", json={"name": f"Best {run}", "address": "1 Shared St"}, headers=authorised(write_token)
    )
    worst = writer.post(
        "/shops", json={"name": f"Worst {run}", "address": "2 Shared St"}, headers=authorised(write_token)
    )
    assert best.status_code == worst.status_code == 201, best.text + worst.text
    best_id, worst_id = best.json()["id"], worst.json()["id"]
    for user, stars in (("ana", 5), ("ben", 5), ("cy", 4)):
        written = writer.put(f"/shops/{best_id}/reviews/{user}", json={"stars": stars}, headers=authorised(write_token))
        assert written.status_code == 201, written.text
    written = writer.put(f"/shops/{worst_id}/reviews/ana", json={"stars": 1}, headers=authorised(write_token))
    assert written.status_code == 201, written.text

    ranking_by_writer = [s["id"] for s in all_shops(writer)]
    for reader in readers:
        shops = all_shops(reader)
        # The same table behind every host: the same shops, in the same order.
        assert [s["id"] for s in shops] == ranking_by_writer
        by_id = {s["id"]: s for s in shops}
        assert by_id[best_id]["review_count"] == 3
        assert by_id[best_id]["average_stars"] == pytest.approx(14 / 3)
        assert by_id[worst_id]["review_count"] == 1
        # Five-star reviews lift a shop above the unreviewed ones, a one-star review sinks it below.
        assert shops[0]["id"] == best_id
        assert shops[-1]["id"] == worst_id
        reviews = reader.get(f"/shops/{best_id}/reviews").json()["items"]
        assert sorted((r["user"], r["stars"]) for r in reviews) == [("ana", 5), ("ben", 5), ("cy", 4)]


def test_a_photo_uploaded_through_one_host_is_public_and_listed_by_the_others(apis, write_token):
    uploader, *readers = apis
    body = {"name": f"Photogenic {uuid.uuid4().hex[:8]}", "address": "3 Shared St"}
    shop = uploader.post("/shops", json=body, headers=authorised(write_token)).json()
    uploaded = uploader.post(
        f"/shops/{shop['id']}/photos",
        files={"file": ("photo.png", PHOTO, "image/png")},
        headers=authorised(write_token),
    )
    assert uploaded.status_code == 201, uploaded.text
    url = uploaded.json()["url"]

    public = httpx.get(url, timeout=30)  # anonymous: no credentials, no token
    assert public.status_code == 200
    # The same image, re-encoded by the API without its metadata: a PNG of the same size (IHDR).
    assert public.headers["content-type"] == "image/png"
    assert public.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert public.content[16:24] == PHOTO[16:24]
    for reader in readers:
        assert [p["url"] for p in reader.get(f"/shops/{shop['id']}/photos").json()["items"]] == [url]


def test_the_configure_phase_reached_every_instance_at_its_sandbox_host_only(instance_ids, sandbox_hosts):
    # Written by converge.yml from the hostvars of the run: the addresses Ansible connected to.
    configured = json.loads((EPHEMERAL / "configured-hosts.json").read_text())
    assert sorted(h["instance_id"] for h in configured) == instance_ids
    for host in configured:
        address = ipaddress.ip_address(host["ansible_host"])
        assert address in SANDBOX_NETWORK, host
        assert host["ansible_host"] == sandbox_hosts[f"{PROJECT}-{host['instance_id']}"]["address"]
        # The embedded AWS hands out addresses of its own, which lead nowhere.
        assert host["ansible_host"] not in (host["public_ip_address"], host["private_ip_address"]), host
        assert ipaddress.ip_address(host["public_ip_address"]) not in SANDBOX_NETWORK
        assert host["ansible_port"] == SSH_PORT


def ssh_banner(address, port):
    """What answers a TCP connection to the port: sshd's banner, or None (refused, dropped or silent)."""
    try:
        with socket.create_connection((address, port), timeout=3) as connection:
            connection.settimeout(3)
            return connection.recv(64).decode(errors="replace")
    except OSError:
        return None


def test_ssh_answers_on_ssh_port_only_and_the_security_group_opens_that_port_alone(sandbox_hosts, instance_ids):
    # sshd moved at first boot (the user data) and stays (base_system's Port line); ufw lets only it in.
    for host in sandbox_hosts.values():
        assert (ssh_banner(host["address"], SSH_PORT) or "").startswith("SSH-2.0-"), host["name"]
        assert ssh_banner(host["address"], 22) is None, host["name"]
    ec2 = ec2_client()
    group = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"{PROJECT}-api"]}])
    ssh_rules = [
        p
        for p in group["SecurityGroups"][0]["IpPermissions"]
        for r in p.get("IpRanges", [])
        if "SSH" in r.get("Description", "")
    ]
    assert [(p["FromPort"], p["ToPort"]) for p in ssh_rules] == [(SSH_PORT, SSH_PORT)]
    # Each instance was launched with the user data that moves sshd before it starts.
    for instance_id in instance_ids:
        user_data = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
        assert f"Port {SSH_PORT}" in base64.b64decode(user_data).decode()
