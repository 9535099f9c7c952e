"""``network heal`` end to end: two servers flagged by the stats are replaced by hosts
launched in moto's EC2 (on loopback), the lists are republished to moto's S3, the new
hosts are deployed over the private sshd, and a client holding only the old entries
reaches a replacement through the remote list.

moto's instances never boot, so "wait until it answers" (``launch.READINESS``) maps each
launched instance to the loopback sshd (listening on 127.0.0.2 and 127.0.0.3, one per
host) and gives its servers a loopback address; the deploy root is per host
(``--root .../{host}``) because both "hosts" are this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import base64
import json
from datetime import timedelta

import boto3
import pytest
from botocore.config import Config

from onehop.client.app import remote_fetcher
from onehop.client.config import ClientConfig
from onehop.client.controller import Controller
from onehop.client.datastore import Datastore
from onehop.client.notices import Notices
from onehop.core.serverentry import decode_server_entry
from onehop.demo import serve_page
from tests.helpers.net import free_port
from onehop.network import audit, launch
from onehop.network.deploy.wheel import build_wheel, source_tree
from onehop.network.providers import Answer, ProviderError
from onehop.network.providers.aws import AwsProvider
from tests.helpers.waiting import wait_until
from tests.e2e.proxyclient import http_get_via_socks
from tests.helpers.sshd import private_sshd
from tests.network.test_deploy import cleanup_servers
from tests.network.test_lists_publish import moto_endpoint  # noqa: F401  (fixture)
from tests.network.test_providers import REGION, add_aws, aws, live_instances  # noqa: F401  (fixture)
from tests.network.test_stats import line, tunnel

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TODAY = audit.utc_now().date()


@contextlib.contextmanager
def cleanup_all(roots):
    """Stop the servers deployed under every per-host root, whatever happens."""
    try:
        yield
    finally:
        for root in roots.iterdir() if roots.is_dir() else []:
            with cleanup_servers(root):
                pass


def fortnight(logs, server_ids: dict[str, str], hosts: dict[str, str], channel: str) -> None:
    """blocked-1, blocked-2: 20 a day from IR, then IR gone while DE keeps 5 a day (likely
    blocks, still carrying users); silent: 20 a day from IR, then nothing (down: left alone)."""
    for role, server_id in server_ids.items():
        path, host = logs / server_id / "events.jsonl", hosts[role]
        path.parent.mkdir(parents=True)
        with path.open("w") as f:
            for n in range(14):
                day = TODAY - timedelta(days=13 - n)
                if n < 7:
                    f.write("".join(tunnel(day, "IR", host, channel=channel, conn=i) for i in range(20)))
                elif role != "silent":
                    f.write("".join(tunnel(day, "DE", host, channel=channel, conn=i) for i in range(5)))
                    f.write(line("failed_tunnel", day, host, client_region="IR"))


async def through_remote_list(entries: list[str], remote_url: str, public_key: str, tmp_path, page_port: int):
    config = ClientConfig(data_dir=str(tmp_path / "client"), socks_port=0, http_port=0, tunnel_connect_timeout=5.0,
                          establish_pause=0.2, protocols=("OSSH",),
                          remote_server_list_urls=({"URL": base64.b64encode(remote_url.encode()).decode(),
                                                    "OnlyAfterAttempts": 0, "SkipVerify": False},),
                          remote_server_list_signature_public_key=public_key)
    notices, remote_notices = Notices(None), []
    notices.subscribe(lambda n: remote_notices.append(n) if n["noticeType"] not in (
        "ConnectingServer", "CandidateServers", "AvailableEgressRegions") and n["data"].get("message") !=
        "server connection failed" else None)
    store = Datastore(config.data_dir)
    store.import_entries([decode_server_entry(e) for e in entries], "EMBEDDED")
    controller = Controller(config, store, notices, remote_lists=remote_fetcher(config, store, notices))
    await controller.start_proxies()
    task = asyncio.get_running_loop().create_task(controller.run())
    try:
        await wait_until(lambda: controller.active is not None, 40)
        body = await http_get_via_socks(controller.socks_port, "127.0.0.1", page_port)
        return controller.active, body
    except AssertionError:
        raise AssertionError(remote_notices[-10:]) from None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await controller.close()


async def test_heal_replaces_two_blocked_servers_end_to_end(sqlite_cli, tmp_path, aws, monkeypatch):  # noqa: F811
    cli, (ec2, _, endpoint) = sqlite_cli, aws

    async def run(*args):
        return await asyncio.to_thread(cli.run, *args)

    s3 = boto3.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}))
    s3.create_bucket(Bucket="heal-web")
    s3.put_bucket_policy(Bucket="heal-web", Policy=json.dumps({  # the published prefix is public, as docs say
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                                "Resource": "arn:aws:s3:::heal-web/web/*"}]}))
    wheel_dir = tmp_path / "wheel"
    wheel_dir.mkdir()
    wheel = await asyncio.to_thread(build_wheel, source_tree())
    (wheel_dir / wheel.name).write_bytes(wheel.data)
    roots = tmp_path / "roots"
    body = b"<html>healed</html>" * 200
    page, page_port = await serve_page(body)
    sshd_dir = tmp_path / "sshd"
    with private_sshd(sshd_dir, ("127.0.0.1", "127.0.0.2", "127.0.0.3")) as sshd, cleanup_all(roots):
        provider = add_aws(cli, aws, "aws1")
        with (sshd_dir / "authorized_keys").open("a") as f:  # what cloud-init does with the network's key
            f.write(provider["ssh_public_key"] + "\n")
        answers = [Answer("198.51.100.11", 22, sshd.other_host_key, "127.0.0.81"),  # the old hosts: never deployed
                   Answer("198.51.100.12", 22, sshd.other_host_key, "127.0.0.82"),
                   Answer("127.0.0.2", sshd.port, sshd.host_key, "127.0.0.91"),       # the replacements
                   Answer("127.0.0.3", sshd.port, sshd.host_key, "127.0.0.92")]
        monkeypatch.setattr(launch, "READINESS", lambda machine: answers.pop(0))

        cli.ok("sponsor", "add", "--name", "Acme", "--home-page", "https://acme.example/")
        channel = cli.ok("channel", "add", "--name", "c1")["id"]
        old_hosts = [h["host"] for h in cli.ok("host", "launch", "--provider", "aws1", "--region", REGION,
                                                "--count", "2")]
        port = free_port("127.0.0.91")
        olds = {role: cli.ok("server", "add", "--host", host, "--channel", "c1", "--ip", ip, "--ossh-port", port,
                             "--allow-bogons")["id"]
                for role, host, ip in (("blocked-1", old_hosts[0], "127.0.0.81"),
                                       ("blocked-2", old_hosts[1], "127.0.0.82"),
                                       ("silent", old_hosts[0], "127.0.0.83"))}
        fortnight(tmp_path / "logs", olds, {"blocked-1": old_hosts[0], "blocked-2": old_hosts[1],
                                            "silent": old_hosts[0]}, channel)
        await asyncio.to_thread(cli.ok, "stats", "ingest", "--from", tmp_path / "logs")
        publish = ("--publish-to", "s3://heal-web/web", "--s3-endpoint", endpoint)
        manifest = cli.ok("publish", "--to", "s3://heal-web/web", "--s3-endpoint", endpoint, "--no-builds")
        remote_url = next(i["url"] for i in manifest if i["kind"] == "remote-server-list")
        cli.ok("export", "--out", tmp_path / "export")
        old_entries = [(tmp_path / "export" / s / "server-entry.dat").read_text().strip() for s in olds.values()]

        dry = cli.ok("heal", "--dry-run")
        decisions = {d["server"]: d for d in dry["plan"]}
        assert {s: d["action"] for s, d in decisions.items()} == {
            olds["blocked-1"]: "replace", olds["blocked-2"]: "replace", olds["silent"]: "leave"}
        assert decisions[olds["blocked-1"]]["provider_region"] == REGION
        assert "silent" in decisions[olds["silent"]]["reason"]
        assert len(cli.ok("host", "list")) == 2  # the dry run changed nothing

        heal = ("heal", *publish, "--root", roots / "{host}", "--source", wheel_dir / wheel.name,
                "--ssh-key", sshd.client_key, "--json")
        first = await run(*heal, "--max-hosts", "1")  # the cap: one host this run
        assert first.rc == 0, first.err + first.out
        first = first.json()
        assert len(first["replaced"]) == 1 and first["deployed"][0]["ok"] and first["published"] == [remote_url]
        assert any("cap reached" in d["reason"] for d in first["plan"])

        real_call = AwsProvider._call

        def quota(self, what, function, **kwargs):
            if what == "run-instances":
                raise ProviderError("AWS run-instances: InstanceLimitExceeded: limit reached", quota=True)
            return real_call(self, what, function, **kwargs)

        monkeypatch.setattr(AwsProvider, "_call", quota)
        stopped = await run(*heal)
        assert stopped.rc == 1 and stopped.json()["errors"][0]["quota"]
        assert len(cli.ok("host", "list")) == 3  # nothing half-recorded
        assert all(not row["unreleased"] for row in cli.ok("host", "launches") if row["state"] == "failed")
        monkeypatch.setattr(AwsProvider, "_call", real_call)

        second = await run(*heal)  # the rerun finishes the job
        assert second.rc == 0, second.err + second.out
        second = second.json()
        assert len(second["replaced"]) == 1 and second["deployed"][0]["ok"] and second["destroyed"] == []
        replaced = {r["server"]: r["replacement"] for r in first["replaced"] + second["replaced"]}
        assert set(replaced) == {olds["blocked-1"], olds["blocked-2"]}
        kinds = {s["id"]: (s["kind"], s["ip_address"]) for s in cli.ok("server", "list")}
        assert kinds[olds["blocked-1"]][0] == kinds[olds["blocked-2"]][0] == "propagation"
        assert {kinds[n] for n in replaced.values()} == {("embedded", "127.0.0.91"), ("embedded", "127.0.0.92")}

        instances = live_instances(ec2)
        again = cli.ok("heal", *publish, "--no-deploy")  # idempotent: nothing more to do
        assert again["replaced"] == [] and live_instances(ec2) == instances
        assert all(d["action"] == "leave" for d in again["plan"])

        keys = cli.ok("keys", "show")
        active, got = await through_remote_list(old_entries, remote_url, keys["RemoteServerListSignaturePublicKey"],
                                                tmp_path, page_port)
        assert got == body and active is not None
        actions = {a["action"] for a in cli.ok("audit", "--limit", "200")}
        assert {"heal.plan", "heal.start", "heal.launched", "heal.replace", "heal.publish", "heal.deploy",
                "heal.launch-failed", "host.launch-failed"} <= actions
        assert len([p for root in roots.iterdir() for p in (root / "run").glob("*.pid")]) == 2
    page.close()
