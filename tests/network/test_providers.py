"""Providers: AWS EC2 through moto's server on loopback (instances, security groups, key
pairs, elastic IPs), and ssh pools of machines someone else made.

moto's instances never boot, so "wait until it answers" (``launch.READINESS``) is
replaced here by a step that answers at once with the instance's own address (nothing
is deployed in these tests; ``test_heal`` maps instances to a loopback sshd)."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from onehop.network import launch
from onehop.network.providers import Answer, ProviderError
from onehop.network.providers.aws import AwsProvider
from tests.network.test_lists_publish import moto_endpoint  # noqa: F401  (fixture)

REGION = "eu-central-1"


def answer_at_once(machine):
    return Answer(machine.public_ip, machine.ssh_port, machine.ssh_host_key, machine.public_ip)


@pytest.fixture
def aws(moto_endpoint, monkeypatch):  # noqa: F811
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setattr(launch, "READINESS", answer_at_once)
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_endpoint)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return ec2, image, moto_endpoint


def add_aws(cli, aws, name="aws1", *extra):
    _, image, endpoint = aws
    return cli.ok("provider", "add", "--name", name, "--kind", "aws", "--image", image, "--endpoint-url", endpoint,
                  *extra)


def live_instances(ec2) -> set[str]:
    return {i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] != "terminated"}


def groups(ec2) -> set[str]:
    return {g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]} - {"default"}


def key_pairs(ec2) -> set[str]:
    return {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]}


def test_launch_records_hosts_and_destroy_releases_exactly_what_launch_made(cli, aws):
    ec2, image, _ = aws
    provider = add_aws(cli, aws, "aws1", "--elastic-ip")
    assert provider["settings"]["elastic_ip"] and "testing" not in json.dumps(provider)  # no credentials stored
    # someone else's things in the same account (moto's server lives for the module): never touched
    suffix = uuid.uuid4().hex[:6]
    ec2.create_key_pair(KeyName=f"operator-laptop-{suffix}")
    other_group = ec2.create_security_group(GroupName=f"web-{suffix}", Description="not onehop")["GroupId"]
    before = live_instances(ec2), groups(ec2), key_pairs(ec2), len(ec2.describe_addresses()["Addresses"])
    other = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    other_ip = ec2.allocate_address(Domain="vpc")["AllocationId"]

    launched = cli.ok("host", "launch", "--provider", "aws1", "--region", REGION, "--count", "2",
                      "--port", "443", "--port", "2222")
    assert [h["country"] for h in launched] == ["DE", "DE"]
    hosts = {h["name"]: h for h in cli.ok("host", "list")}
    first, second = (hosts[h["host"]] for h in launched)
    assert first["region"] == "DE" and first["datacenter"] == REGION and first["provider"] == "aws1"
    assert first["ssh_host_key"].startswith("ssh-ed25519 ")
    assert len(live_instances(ec2)) == len(before[0]) + 3 and len(groups(ec2)) == len(before[1]) + 2
    assert len(key_pairs(ec2)) == len(before[2]) + 2
    addresses = ec2.describe_addresses()["Addresses"]
    assert {first["ip_address"], second["ip_address"]} <= {a["PublicIp"] for a in addresses if a.get("InstanceId")}
    group = ec2.describe_security_groups(GroupNames=[f"onehop-{first['name']}"])["SecurityGroups"][0]
    assert sorted(p["FromPort"] for p in group["IpPermissions"]) == [22, 443, 2222]
    (reservation,) = ec2.describe_instances(Filters=[{"Name": "tag:onehop-host", "Values": [first["name"]]}])[
        "Reservations"]
    user_data = ec2.describe_instance_attribute(InstanceId=reservation["Instances"][0]["InstanceId"],
                                                Attribute="userData")["UserData"]["Value"]
    import base64
    cloud_init = base64.b64decode(user_data).decode()
    assert first["ssh_host_key"] in cloud_init and provider["ssh_public_key"] in cloud_init

    destroyed = cli.ok("host", "destroy", "--name", first["name"])
    assert sorted(destroyed["released"]) == ["elastic-ip", "instance", "key-pair", "security-group"]
    assert reservation["Instances"][0]["InstanceId"] not in live_instances(ec2)
    assert live_instances(ec2) == before[0] | {other} | (live_instances(ec2) - before[0] - {other})
    assert len(live_instances(ec2)) == len(before[0]) + 2 and other in live_instances(ec2)
    assert groups(ec2) == before[1] | {f"onehop-{second['name']}"}
    assert key_pairs(ec2) == before[2] | {f"onehop-{second['name']}"}
    assert {a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]} >= {other_ip}
    assert len(ec2.describe_addresses()["Addresses"]) == before[3] + 2
    assert other_group in {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    assert first["name"] not in {h["name"] for h in cli.ok("host", "list")}
    state = {row["host"]: row for row in cli.ok("host", "launches")}
    assert state[first["name"]]["state"] == "destroyed" and state[first["name"]]["unreleased"] == []
    assert cli.fails("host", "destroy", "--name", "nope")  # not a launched host
    actions = [a["action"] for a in cli.ok("audit", "--limit", "30")]
    assert {"provider.add", "host.launch-start", "host.launch", "host.destroy"} <= set(actions)


def test_a_quota_half_way_leaves_nothing_half_recorded_and_a_rerun_launches(cli, aws, monkeypatch):
    ec2, _, _ = aws
    add_aws(cli, aws, "aws1", "--elastic-ip")
    before = live_instances(ec2), groups(ec2), key_pairs(ec2)  # moto's server lives for the module
    real_call = AwsProvider._call

    def quota_on_addresses(self, what, function, **kwargs):
        if what == "allocate-address":
            raise ProviderError("AWS allocate-address: AddressLimitExceeded: too many addresses", quota=True)
        return real_call(self, what, function, **kwargs)

    monkeypatch.setattr(AwsProvider, "_call", quota_on_addresses)
    err = cli.fails("host", "launch", "--provider", "aws1", "--region", REGION)
    assert "AddressLimitExceeded" in err and "Traceback" not in err
    assert cli.ok("host", "list") == []  # no host recorded
    (failed,) = cli.ok("host", "launches")
    assert failed["state"] == "failed" and failed["unreleased"] == []  # what it made was released
    assert (live_instances(ec2), groups(ec2), key_pairs(ec2)) == before
    audit = cli.ok("audit", "--limit", "5")
    assert audit[0]["action"] == "host.launch-failed" and audit[0]["details"]["quota"] is True

    monkeypatch.setattr(AwsProvider, "_call", real_call)
    (again,) = cli.ok("host", "launch", "--provider", "aws1", "--region", REGION)
    assert [h["name"] for h in cli.ok("host", "list")] == [again["host"]]
    assert len(live_instances(ec2) - before[0]) == 1


def test_bad_provider_input_is_reported_at_once(cli, aws):
    err = cli.fails("provider", "add", "--name", "aws1", "--kind", "aws", "--credentials-file", "/nonexistent",
                    rc=2)
    assert "--image" in err and "--credentials-file" in err
    add_aws(cli, aws)
    assert "already the name" in cli.fails("provider", "add", "--name", "aws1", "--kind", "aws", "--image", "ami-1")
    assert "not a region" in cli.fails("host", "launch", "--provider", "aws1", "--region", "mars-1", rc=2)
    assert "unknown provider" in cli.fails("host", "launch", "--provider", "nope", "--region", REGION)


def test_an_ssh_pool_hands_out_its_machines_and_takes_them_back(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(launch, "READINESS", answer_at_once)
    machines = tmp_path / "machines.json"
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEtgT7KvP1+gzrvFNpW8Rk2m0i2JuBkR1mL+o7bqA6Xs"
    machines.write_text(json.dumps([{"address": "203.0.113.9", "region": "NL", "ssh_host_key": key}]))
    cli.ok("provider", "add", "--name", "pool", "--kind", "ssh", "--machines", machines)
    (first,) = cli.ok("host", "launch", "--provider", "pool", "--region", "NL")
    host = cli.ok("host", "list")[0]
    assert host["ip_address"] == "203.0.113.9" and host["ssh_host_key"] == key and host["region"] == "NL"
    assert "no free machine" in cli.fails("host", "launch", "--provider", "pool", "--region", "NL")
    cli.ok("host", "destroy", "--name", first["host"])
    cli.ok("host", "launch", "--provider", "pool", "--region", "NL")  # the machine is free again


def test_a_launch_interrupted_while_pending_is_released_by_the_next_heal(sqlite_cli, aws, monkeypatch):
    """The process died after AWS made the key pair and the group: a later run (heal
    starts with this) closes the launch and releases both."""
    cli = sqlite_cli
    ec2, _, _ = aws
    add_aws(cli, aws, "aws1")
    before = groups(ec2), key_pairs(ec2)
    real_call = AwsProvider._call

    def die(self, what, function, **kwargs):
        if what == "run-instances":
            raise KeyboardInterrupt  # not a provider error: the process is gone
        return real_call(self, what, function, **kwargs)

    monkeypatch.setattr(AwsProvider, "_call", die)
    assert cli.run("host", "launch", "--provider", "aws1", "--region", REGION).rc != 0
    monkeypatch.setattr(AwsProvider, "_call", real_call)
    (pending,) = cli.ok("host", "launches")
    assert pending["state"] == "pending" and len(pending["unreleased"]) == 2 and len(groups(ec2)) == len(before[0]) + 1
    monkeypatch.setattr(launch, "STALE_PENDING", 0.0)
    assert cli.ok("heal")["plan"] == []  # no stats, nothing to replace; but the leftovers go
    (closed,) = cli.ok("host", "launches")
    assert closed["state"] == "failed" and closed["unreleased"] == []
    assert (groups(ec2), key_pairs(ec2)) == before
