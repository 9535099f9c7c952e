"""Whole-device mode against the SOCKS proxy path, in the same run (root, nft, ip).

    python bench/whole_device.py [--mib 128] [--repeat 3] [--dns 2000]

Two network namespaces joined by a veth: "device" runs ``onehop client --whole-device``;
"world" runs ``onehop server`` (10.200.1.1, OSSH), the sink of ``_common.py`` and a DNS
responder (10.200.3.1). From the device namespace one process measures, interleaved,
``--repeat`` times each:

* whole-device: a plain connection to the sink (redirected by the rules, carried by the
  transparent listener through the tunnel), one stream download of ``--mib`` MiB;
* SOCKS: the same download through the same client's SOCKS proxy (127.0.0.1, untouched
  by the rules), so both ride the same tunnel;
* DNS: ``--dns`` lookups, 32 in flight, to the world's resolver through the rules and
  udpgw (lookups per second).

Prints a table, then the figure: whole-device / SOCKS throughput (target >= 0.8).
The namespaces are removed on exit, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import direct, transfer, via_socks5

DEVICE, SERVER, WORLD = "10.200.1.2", "10.200.1.1", "10.200.3.1"
SINK_PORT, OSSH_PORT = 9000, 9443
ONEHOP = [sys.executable, "-c", "import sys; from onehop.cli import main; sys.exit(main())"]


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def build(names: dict[str, str], link: str) -> None:
    for name in names.values():
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
    sh("ip", "link", "add", link, "netns", names["dev"], "type", "veth", "peer", "name", link + "w",
       "netns", names["wld"])
    for ns, dev, ip in ((names["dev"], link, DEVICE), (names["wld"], link + "w", SERVER)):
        sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
    sh("ip", "-n", names["wld"], "addr", "add", WORLD + "/32", "dev", "lo")
    sh("ip", "-n", names["dev"], "route", "add", "default", "via", SERVER)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"whole_device bench: timed out waiting for {what}")
        time.sleep(0.1)


def dns_responder() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((WORLD, 53))
    print("READY", flush=True)
    answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton("192.0.2.1")
    while True:
        query, peer = sock.recvfrom(2048)
        sock.sendto(query[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + query[12:] + answer, peer)


def dns_rate(count: int, in_flight: int = 32) -> float:
    """Lookups per second, ``in_flight`` outstanding at a time (lost ones are resent)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2.0)
    question = b"\x07example\x04test\x00\x00\x01\x00\x01"
    send = lambda i: sock.sendto(struct.pack(">HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0) + question, (WORLD, 53))  # noqa: E731
    started, sent, answered = time.perf_counter(), 0, 0
    while sent < min(in_flight, count):
        send(sent)
        sent += 1
    while answered < count:
        try:
            sock.recv(2048)
        except TimeoutError:
            send(sent)  # one was lost: keep the window full
            sent += 1
            continue
        answered += 1
        if sent < count:
            send(sent)
            sent += 1
    return count / (time.perf_counter() - started)


def measure(socks_port: int, mib: int, repeat: int, dns: int) -> None:
    """Runs inside the device namespace; prints one JSON line."""
    total = mib << 20
    whole, socks = [], []
    transfer(direct(WORLD, SINK_PORT), "D", 1, 16 << 20)  # warm-up
    for _ in range(repeat):
        whole.append(total / transfer(direct(WORLD, SINK_PORT), "D", 1, total))
        socks.append(total / transfer(via_socks5(socks_port, WORLD, SINK_PORT), "D", 1, total))
    print(json.dumps({"whole": whole, "socks": socks, "dns": dns_rate(dns) if dns else 0.0}), flush=True)


def run(args) -> int:
    if os.geteuid() != 0 or not shutil.which("nft"):
        print("whole_device bench: needs root and nft (apt-get install nftables)", file=sys.stderr)
        return 3
    pid = os.getpid()
    names = {"dev": f"ohwd-{pid}-bdev", "wld": f"ohwd-{pid}-bwld"}
    tmp = tempfile.mkdtemp(prefix="onehop-wdbench-")
    procs: list[subprocess.Popen] = []

    def start(ns: str, *argv: str, log: str) -> subprocess.Popen:
        with open(os.path.join(tmp, log), "wb") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", names[ns], *argv], stdout=out, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    def log(name: str) -> str:
        with open(os.path.join(tmp, name), errors="replace") as f:
            return f.read()

    try:
        build(names, f"wdb{pid % 100000}")
        sh(*ONEHOP, "server", "generate", "--ip", SERVER, "--ossh-port", str(OSSH_PORT), "--allow-bogons",
           "--out", os.path.join(tmp, "server"))
        config_path = os.path.join(tmp, "server", "server.json")
        with open(config_path) as f:
            config = json.load(f)
        config["DNSResolverIPAddress"] = WORLD  # a private resolver: queries go with udpgw's DNS flag
        with open(config_path, "w") as f:
            json.dump(config, f)
        start("wld", *ONEHOP, "server", "run", "--config", config_path, log="server.log")
        start("wld", sys.executable, os.path.join(HERE, "_common.py"), "sink", "--host", WORLD,
              "--port", str(SINK_PORT), log="sink.log")
        start("wld", sys.executable, __file__, "_dns", log="dns.log")
        wait_for(lambda: "READY" in log("sink.log") and "READY" in log("dns.log"), 15, "sink and resolver")
        time.sleep(1.0)  # the server's listener
        start("dev", *ONEHOP, "client", "--whole-device", "--notices", "--target-server-entry",
              "@" + os.path.join(tmp, "server", "server-entry.dat"), "--data-dir", os.path.join(tmp, "client"),
              "--socks-port", "0", "--http-port", "0", log="client.log")
        wait_for(lambda: '"Tunnels","data":{"count":1}' in log("client.log"), 30, "the tunnel")
        socks_port = next(json.loads(line)["data"]["port"] for line in log("client.log").splitlines()
                          if '"ListeningSocksProxyPort"' in line)
        out = subprocess.run(["ip", "netns", "exec", names["dev"], sys.executable, __file__, "_measure",
                              str(socks_port), str(args.mib), str(args.repeat), str(args.dns)],
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        result = json.loads(out.stdout.strip().splitlines()[-1])
        client = procs[-1]
        client.terminate()
        client.wait(15)
        finals = [json.loads(line)["data"] for line in log("client.log").splitlines() if '"WholeDevice"' in line]
        result["counts"] = finals[-1] if finals else {}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for name in names.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)
    whole, socks = statistics.median(result["whole"]), statistics.median(result["socks"])
    print(f"one stream download, {args.mib} MiB, median of {args.repeat}:")
    print(f"  whole-device   {whole / 1e6:8.1f} MB/s   runs: {', '.join(f'{v / 1e6:.1f}' for v in result['whole'])}")
    print(f"  SOCKS proxy    {socks / 1e6:8.1f} MB/s   runs: {', '.join(f'{v / 1e6:.1f}' for v in result['socks'])}")
    if args.dns:
        print(f"DNS through udpgw: {result['dns']:.0f} lookups/s ({args.dns} lookups, 32 in flight)")
    counts = result.get("counts", {})
    print("client's counts: " + ", ".join(f"{k} {v}" for k, v in counts.items() if k != "active"))
    print(f"whole-device / SOCKS: {whole / socks:.2f}x (target >= 0.8x)")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["_dns"]:
        dns_responder()
        return 0
    if argv[:1] == ["_measure"]:
        measure(*(int(v) for v in argv[1:5]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dns", type=int, default=2000, help="DNS lookups to time (0: none)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
