"""``onehop server ...`` subcommands (heavy imports happen inside the handlers)."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("server", help="generate or run a tunnel server",
                       description="Generate a server's secrets, or run a tunnel server from them.")
    ssub = p.add_subparsers(dest="server_command", required=True)
    g = ssub.add_parser("generate", help="generate a server's secrets and config",
                        description="Write DIR/server.json (secret: keep it on the server) and "
                                    "DIR/server-entry.dat (what clients need).")
    g.add_argument("--ip", required=True, help="the server's public IP address")
    g.add_argument("--ossh-port", type=int, default=443, help="OSSH port (with and without prefix; default 443)")
    g.add_argument("--ssh-port", type=int, default=None, help="plain SSH port (default: none)")
    g.add_argument("--no-ossh", action="store_true", help="serve plain SSH only")
    g.add_argument("--allow-bogons", action="store_true",
                   help="let clients reach private and loopback addresses (tests, labs)")
    g.add_argument("--region", default="", help="two-letter country code of the server")
    g.add_argument("--out", required=True, help="directory for server.json and server-entry.dat")
    g.add_argument("--force", action="store_true",
                   help="replace an existing server.json (its entries stop working)")
    g.set_defaults(func=_generate)
    r = ssub.add_parser("run", help="run a server from its server.json",
                        description="Serve the protocols of server.json until SIGTERM or SIGINT. "
                                    "Prints one start line; events go to LogFilename, or to stderr "
                                    "as JSON lines when it is unset.")
    r.add_argument("--config", required=True, help="the server.json to run")
    r.add_argument("--quiet", action="store_true", help="print neither the start line nor events")
    r.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes sharing the ports (default: Workers in server.json, else one "
                        "per core); 1 serves in this process")
    r.set_defaults(func=_run)


def _generate(args) -> int:
    from .generate import generate_server, write_server_dir
    generated = generate_server(args.ip, ossh_port=None if args.no_ossh else args.ossh_port,
                                ssh_port=args.ssh_port, allow_bogons=args.allow_bogons,
                                region=args.region)
    config_path, entry_path = write_server_dir(args.out, generated, force=args.force)
    print(f"wrote {config_path} (secret: keep it on the server) and {entry_path}")
    return 0


def _run(args) -> int:
    import asyncio

    from ..net.bulkreads import keep_read_buffers_in_heap
    from .config import load_server_config
    from .service import TunnelServer
    config = load_server_config(args.config)
    events = None if args.quiet or config.log_filename else sys.stderr
    workers = config.workers if args.workers is None else args.workers
    if workers != 1:
        return _run_workers(args, config, workers, events)
    keep_read_buffers_in_heap()
    server = TunnelServer(config, event_stream=events)
    started = None if args.quiet else (lambda: print(server.start_line(), file=sys.stderr, flush=True))
    asyncio.run(server.serve_until_signalled(on_started=started))
    return 0


def _run_workers(args, config, workers: int, events) -> int:
    import asyncio
    import logging

    import os

    from ..errors import ConfigError, ConfigProblem
    from .config import workers_problem
    from .workers import Supervisor
    problem = workers_problem(workers)
    if problem:
        raise ConfigError([ConfigProblem("--workers", problem)])
    supervisor = Supervisor(os.path.abspath(args.config), config, workers, event_stream=events,
                            log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()))
    started = None if args.quiet else (lambda: print(supervisor.start_line(), file=sys.stderr, flush=True))
    asyncio.run(supervisor.run(on_started=started))
    return 0
