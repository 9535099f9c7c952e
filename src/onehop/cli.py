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

from . import cliargs
from .core.api.protocols import CLIENT_PROTOCOLS
from .errors import ConfigError, ConfigProblem, OnehopError
from .extras import EXTRA_OF_MODULE, missing_extra  # noqa: F401  (EXTRA_OF_MODULE: re-exported)

#: Libraries whose DEBUG output holds secrets (botocore logs each signed request), kept at INFO or above.
QUIET_LOGGERS = ("botocore", "boto3", "s3transfer")
#: Packages whose ``cli.register`` adds subcommands, in help order.
SUBCOMMAND_MODULES = ("client", "server", "network", "mail", "feedback", "lab")

def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="run a local network on loopback and fetch a page through it",
                       description="Start N servers on 127.0.0.x, run a client and fetch a page from a "
                       "local web server through the tunnel; exit 0 only if it arrived intact.")
    p.add_argument("--servers", type=int, default=3, help="number of servers (default 3)")
    p.add_argument("--protocol", action="append", choices=CLIENT_PROTOCOLS,
                   help="limit the client to these protocols")
    p.add_argument("--verbose", action="store_true", help="print the client's notices")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from .demo import main_demo
    if not 1 <= args.servers <= 200:
        raise ConfigError([ConfigProblem("--servers", "must be between 1 and 200")])
    return main_demo(args.servers, tuple(args.protocol or CLIENT_PROTOCOLS), args.verbose)


def package_version() -> str:
    """The installed distribution's version (the source tree's when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("onehop")
    except PackageNotFoundError:
        from . import __version__
        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onehop", description="onehop: Psiphon-compatible "
                                     "circumvention (client, server, network management)",
                                     epilog="`onehop COMMAND --help` explains each command; "
                                     "docs/cli.md describes the conventions they share.")
    parser.add_argument("--version", action="version", version=f"onehop {package_version()}",
                        help="print the installed version and exit")
    parser.add_argument("--log-level", default="WARNING", help="Python logging level (default WARNING)")
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    _add_demo(sub)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"onehop.{name}.cli")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"onehop.{name}", f"onehop.{name}.cli"):
                raise
            continue  # that part is not built yet
        module.register(sub)
    cliargs.finish(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cliargs.check_targets(args)
    level = getattr(logging, str(args.log_level).upper(), logging.WARNING)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for name in QUIET_LOGGERS:  # their DEBUG logs what they sign and send: session tokens, UserData's host key
        logging.getLogger(name).setLevel(max(level if isinstance(level, int) else logging.WARNING, logging.INFO))
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
