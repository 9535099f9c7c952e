"""The ``onehop`` command. Each subcommand parses its flags and calls one entry point."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from .errors import ConfigError, OnehopError


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="run a local network on loopback and fetch a page through it")
    p.add_argument("--servers", type=int, default=3, help="number of servers (default 3)")
    p.add_argument("--protocol", action="append", choices=("OSSH", "OSSH-PREFIX", "SSH"),
                   help="limit the client to these protocols")
    p.add_argument("--verbose", action="store_true", help="print the client's notices")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from .demo import main_demo
    if not 1 <= args.servers <= 200:
        raise ConfigError([__import__("onehop.errors", fromlist=["ConfigProblem"]).ConfigProblem(
            "--servers", "must be between 1 and 200")])
    return main_demo(args.servers, tuple(args.protocol or ("OSSH", "OSSH-PREFIX", "SSH")), args.verbose)


def _add_server(sub) -> None:
    p = sub.add_parser("server", help="generate or run a tunnel server")
    ssub = p.add_subparsers(dest="server_command", required=True)
    g = ssub.add_parser("generate", help="generate a server's secrets and config")
    g.add_argument("--ip", required=True, help="the server's public IP address")
    g.add_argument("--ossh-port", type=int, default=443)
    g.add_argument("--ssh-port", type=int, default=None)
    g.add_argument("--no-ossh", action="store_true", help="serve plain SSH only")
    g.add_argument("--allow-bogons", action="store_true",
                   help="let clients reach private and loopback addresses (tests, labs)")
    g.add_argument("--region", default="", help="two-letter country code of the server")
    g.add_argument("--out", required=True, help="directory for server.json and server-entry.dat")
    g.set_defaults(func=_server_generate)
    r = ssub.add_parser("run", help="run a server from its server.json")
    r.add_argument("--config", required=True)
    r.set_defaults(func=_server_run)


def _server_generate(args) -> int:
    from .server.generate import generate_server, write_server_dir
    generated = generate_server(args.ip, ossh_port=None if args.no_ossh else args.ossh_port,
                                ssh_port=args.ssh_port, allow_bogons=args.allow_bogons,
                                region=args.region)
    config_path, entry_path = write_server_dir(args.out, generated)
    print(f"wrote {config_path} (secret: keep it on the server) and {entry_path}")
    return 0


def _server_run(args) -> int:
    from .server.config import load_server_config
    from .server.service import TunnelServer
    server = TunnelServer(load_server_config(args.config))
    asyncio.run(server.serve_until_signalled())
    return 0


def _add_client(sub) -> None:
    p = sub.add_parser("client", help="run the client: local SOCKS and HTTP proxies through a tunnel")
    p.add_argument("--config", help="client config file (Psiphon key names)")
    p.add_argument("--server-list", help="file of encoded server entries, one per line")
    p.add_argument("--target-server-entry", help="one encoded entry, or @FILE; only this server is used")
    p.add_argument("--data-dir")
    p.add_argument("--socks-port", type=int)
    p.add_argument("--http-port", type=int)
    p.add_argument("--region", help="egress region: only use servers in this country (e.g. US)")
    p.add_argument("--protocol", action="append", choices=("OSSH", "OSSH-PREFIX", "SSH"))
    p.add_argument("--upstream-proxy", help="http://user:pass@host:port, socks5://..., socks4a://...")
    p.add_argument("--open-home-page", action="store_true", default=None)
    p.add_argument("--notices", action="store_true", help="JSON notices even on a terminal")
    p.set_defaults(func=_run_client)


def _run_client(args) -> int:
    from .client.app import run_client
    return run_client(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onehop", description=__doc__)
    parser.add_argument("--log-level", default="WARNING", help="Python logging level (default WARNING)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_demo(sub)
    _add_server(sub)
    _add_client(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"onehop: {exc}", file=sys.stderr)
        return 2
    except OnehopError as exc:
        print(f"onehop: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
