"""Benchmark of the network tooling: export and sign a large network; discovery per handshake.

    python bench/network.py                      # 5,000 servers x 200 channels (about a minute)
    python bench/network.py --servers 500 --channels 20 --rsa-bits 2048   # quick

1. Builds a SQLite network database with S servers spread over C channels (a fifth of
   them discovery servers, one permanent server per channel, one e-mail campaign per
   channel) through the same operations ``onehop network server add`` uses. Setup is
   not timed; to keep it short the servers' SSH host keys come from a pool of 16
   pre-generated RSA keys (every other secret is fresh).
2. Times what ``onehop network export`` and ``publish --no-builds`` do: read the
   database, sign every server entry (Ed25519), write every server directory and the
   psinet snapshot, sign every channel's remote list (RSA) and write the lists; then
   the same export again, when nothing changed (nothing is rewritten).
3. Times discovery selection per handshake (``onehop.core.discovery``) for both
   strategies at N = 100, 10,000 and 100,000 discoverable servers, and the one-off
   cost of building each strategy's structure.

The headline (last line): export + sign time against the 30 s target, and the
discovery cost at N = 100,000 relative to N = 100 (O(1) per handshake means ~1x).
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import secrets
import shutil
import sys
import tempfile
import time
from datetime import datetime, UTC
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from onehop.core.discovery import Discovery, DiscoveryServer
from onehop.network import channels, hosts, keys, servers, sponsors
from onehop.network.audit import Context
from onehop.network.db import Database
from onehop.network.export import export_network
from onehop.network.publish import Publisher
from onehop.network.state import load_state
from onehop.network.targets import DirTarget

SERVERS_PER_HOST = 5


def key_pool_factory(size: int = 16):
    """A secrets factory that reuses a few RSA host keys (key generation is setup, not
    what is measured); usernames, passwords and obfuscation keys are fresh."""
    pool = [servers.generated_secrets("192.0.2.1", 443, None) for _ in range(size)]

    def factory(ip: str, ossh_port, ssh_port) -> servers.ServerSecrets:
        base = random.choice(pool)
        caps = tuple(p for p, port in (("OSSH", ossh_port), ("SSH", ssh_port)) if port) + ("ssh-api-requests",)
        return servers.ServerSecrets(base.ssh_private_key, base.ssh_host_key, "onehop_" + secrets.token_hex(8),
                                     secrets.token_hex(32), secrets.token_hex(32), secrets.token_hex(32), caps)
    return factory


def build_network(db: Database, server_count: int, channel_count: int, rsa_bits: int) -> None:
    ctx = Context(actor="bench")
    factory = key_pool_factory()
    with db.transaction() as session:
        keys.ensure_keys(session, ctx, rsa_bits)
        sponsor_rows = [sponsors.add_sponsor(session, ctx, f"sponsor-{i}", [f"https://s{i}.example/"])
                        for i in range(10)]
        channel_rows = [channels.add_channel(session, ctx, f"channel-{i}") for i in range(channel_count)]
        for i, channel in enumerate(channel_rows):
            channels.add_campaign(session, ctx, channel, sponsor_rows[i % 10], "email", f"get{i}@example.org")
        host = None
        for n in range(server_count):
            if n % SERVERS_PER_HOST == 0:
                host = hosts.add_host(session, ctx, f"h{n // SERVERS_PER_HOST}",
                                      str(ipaddress.IPv4Address(0x0A000000 + n + 1)), "DE")
            discovery = n % 5 == 4
            spec = servers.ServerSpec(ip=str(ipaddress.IPv4Address(0x0B000000 + n + 1)),
                                      discovery_days=4 if discovery else None,
                                      permanent=n < channel_count and not discovery)
            servers.add_server(session, ctx, host, channel_rows[n % channel_count], spec, factory)


def timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def bench_export(db: Database, workdir: Path) -> dict[str, float]:
    def export():
        with db.transaction() as session:
            state = load_state(session, datetime.now(UTC))
        return export_network(state, workdir / "export", cache_dir=workdir / "cache")

    def lists():
        with db.transaction() as session:
            state = load_state(session, datetime.now(UTC))
        return Publisher(state, DirTarget(workdir / "site", "https://s3.amazonaws.com/bucket"), None).run()

    first, result = timed(export)
    publish, items = timed(lists)
    again, unchanged = timed(export)
    assert not unchanged.written, "a second export must not rewrite anything"
    print(f"  export (first, {len(result.written)} files written): {first:6.2f} s")
    print(f"  publish lists ({len(items)} objects: remote lists signed): {publish:6.2f} s")
    print(f"  export again (nothing changed, 0 files written): {again:6.2f} s")
    return {"export": first, "publish": publish, "again": again}


def discovery_pool(n: int, now: datetime) -> list[DiscoveryServer]:
    start, end = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    return [DiscoveryServer(str(ipaddress.IPv4Address(0x0B000000 + i + 1)), "", start, end) for i in range(n)]


def bench_discovery(sizes: tuple[int, ...], lookups: int) -> dict[tuple[str, int], float]:
    now = datetime(2030, 6, 1, 12, tzinfo=UTC)
    rng = random.Random(7)
    clients = [str(ipaddress.IPv4Address(rng.randrange(1 << 24, 224 << 24))) for _ in range(lookups)]
    results = {}
    print(f"  {'strategy':<11} {'N':>8} {'build':>9} {'per selection':>14}")
    for strategy in ("classic", "consistent"):
        for n in sizes:
            discovery = Discovery(discovery_pool(n, now), strategy, "bench-hmac-key")
            build, _ = timed(lambda d=discovery: d.select(clients[0], now))  # the first call builds
            elapsed, _ = timed(lambda d=discovery: [d.select(c, now) for c in clients])
            results[(strategy, n)] = elapsed / lookups * 1e6
            print(f"  {strategy:<11} {n:>8,} {build * 1000:>7.1f}ms {results[(strategy, n)]:>11.2f} us")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", type=int, default=5000)
    parser.add_argument("--channels", type=int, default=200)
    parser.add_argument("--rsa-bits", type=int, default=4096, help="network RSA keys (4096 as in production)")
    parser.add_argument("--lookups", type=int, default=20000, help="discovery selections per measurement")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="onehop-bench-network-"))
    try:
        db = Database.open(f"sqlite:///{workdir / 'network.db'}", create=True, check_schema=False)
        db.upgrade()
        setup, _ = timed(lambda: build_network(db, args.servers, args.channels, args.rsa_bits))
        print(f"network: {args.servers:,} servers x {args.channels} channels, RSA-{args.rsa_bits} keys "
              f"(setup {setup:.1f} s, not part of the figures)")
        export = bench_export(db, workdir)
        db.close()
        print("discovery selection per handshake (core.discovery):")
        sizes = (100, 10_000, 100_000)
        disc = bench_discovery(sizes, args.lookups)
        for strategy in ("classic", "consistent"):
            print(f"  {strategy}: N=100,000 / N=100 = {disc[(strategy, 100_000)] / disc[(strategy, 100)]:.2f}x")
        total = export["export"] + export["publish"]
        verdict = "OK" if total < 30 else "OVER TARGET"
        print(f"export + sign {args.servers:,} servers x {args.channels} channels = {total:.1f} s (target < 30 s, "
              f"{verdict}); discovery at N=100,000: classic {disc[('classic', 100_000)]:.1f} us "
              f"({disc[('classic', 100_000)] / disc[('classic', 100)]:.2f}x N=100), consistent "
              f"{disc[('consistent', 100_000)]:.1f} us "
              f"({disc[('consistent', 100_000)] / disc[('consistent', 100)]:.2f}x N=100)")
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
