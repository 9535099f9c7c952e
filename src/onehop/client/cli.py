"""``onehop client``: flags (heavy imports happen inside the handler)."""

from __future__ import annotations

from ..core.api.protocols import CLIENT_PROTOCOLS


def register(sub) -> None:
    p = sub.add_parser("client", help="run the client: local SOCKS and HTTP proxies through a tunnel")
    p.add_argument("--config", help="client config file (Psiphon key names)")
    p.add_argument("--server-list", help="file of encoded server entries, one per line")
    p.add_argument("--target-server-entry", help="one encoded entry, or @FILE; only this server is used")
    p.add_argument("--data-dir", help="where the client keeps server entries and state "
                   "(default $XDG_DATA_HOME/onehop)")
    p.add_argument("--socks-port", type=int, help="local SOCKS5 proxy port (default 1080; 0: any free port)")
    p.add_argument("--http-port", type=int, help="local HTTP proxy port (default 8080; 0: any free port)")
    p.add_argument("--region", help="egress region: only use servers in this country (e.g. US)")
    p.add_argument("--protocol", action="append", choices=CLIENT_PROTOCOLS,
                   help="only use this tunnel protocol; repeatable (default: all)")
    p.add_argument("--upstream-proxy", help="http://user:pass@host:port, socks5://..., socks4a://...")
    p.add_argument("--open-home-page", action="store_true", default=None,
                   help="open the sponsor's home page in a browser once connected")
    p.add_argument("--notices", action="store_true", help="JSON notices even on a terminal")
    p.add_argument("--dns-port", type=int, help="also run a local DNS forwarder on this UDP port "
                   "(queries travel through the tunnel)")
    p.add_argument("--whole-device", action="store_true", default=None,
                   help="Linux, root: tunnel every TCP connection and UDP datagram of this machine "
                   "(nftables rules in table inet onehop; nothing leaves directly while no tunnel is up)")
    p.add_argument("--share-lan", metavar="IFACE",
                   help="with --whole-device: also tunnel what arrives from this LAN interface (gateway mode)")
    p.add_argument("--cleanup", action="store_true",
                   help="with --whole-device: remove rules a crashed client left behind, then exit")
    p.add_argument("--ui", action="store_true",
                   help="also serve a web UI on 127.0.0.1 (address with a per-run token printed on stderr) "
                        "and open it in the system browser; WebUIWithoutTerminal: true does this whenever "
                        "stdout is not a terminal")
    p.add_argument("--ui-port", type=int, help="the web UI's port (default 0: any free port)")
    p.add_argument("--no-browser", action="store_true",
                   help="with --ui: do not open the browser (nor the home pages); open the printed address")
    p.add_argument("--rollback", action="store_true",
                   help="restore the client build that the last upgrade replaced, then exit")
    p.set_defaults(func=_run)


def _run(args) -> int:
    # local: `onehop` builds every parser at start; the client loads when run
    from .app import run_client
    return run_client(args)
