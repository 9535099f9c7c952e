"""The scenarios: servers, censors and the outcome each (censor, protocol) row expects.

Protocol labels are the client's tunnel protocols; ``+split`` marks a row whose client
splits the OSSH prefix from the rest of its first flight with a delay
(``ClientConfig.ossh_prefix_split_delay``). Every row gets a fresh censor instance.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, replace
from collections.abc import Awaitable, Callable

from ..client.controller import Controller
from ..client.notices import Notices
from ..core import authpackage
from ..core.api.protocols import TunnelProtocol as P
from ..core.serverentry import encode_server_entry, encode_server_list
from .blocking import IPBlocklist
from .dpi import HTTPWhitelist, SSHBannerDPI
from .fet import FullyEncryptedTrafficRule
from .flows import NoCensor
from .prober import ActiveProber
from .runner import Lab, Row, RowRun, discovery_psinet, stop_controller
from .topology import LabError

SPLIT_DELAY = 0.05
CDN_NUMBER = 200


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    build: Callable[[Lab], Awaitable[list[Row]]]


def split(row: Row) -> Row:
    return replace(row, split_delay=SPLIT_DELAY)


async def ssh_dpi(lab: Lab) -> list[Row]:
    entries = ((await lab.add_server()).entry,)
    dpi = SSHBannerDPI
    return [Row("none", P.SSH, "pass", NoCensor, entries),
            Row("ssh-dpi", P.SSH, "blocked", dpi, entries),
            Row("ssh-dpi", P.OSSH, "pass", dpi, entries),
            Row("ssh-dpi", P.OSSH_PREFIX, "pass", dpi, entries)]


async def http_whitelist(lab: Lab) -> list[Row]:
    entries = ((await lab.add_server()).entry,)
    whitelist = HTTPWhitelist
    strict = "http-whitelist(single message)"
    return [Row("http-whitelist", P.SSH, "blocked", whitelist, entries),
            Row("http-whitelist", P.OSSH, "blocked", whitelist, entries),
            Row("http-whitelist", P.OSSH_PREFIX, "pass", whitelist, entries),
            Row(strict, P.OSSH_PREFIX, "blocked", lambda: HTTPWhitelist(single_message=True), entries),
            split(Row(strict, P.OSSH_PREFIX, "pass", lambda: HTTPWhitelist(single_message=True), entries))]


async def entropy(lab: Lab) -> list[Row]:
    entries = ((await lab.add_server()).entry,)
    fet = FullyEncryptedTrafficRule  # block probability 1.0: deterministic
    return [Row("fet", P.SSH, "pass", fet, entries),  # the banner is printable (Ex2): reported as observed
            Row("fet", P.OSSH, "blocked", fet, entries),
            Row("fet", P.OSSH_PREFIX, "pass", fet, entries),
            split(Row("fet", P.OSSH_PREFIX, "pass", fet, entries))]


async def ip_blocking(lab: Lab) -> list[Row]:
    """Five embedded servers; a sixth is known only to discovery (the servers hand it out)."""
    hidden = await lab.add_server(number=6)
    psinet = discovery_psinet([encode_server_entry(hidden.entry)])
    embedded = tuple([(await lab.add_server(psinet=psinet, number=n)).entry for n in range(1, 6)])

    def most() -> IPBlocklist:
        return IPBlocklist.from_entries(embedded[:4])

    def after_discovery() -> IPBlocklist:
        return IPBlocklist()  # learns the embedded list after the client's first connection

    async def learn_then_block(run: RowRun) -> None:
        controller = run.controller("before-blocking")
        task, seconds = await run.connect(controller, run.lab.settings.establish_deadline)
        known = {e.ip_address for e in embedded}
        for _ in range(100):  # the handshake's discovered entry is imported on activation
            if seconds is None or any(e.ip_address not in known for e in run.store.entries()):
                break
            await asyncio.sleep(0.02)
        await stop_controller(controller, task)
        if seconds is None:
            raise LabError("ip-blocking: the client's first, unblocked connection failed")
        run.censor.learn_entries(embedded)  # type: ignore[attr-defined]

    return [Row("ip-blocklist(4 of 5)", protocol, "pass", most, embedded)
            for protocol in (P.OSSH, P.OSSH_PREFIX, P.SSH)] + [
        Row("ip-blocklist(all 5), client discovered a 6th", P.OSSH, "pass", after_discovery, embedded,
            prepare=learn_then_block),
        Row("ip-blocklist(all 5), no discovery", P.OSSH, "blocked",
            lambda: IPBlocklist.from_entries(embedded), embedded)]


async def embedded_blocked(lab: Lab) -> list[Row]:
    """Every embedded server is blocked; a signed remote server list names one more."""
    from ..client.datastore import Datastore
    from ..client.remote_lists import RemoteListFetcher
    from ..client.transfer_urls import TransferURL

    embedded = tuple([(await lab.add_server(number=n)).entry for n in range(1, 4)])
    remote = await lab.add_server(number=4)
    private_key, public_key = authpackage.generate_rsa_keypair(2048)
    package = authpackage.make_package(encode_server_list([remote.entry]), private_key, public_key)
    base = await lab.serve_files(CDN_NUMBER, {"/server_list_compressed": authpackage.compress_zlib(package)})
    url = base + "/server_list_compressed"

    def with_remote_list(run: RowRun) -> Controller:
        config = run.config("client")
        os.makedirs(config.data_dir, exist_ok=True)
        store = Datastore(config.data_dir)
        run.closers.append(store.close)
        store.import_entries(run.row.entries, "EMBEDDED")
        notices = Notices(None)
        notices.subscribe(run.notices.append)
        fetcher = RemoteListFetcher((TransferURL(url),), public_key, store, notices, config.data_dir)
        return Controller(config, store, notices, open_socket=run.opener(), remote_lists=fetcher)

    def blocklist() -> IPBlocklist:
        return IPBlocklist.from_entries(embedded)

    return [Row("ip-blocklist(all embedded), remote list", P.OSSH, "pass", blocklist, embedded,
                make_controller=with_remote_list),
            Row("ip-blocklist(all embedded), no remote list", P.OSSH, "blocked", blocklist, embedded)]


async def active_prober(lab: Lab) -> list[Row]:
    entries = ((await lab.add_server()).entry,)
    return [Row("active-prober", P.OSSH, "pass", ActiveProber, entries),
            Row("active-prober", P.OSSH_PREFIX, "pass", ActiveProber, entries),
            split(Row("active-prober", P.OSSH_PREFIX, "pass", ActiveProber, entries)),  # R1-flight replays the seed
            Row("active-prober", P.SSH, "blocked", ActiveProber, entries)]  # the control


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("ssh-dpi", "SSH banner DPI (l7-filter/nDPI): SSH blocked, OSSH passes", ssh_dpi),
    Scenario("http-whitelist", "only HTTP passes: only OSSH with the HTTP prefix gets through", http_whitelist),
    Scenario("entropy", "Wu et al. fully-encrypted-traffic rule: OSSH blocked, prefixed OSSH exempt", entropy),
    Scenario("ip-blocking", "most servers' IPs blocked; the rest and discovery still connect", ip_blocking),
    Scenario("embedded-blocked", "every embedded server blocked; the remote server list saves the day",
             embedded_blocked),
    Scenario("active-prober", "IMC 2020 probes never confirm an OSSH server; plain SSH is confirmed",
             active_prober),
)}
