"""The ``onehop`` command.

Each part registers its own subcommands (``<package>/cli.py``: ``register(subparsers)``)
and imports its heavy dependencies only when a subcommand runs, so ``onehop client``
starts without loading the database or mail libraries.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import ConfigError, ConfigProblem, OnehopError

#: Packages whose ``cli.register`` adds subcommands, in help order.
SUBCOMMAND_MODULES = ("client", "server", "network", "mail", "feedback", "lab")

#: Third-party packages that come with an extra, by top-level module name.
EXTRA_OF_MODULE = {
    "sqlalchemy": "network", "alembic": "network", "psycopg": "network", "boto3": "network",
    "botocore": "network", "shiv": "network",
    "aiosmtpd": "mail", "aiosmtplib": "mail", "dkim": "mail",
    "nfstream": "lab", "pyroute2": "lab", "matplotlib": "lab",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """What to tell a user whose install lacks the extra a command needs (None: a bug)."""
    module = (exc.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return (f"this command needs {module}, which comes with the '{extra}' extra: "
            f"pip install 'onehop[{extra}]'")


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
        raise ConfigError([ConfigProblem("--servers", "must be between 1 and 200")])
    return main_demo(args.servers, tuple(args.protocol or ("OSSH", "OSSH-PREFIX", "SSH")), args.verbose)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onehop", description="onehop: Psiphon-compatible "
                                     "circumvention (client, server, network management)")
    parser.add_argument("--log-level", default="WARNING", help="Python logging level (default WARNING)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_demo(sub)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"onehop.{name}.cli")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"onehop.{name}", f"onehop.{name}.cli"):
                raise
            continue  # that part is not built yet
        module.register(sub)
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
    except ModuleNotFoundError as exc:
        message = missing_extra(exc)
        if message is None:
            raise
        print(f"onehop: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
