"""``stats ingest`` and ``stats report``: idempotent ingest of server event logs (growing,
partial, rotated, rewritten and malformed files), reports per day by region, channel,
sponsor and server, likely blocks, the plot, and SSH sources with a pinned host key."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import date, datetime, timedelta, UTC

import sqlalchemy as sa

from onehop.core.serverentry import decode_server_entry
from tests.e2e.conftest import page  # noqa: F401  (fixture)
from tests.helpers.sshd import private_sshd

UNTIL = date(2025, 3, 14)


def line(name: str, day: date, host: str = "fra1", hour: int = 10, **fields) -> str:
    """One event as the server writes it (sorted keys, compact, one line)."""
    record = {**fields, "event_name": name, "timestamp": f"{day.isoformat()}T{hour:02d}:00:00Z", "host_id": host}
    return json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n"


def tunnel(day: date, region: str, host: str = "fra1", channel: str = "", sponsor: str = "", **extra) -> str:
    fields = {"client_region": region, "relay_protocol": "OSSH", "handshake_completed": True, "bytes_up": 1_000,
              "bytes_down": 100_000, "duration": 5_000, "propagation_channel_id": channel, "sponsor_id": sponsor,
              "client_platform": "Linux_onehop", "client_version": 7}
    return line("server_tunnel", day, host, **{**fields, **extra})


def network(cli) -> dict:
    sponsor = cli.ok("sponsor", "add", "--name", "Acme")
    channel = cli.ok("channel", "add", "--name", "email-1")
    cli.ok("host", "add", "--name", "fra1", "--ip", "198.51.100.1", "--region", "DE")
    servers = [cli.ok("server", "add", "--host", "fra1", "--channel", "email-1", "--ip", f"198.51.100.{n}",
                      "--ossh-port", str(port)) for n, port in ((2, 443), (3, 8443))]
    return {"sponsor": sponsor, "channel": channel, "servers": [s["id"] for s in servers]}


def events_in_db(url: str) -> list[dict]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(sa.text(
            "SELECT event_name, server_id, region, day FROM stats_events ORDER BY id"))]
    engine.dispose()
    return rows


def test_ingest_reads_only_new_complete_lines(cli, tmp_path):
    net = network(cli)
    log = tmp_path / "logs" / net["servers"][0] / "events.jsonl"
    log.parent.mkdir(parents=True)
    first = "".join(tunnel(UNTIL, "IR") for _ in range(3)) + line("unique_user", UNTIL, client_region="IR")
    log.write_text(first + '{"event_name":"server_tun')  # the server was killed mid-line
    result = cli.ok("stats", "ingest", "--from", tmp_path / "logs")
    assert result["events_added"] == {"server_tunnel": 3, "unique_user": 1} and result["new_files"] == 1
    partial = len('{"event_name":"server_tun')
    assert result["pending_partial_lines"] == [{"path": f"{net['servers'][0]}/events.jsonl", "bytes": partial}]
    again = cli.ok("stats", "ingest", "--from", tmp_path / "logs")
    assert again["events_added_total"] == 0 and again["unchanged_files"] == 1
    # the line gets completed, and the file grows
    text = log.read_text().removesuffix('{"event_name":"server_tun') + tunnel(UNTIL, "DE") + tunnel(UNTIL, "DE")
    log.write_text(text)
    grown = cli.ok("stats", "ingest", "--from", tmp_path / "logs")
    assert grown["events_added"] == {"server_tunnel": 2} and grown["malformed_lines"] == 0
    rows = events_in_db(cli.url)
    assert len(rows) == 6 and {r["server_id"] for r in rows} == {net["servers"][0]}
    assert cli.ok("stats", "ingest", "--from", tmp_path / "logs")["events_added_total"] == 0


def test_rotation_rewrites_and_malformed_lines(cli, tmp_path):
    net = network(cli)
    logs = tmp_path / "logs"
    (logs / "fra1").mkdir(parents=True)
    # files named after the server (no directory), as an operator might copy them
    log = logs / "fra1" / f"{net['servers'][1]}.jsonl"
    log.write_bytes((tunnel(UNTIL, "IR") + "not json at all\n" + "[1, 2]\n" + '{"no": "event name"}\n').encode()
                    + b"\xff\xfe\n" + ('{"event_name":"server_tu' + tunnel(UNTIL, "IR")).encode())
    result = cli.ok("stats", "ingest", "--from", logs)
    assert result["events_added"] == {"server_tunnel": 2}  # the torn line's event is recovered
    assert result["malformed_reasons"] == {"not JSON": 1, "not a JSON object": 1, "no event_name": 1,
                                           "not UTF-8": 1, "torn line (a partial write) before an event": 1}
    assert all("at byte" in e for e in result["malformed_examples"])
    # rotation: the file is renamed and a new one started; both are read from where they stand
    rotated = log.with_name(log.name + ".1")
    log.rename(rotated)
    with rotated.open("a") as f:
        f.write(tunnel(UNTIL, "DE"))  # written just before the rotation
    log.write_text(tunnel(UNTIL, "FR"))
    after = cli.ok("stats", "ingest", "--from", logs)
    assert after["events_added"] == {"server_tunnel": 2} and after["new_files"] == 1
    assert sorted(r["region"] for r in events_in_db(cli.url)) == ["DE", "FR", "IR", "IR"]
    # a rewritten file (same first line, different ingested part) is skipped, loudly
    rotated.write_text(tunnel(UNTIL, "IR") + tunnel(UNTIL, "CN") * 20)
    rewritten = cli.run("stats", "ingest", "--from", logs, "--json")
    assert rewritten.rc == 1 and "changed (truncated or rewritten?)" in rewritten.json()["errors"][0]
    assert len(events_in_db(cli.url)) == 4
    # compressed and hidden files are not read
    (logs / "old.jsonl.gz").write_bytes(b"\x1f\x8b")
    (logs / ".hidden").write_text(tunnel(UNTIL, "IR"))
    assert cli.run("stats", "ingest", "--from", logs, "--json").json()["files"] == 2


def test_events_are_tied_to_servers_without_addresses(cli, tmp_path):
    net = network(cli)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "fra1.log").write_text(tunnel(UNTIL, "IR", dial_port_number=8443)      # only server 2 has 8443
                                   + tunnel(UNTIL, "IR", dial_port_number=9)        # no server has port 9
                                   + line("irregular_tunnel", UNTIL, listener_protocol="OSSH",
                                          tunnel_error="read tcp 203.0.113.77:4431: reset", client_region="IR"))
    result = cli.ok("stats", "ingest", "--from", logs)
    assert result["unresolved_events"] == 2
    assert [r["server_id"] for r in events_in_db(cli.url)] == [net["servers"][1], None, None]
    engine = sa.create_engine(cli.url)
    with engine.connect() as connection:
        details = connection.execute(sa.text("SELECT details FROM stats_events WHERE event_name = "
                                             "'irregular_tunnel'")).scalar()
    engine.dispose()
    assert "203.0.113.77" not in details and "[ip]" in details


def synthetic_fortnight(cli, tmp_path) -> dict:
    """Server 1: IR falls from 40 to 5 a day in the last week, DE stays at 30 (a block);
    server 2: IR 20 a day, then nothing at all (silent: down, or logs missing)."""
    net = network(cli)
    channel, sponsor = net["channel"]["id"], net["sponsor"]["id"]
    one, two = (tmp_path / "logs" / s / "events.jsonl" for s in net["servers"])
    one.parent.mkdir(parents=True)
    two.parent.mkdir(parents=True)
    with one.open("w") as f1, two.open("w") as f2:
        for n in range(14):
            day = UNTIL - timedelta(days=13 - n)
            this_week = n >= 7
            iran = 5 if this_week else 40
            f1.write("".join(tunnel(day, "IR", channel=channel, sponsor=sponsor) for _ in range(iran)))
            f1.write("".join(tunnel(day, "DE", channel=channel, sponsor=sponsor) for _ in range(30)))
            f1.write("".join(line("unique_user", day, client_region="IR", propagation_channel_id=channel,
                                  sponsor_id=sponsor) for _ in range(3)))
            if not this_week:
                f2.write("".join(tunnel(day, "IR") for _ in range(20)))
            f1.write(tunnel(day, "DE", client_platform="onehop_deploy_check"))  # a deploy check: not counted
    cli.ok("stats", "ingest", "--from", tmp_path / "logs")
    return net


def test_report_per_day_and_likely_blocks(cli, tmp_path):
    net = synthetic_fortnight(cli, tmp_path)
    report = cli.ok("stats", "report", "--until", UNTIL.isoformat(), "--days", "7")
    assert report["from"] == (UNTIL - timedelta(days=6)).isoformat() and len(report["totals"]) == 7
    assert report["totals"][-1] == {"day": UNTIL.isoformat(), "connections": 35, "unique_users": 3,
                                    "bytes": 35 * 101_000}
    last_day = [r for r in report["by_region"] if r["day"] == UNTIL.isoformat()]
    assert {(r["region"], r["connections"]) for r in last_day} == {("IR", 5), ("DE", 30)}
    channel = [r for r in report["by_channel"] if r["channel"] == net["channel"]["id"]][-1]
    assert channel["name"] == "email-1" and channel["unique_users"] == 3
    sponsor = [r for r in report["by_sponsor"] if r["sponsor"] == net["sponsor"]["id"]][-1]
    assert sponsor["name"] == "Acme" and sponsor["connections"] == 35
    assert {r["server"] for r in report["by_server"]} == {net["servers"][0]}
    blocks = {(b["server"], b["region"]): b for b in report["likely_blocks"]}
    assert set(blocks) == {(net["servers"][0], "IR"), (net["servers"][1], "IR")}
    block = blocks[(net["servers"][0], "IR")]
    assert block["kind"] == "likely block" and block["previous_daily_mean"] == 40 and block["daily_mean"] == 5
    assert block["since"] == (UNTIL - timedelta(days=6)).isoformat() and block["host"] == "fra1"
    assert blocks[(net["servers"][1], "IR")]["kind"] == "silent"
    stricter = cli.ok("stats", "report", "--until", UNTIL.isoformat(), "--block-ratio", "0.1")
    assert [b["kind"] for b in stricter["likely_blocks"]] == ["silent"]  # 5/40 is not below 10%


def test_human_report_and_plot(cli, tmp_path):
    synthetic_fortnight(cli, tmp_path)
    plot = tmp_path / "report.png"
    result = cli.run("stats", "report", "--until", UNTIL.isoformat(), "--days", "14", "--plot", plot)
    assert result.rc == 0, result.err
    for heading in ("Per day", "By region", "By channel", "By sponsor", "By server", "Likely blocks"):
        assert heading in result.out
    assert "likely block" in result.out and "silent" in result.out and "email-1" in result.out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 20_000
    assert "--days" in cli.fails("stats", "report", "--days", "0", rc=2)
    assert "--until" in cli.fails("stats", "report", "--until", "yesterday", rc=2)


def test_ingest_over_ssh_with_the_pinned_key(sqlite_cli, tmp_path):
    cli = sqlite_cli
    net = network(cli)
    logs = tmp_path / "remote" / "logs"
    (logs / net["servers"][0]).mkdir(parents=True)
    (logs / net["servers"][0] / "events.jsonl").write_text(tunnel(UNTIL, "IR") * 5 + '{"partial')
    with private_sshd(tmp_path / "sshd") as sshd:
        cli.ok("host", "add", "--name", "lo", "--ip", "127.0.0.1", "--region", "DE", "--ssh-port", sshd.port,
               "--ssh-host-key", sshd.other_host_key)
        source = f"ssh://lo{logs}"
        err = cli.fails("stats", "ingest", "--from", source, "--ssh-key", sshd.client_key)
        assert "does not match the key pinned" in err and events_in_db(cli.url) == []
        cli.ok("host", "set-key", "--name", "lo", "--ssh-host-key", sshd.host_key)
        result = cli.ok("stats", "ingest", "--from", source, "--ssh-key", sshd.client_key)
        assert result["source"] == source and result["events_added"] == {"server_tunnel": 5}
        assert result["pending_partial_lines"][0]["bytes"] == len('{"partial')
        # the log was written by fra1 but read from host lo: said, not refused
        assert any("written by host_id 'fra1'" in w for w in result["warnings"])
        with (logs / net["servers"][0] / "events.jsonl").open("a") as f:
            f.write('": 1}\n' + tunnel(UNTIL, "DE") * 2)
        grown = cli.ok("stats", "ingest", "--from", source, "--ssh-key", sshd.client_key)
        assert grown["events_added"] == {"server_tunnel": 2} and grown["malformed_lines"] == 1
        assert cli.ok("stats", "ingest", "--from", source, "--ssh-key", sshd.client_key)["events_added_total"] == 0
        assert "cannot list" in cli.fails("stats", "ingest", "--from", "ssh://lo/nonexistent", "--ssh-key",
                                          sshd.client_key)
    assert len(events_in_db(cli.url)) == 7


def database_dump(url: str) -> str:
    """Every row of every table, as text (what a dump of the database would show)."""
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        tables = sa.inspect(connection).get_table_names()
        dump = "\n".join(f"{t}: {[tuple(r) for r in connection.execute(sa.text(f'SELECT * FROM {t}'))]}"
                         for t in tables)
    engine.dispose()
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        dump += "".join(open(p, "rb").read().decode("latin-1") for p in (path, path + "-wal") if os.path.exists(p))
    return dump


async def test_a_real_servers_events_never_put_a_client_address_in_the_database(cli, tmp_path, page):  # noqa: F811
    from onehop.client.candidates import MemoryStore
    from onehop.client.config import ClientConfig
    from onehop.client.controller import Controller
    from onehop.client.notices import Notices
    from tests.helpers.net import free_port
    from onehop.server.config import parse_server_config
    from onehop.server.service import TunnelServer
    from tests.helpers.waiting import wait_until
    from tests.e2e.proxyclient import http_get_via_socks
    from tests.e2e.test_server_stats import CLIENT_IP, STATUS_DATA, geoip_files, named, send_status, source_bound_opener

    cli.ok("channel", "add", "--name", "c1")
    cli.ok("host", "add", "--name", "lo", "--ip", "198.51.100.1", "--region", "CA")
    ip = "127.0.0.63"
    server = cli.ok("server", "add", "--host", "lo", "--channel", "c1", "--ip", ip, "--ossh-port", free_port(ip),
                    "--allow-bogons")
    cli.ok("export", "--out", tmp_path / "export")
    log = tmp_path / "logs" / server["id"] / "events.jsonl"
    log.parent.mkdir(parents=True)
    raw = json.loads((tmp_path / "export" / server["id"] / "server.json").read_text())
    raw.update(LogFilename=str(log), GeoIPDatabaseFilenames=geoip_files(tmp_path), OSSHKeyDerivationWorkers=0)
    running = TunnelServer(parse_server_config(raw, "test", str(tmp_path / "export" / server["id"])))
    await running.start()
    entry = decode_server_entry((tmp_path / "export" / server["id"] / "server-entry.dat").read_text().strip())
    config = ClientConfig(data_dir=str(tmp_path / "client"), socks_port=0, http_port=0, tunnel_connect_timeout=5.0,
                          establish_pause=0.2, protocols=("OSSH",))
    controller = Controller(config, MemoryStore([entry]), Notices(None), open_socket=source_bound_opener(CLIENT_IP))
    await controller.start_proxies()
    task = asyncio.get_running_loop().create_task(controller.run())
    try:
        await wait_until(lambda: controller.active is not None, 20)
        body, port = page
        assert await http_get_via_socks(controller.socks_port, "127.0.0.1", port) == body
        await wait_until(lambda: named(log, "unique_user"), 10)
        await send_status(controller, STATUS_DATA)  # carries the client's address: the server drops it
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await controller.close()
    await wait_until(lambda: named(log, "server_tunnel"), 10)
    await running.stop()
    utc_today = datetime.now(UTC).date()
    # a damaged or foreign log may still hold an address: ingest scrubs it
    with log.open("a") as f:
        f.write(line("failed_tunnel", utc_today, host="lo", client_region="DE", note=f"from {CLIENT_IP}:4431",
                     nested={"peer": [CLIENT_IP]}, client_platform=f"x{CLIENT_IP}"))
    assert CLIENT_IP not in log.read_text().splitlines()[0]

    result = await asyncio.to_thread(cli.ok, "stats", "ingest", "--from", tmp_path / "logs")
    assert {"server_tunnel", "unique_user", "remote_server_list", "failed_tunnel"} <= set(result["events_added"])
    assert result["unresolved_events"] == 0 and result["malformed_lines"] == 0
    report = cli.ok("stats", "report")
    today = [r for r in report["by_region"] if r["day"] == utc_today.isoformat() and r["region"] == "DE"]
    assert today and today[0]["connections"] == 1 and today[0]["unique_users"] == 1
    assert today[0]["bytes"] >= len(page[0])
    assert {r["server"] for r in report["by_server"]} == {server["id"]}
    dump = database_dump(cli.url)
    assert "server_tunnel" in dump and "Berlin_Mitte" in dump  # the dump does hold the events
    assert CLIENT_IP not in dump


def test_ingest_reads_only_event_logs_and_says_when_a_folder_has_none(cli, tmp_path):
    """Issue 16 item 9: pointed at an export, ingest parsed server.json and a zip line by
    line, counted thousands of malformed lines, then claimed a file changed while read."""
    import zipfile
    network(cli)
    wrong = tmp_path / "export" / "srv"
    wrong.mkdir(parents=True)
    (wrong / "server.json").write_text(json.dumps({"HostID": "fra1", "SshPassword": "x" * 64}, indent=2))
    with zipfile.ZipFile(tmp_path / "export" / "client.pyz", "w") as archive:
        archive.writestr("__main__.py", "print('hi')\n" * 5000)
        archive.writestr("blob.bin", os.urandom(200_000))
    (tmp_path / "export" / "notes.txt").write_text("no newline at all")
    result = cli.run("stats", "ingest", "--from", tmp_path / "export")
    assert result.rc == 0, result.err
    assert result.out.count("\n") == 1 and result.out.startswith(f"no event logs in {tmp_path / 'export'}")
    assert "3 other files skipped" in result.out
    report = cli.ok("stats", "ingest", "--from", tmp_path / "export")
    assert (report["files"], report["skipped_files"], report["malformed_lines"], report["errors"]) == (0, 3, 0, [])
    assert report["pending_partial_lines"] == [] and events_in_db(cli.url) == []
    # beside real logs (whatever their name) the other files are skipped, and said to be
    (wrong / "rotated.1").write_text(tunnel(UNTIL, "IR") * 2)
    (wrong / "events.jsonl").write_text('{"event_name":"server_tun')  # its first line is being written
    mixed = cli.run("stats", "ingest", "--from", tmp_path / "export")
    assert mixed.rc == 0 and "2 files (1 new" in mixed.out and "3 files skipped, not event logs" in mixed.out
    assert "partial last line left for later: srv/events.jsonl" in mixed.out
    assert len(events_in_db(cli.url)) == 2
