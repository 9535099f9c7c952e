"""``onehop network ...``: the operator's verbs (parsers only).

Handlers live in ``commands`` (and ``commands_files``), imported only when a network
subcommand runs, so ``onehop client`` never loads SQLAlchemy or boto3.
"""

from __future__ import annotations

import argparse
import importlib

from ..cliargs import add_after_verb, add_target

DB_HELP = ("SQLAlchemy URL: sqlite:///PATH (default $XDG_DATA_HOME/onehop/network.db) or "
           "postgresql+psycopg://...; accepted before or after the verb")


WHEELS_HELP = ("where the build's pinned runtime comes from (constraints/client-build.txt): 'installed' "
               "(default; refused unless it is exactly the pins), 'pypi' or a directory of wheels "
               "(pip --require-hashes)")


def _dispatch(name: str):
    def run(args) -> int:
        module_name, _, function = name.rpartition(".")
        module = importlib.import_module(f"onehop.network.{module_name}")
        return getattr(module, function)(args)
    return run


def _leaf(sub, name: str, help_text: str, handler: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_after_verb(p, "--db", metavar="URL", help_text=DB_HELP)
    p.set_defaults(func=_dispatch(handler))
    return p


def _group(sub, name: str, help_text: str):
    p = sub.add_parser(name, help=help_text, description=help_text)
    return p.add_subparsers(dest=f"{name.replace('-', '_')}_command", required=True)


def _sponsors_channels(sub) -> None:
    g = _group(sub, "sponsor", "sponsors and their home pages")
    p = _leaf(g, "add", "add a sponsor", "commands.sponsor_add")
    add_target(p, "name", "NAME", "the sponsor's name (unique)", "--name")
    p.add_argument("--home-page", action="append", default=[], metavar="[REGION=]URL",
                   help="a home page, for a region (two letters) or the default; repeatable")
    p.add_argument("--mobile-home-page", action="append", default=[], metavar="[REGION=]URL",
                   help="a home page for mobile clients, for a region or the default; repeatable")
    _leaf(g, "list", "list sponsors", "commands.sponsor_list")
    p = _leaf(g, "homepage", "show, add or remove a sponsor's home pages", "commands.sponsor_homepage")
    add_target(p, "sponsor", "SPONSOR", "sponsor ID or name", "--sponsor")
    p.add_argument("--add", metavar="[REGION=]URL", help="add this home page (for a region, or the default)")
    p.add_argument("--remove", metavar="URL", help="remove this home page")
    p.add_argument("--region", help="with --remove: only this region's page")
    p.add_argument("--mobile", action="store_true", help="the mobile home pages")

    g = _group(sub, "channel", "propagation channels")
    p = _leaf(g, "add", "add a propagation channel", "commands.channel_add")
    add_target(p, "name", "NAME", "the channel's name (unique)", "--name")
    p.add_argument("--max-discovery-age-days", type=int, default=30,
                   help="prune discovery servers this long after their window ended (default 30)")
    p.add_argument("--max-propagation-age-days", type=int, default=90,
                   help="prune un-embedded servers this long after they left the builds (default 90)")
    _leaf(g, "list", "list channels with server counts", "commands.channel_list")
    p = _leaf(g, "replace", "make these servers the channel's current ones: un-embed the old "
              "non-permanent embedded servers / end the current discovery windows", "commands.channel_replace")
    add_target(p, "channel", "CHANNEL", "channel ID or name", "--channel")
    p.add_argument("--server", action="append", required=True, help="a new server's ID; repeatable")

    g = _group(sub, "campaign", "campaigns: channel x sponsor x mechanism")
    p = _leaf(g, "add", "add a campaign", "commands.campaign_add")
    p.add_argument("--channel", required=True, help="channel ID or name")
    p.add_argument("--sponsor", required=True, help="sponsor ID or name")
    p.add_argument("--mechanism", required=True, choices=("email", "static-download"),
                   help="how the campaign hands out clients: an e-mail responder or downloads")
    p.add_argument("--email", help="the address the responder answers (email campaigns)")
    p.add_argument("--language", help="reply language, e.g. fa")
    p = _leaf(g, "list", "list campaigns", "commands.campaign_list")
    p.add_argument("--channel", help="only this channel's campaigns (ID or name)")


def _hosts_servers(sub) -> None:
    g = _group(sub, "host", "hosts (machines)")
    p = _leaf(g, "add", "add a host", "commands.host_add")
    add_target(p, "name", "NAME", "the host's name (unique)", "--name")
    p.add_argument("--ip", required=True, help="the host's (management) IP address")
    p.add_argument("--region", required=True, help="two-letter country code of the datacenter")
    p.add_argument("--provider", help="the hosting provider (free text, for reports)")
    p.add_argument("--datacenter", help="the datacenter (free text, for reports)")
    p.add_argument("--ssh-port", type=int, default=22, help="management SSH port (default 22)")
    p.add_argument("--ssh-user", default="root", help="management SSH user (default root)")
    p.add_argument("--ssh-host-key", help="pinned management host key: 'ssh-ed25519 AAAA...'")
    p = _leaf(g, "list", "list hosts", "commands.host_list")
    p.add_argument("--all", action="store_true", help="include removed (archived) hosts")
    p = _leaf(g, "remove", "archive a host and retire its servers", "commands.host_remove")
    add_target(p, "name", "NAME", "the host's name", "--name")
    p = _leaf(g, "set-key", "pin the host's management SSH host key (checked out of band)",
              "commands_ops.host_set_key")
    add_target(p, "name", "NAME", "the host's name", "--name")
    p.add_argument("--ssh-host-key", required=True, help="'ssh-ed25519 AAAA...' (as in known_hosts)")
    from .cli_cloud import host_verbs
    host_verbs(g, _leaf)

    g = _group(sub, "server", "servers")
    p = _leaf(g, "add", "add a server (generates every secret)", "commands.server_add")
    p.add_argument("--host", required=True, help="the host (name) the server runs on")
    p.add_argument("--channel", required=True, help="the propagation channel (ID or name) it serves")
    p.add_argument("--ip", help="the server's IP address (default: the host's)")
    p.add_argument("--listen-ip", help="the address to listen on when behind NAT")
    p.add_argument("--discovery-days", type=int, help="a discovery server for N days from now (else embedded)")
    p.add_argument("--permanent", action="store_true", help="stays embedded; joins other channels' lists")
    p.add_argument("--ossh-port", type=int, default=443, help="OSSH port (with and without prefix; default 443)")
    p.add_argument("--no-ossh", action="store_true", help="serve plain SSH only")
    p.add_argument("--ssh-port", type=int, help="plain SSH port (default: none)")
    p.add_argument("--allow-bogons", action="store_true", help="let clients reach private addresses (labs)")
    p.add_argument("--replace", action="store_true", help="then replace the channel's servers with it")
    p = _leaf(g, "list", "list servers", "commands.server_list")
    p.add_argument("--channel", help="only this channel's servers (ID or name)")
    p.add_argument("--all", action="store_true", help="include retired servers")
    p = _leaf(g, "retire", "retire a server (its ID is never reused)", "commands.server_retire")
    add_target(p, "server", "SERVER", "the server's ID", "--server")
    p.add_argument("--reason", default="", help="why, for the audit log")
    p = _leaf(sub, "prune", "retire old discovery and propagation servers", "commands.prune")
    p.add_argument("--dry-run", action="store_true", help="list what would be retired, change nothing")


def _versions_keys_settings(sub) -> None:
    g = _group(sub, "client-version", "client versions per platform")
    p = _leaf(g, "add", "add a client version (default: the next number); with --file, its signed "
              "upgrade package (and a delta from the previous build when smaller)", "commands.version_add")
    p.add_argument("--platform", default="Other", help="Android, iOS, Windows or Other (onehop builds)")
    p.add_argument("--version", type=int, help="the version number (default: the platform's next)")
    p.add_argument("--description", default="", help="release notes (free text)")
    p.add_argument("--file", help="the client build of this version: publish uploads its upgrade packages")
    p.add_argument("--name", help="the build's published file name (default: the --file name)")
    _leaf(g, "list", "list client versions", "commands.version_list")

    g = _group(sub, "keys", "network keys")
    _leaf(g, "show", "the public keys, under Psiphon's client config names", "commands.keys_show")
    p = _leaf(g, "rotate", "retire a key and make a new one", "commands.keys_rotate")
    p.add_argument("--kind", required=True,
                   choices=("remote_server_list", "server_entry", "feedback", "upgrade", "discovery_hmac"),
                   help="which key to rotate")
    p.add_argument("--rsa-bits", type=int, default=4096, help="size of a new RSA key (default 4096)")

    g = _group(sub, "settings", "network-wide settings")
    _leaf(g, "show", "show the settings", "commands.settings_show")
    p = _leaf(g, "set", "change a setting", "commands.settings_set")
    p.add_argument("name", help="the setting's name (see `settings show`)")
    p.add_argument("value", help="its new value")
    p = _leaf(sub, "audit", "the audit log, newest first", "commands.audit_list")
    p.add_argument("--limit", type=int, default=50, help="how many entries (default 50)")


def _files(sub) -> None:
    p = _leaf(sub, "export", "write server configs, entries, psinet and the responder config",
              "commands_files.export")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the export directory (made 0700: it holds server secrets)")
    p.add_argument("--base-url", help="public base URL of the published files (responder links)")
    p.add_argument("--build-cache", help="where builds are cached (default $XDG_CACHE_HOME/onehop/builds)")
    p = _leaf(sub, "publish", "publish lists, builds and upgrade packages", "commands_files.publish")
    p.add_argument("--to", required=True, help="a directory or s3://bucket/prefix")
    p.add_argument("--base-url", help="public URL of the target (default: file:// or path-style S3)")
    p.add_argument("--s3-endpoint", help="S3 endpoint URL (default $AWS_ENDPOINT_URL or AWS)")
    p.add_argument("--no-builds", action="store_true", help="lists only")
    p.add_argument("--format", choices=("zipapp", "standalone"),
                   help="campaign builds: zipapp (needs Python 3) or standalone (one native executable for "
                        "this platform, PyInstaller); default: the build-format setting (zipapp)")
    p.add_argument("--build-cache", help="where builds are cached (default $XDG_CACHE_HOME/onehop/builds)")
    p.add_argument("--wheels", metavar="installed|pypi|DIR", help=WHEELS_HELP)
    p = _leaf(sub, "build-client", "build a client for a channel and sponsor", "commands_files.build_client")
    p.add_argument("--channel", required=True, help="channel ID or name")
    p.add_argument("--sponsor", required=True, help="sponsor ID or name")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the build")
    p.add_argument("--format", choices=("zipapp", "standalone"),
                   help="zipapp (needs Python 3) or standalone (one native executable for this platform, "
                        "PyInstaller); default: the build-format setting (zipapp)")
    p.add_argument("--base-url", help="where lists and upgrades are published (default: the last publish)")
    p.add_argument("--build-cache", help="where builds are cached (default $XDG_CACHE_HOME/onehop/builds)")
    p.add_argument("--wheels", metavar="installed|pypi|DIR", help=WHEELS_HELP)
    g = _group(sub, "discovery", "discovery pool analysis")
    p = _leaf(g, "simulate", "how many servers an adversary learns vs an ordinary user",
              "commands_cloud.discovery_simulate")
    p.add_argument("--attacker-ips", type=int, required=True, help="addresses in distinct /24s")
    p.add_argument("--days", type=int, required=True, help="how many days the adversary probes")
    p.add_argument("--strategy", choices=("classic", "consistent", "both"), default="both",
                   help="the discovery strategy to simulate (default both)")
    p.add_argument("--servers", type=int, action="append",
                   help="simulate a pool of N servers instead of the database's; repeatable")
    p.add_argument("--seed", type=int, default=1, help="random seed, for repeatable runs (default 1)")
    from .cli_cloud import week_arguments
    week_arguments(p)


def _operations(sub) -> None:
    g = _group(sub, "stats", "server statistics: ingest event logs, report")
    p = _leaf(g, "ingest", "load server event logs (idempotent: only new complete lines are added)",
              "commands_ops.stats_ingest")
    p.add_argument("--from", dest="source", required=True, metavar="DIR|ssh://HOST/PATH",
                   help="a directory of logs, or a directory on a host of the database over SSH")
    p.add_argument("--ssh-key", action="append", default=[], metavar="FILE",
                   help="management SSH private key (default: your usual keys and agent); repeatable")
    p = _leaf(g, "report", "connections, unique users and bytes per day; likely blocks",
              "commands_ops.stats_report")
    p.add_argument("--days", type=int, default=7, help="days to report, ending --until (default 7)")
    p.add_argument("--until", help="the last day reported, YYYY-MM-DD (default: today, UTC)")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the report into a PNG")
    p.add_argument("--block-ratio", type=float, default=0.3,
                   help="flag a region whose daily mean fell below this share of the week before (0.3)")
    p.add_argument("--min-daily", type=float, default=10.0,
                   help="only regions with at least this many connections a day the week before (10)")
    p = _leaf(sub, "deploy", "push a host's servers over SSH, install onehop, (re)start and check them",
              "commands_ops.deploy")
    add_target(p, "host", "HOST", "the host's name", "--host")
    p.add_argument("--from-export", metavar="DIR", help="deploy the files of an earlier export (default: "
                   "computed from the database now)")
    p.add_argument("--source", metavar="PATH_OR_WHEEL", help="onehop source tree or wheel to install "
                   "(default: the tree this onehop runs from)")
    p.add_argument("--python", default="/usr/bin/python3", help="the host's Python 3.11+ (default /usr/bin/python3)")
    p.add_argument("--root", default="/opt/onehop", help="where onehop lives on the host (default /opt/onehop)")
    p.add_argument("--service", choices=("auto", "systemd", "nohup"), default="auto",
                   help="how servers run: systemd units, or nohup with a pidfile (default: systemd if present)")
    p.add_argument("--geoip", action="append", default=[], metavar="FILE.mmdb",
                   help="a GeoIP database to upload and configure; repeatable")
    p.add_argument("--restart", action="store_true", help="restart every server even if nothing changed")
    p.add_argument("--stop", action="store_true", help="stop every onehop server on the host instead")
    p.add_argument("--no-pin", action="store_true",
                   help="do not pin the host's dependencies to the versions installed here")
    p.add_argument("--ssh-key", action="append", default=[], metavar="FILE",
                   help="management SSH private key (default: your usual keys and agent); repeatable")
    p.add_argument("--check-timeout", type=float, default=60.0,
                   help="seconds to wait for each server to answer (default 60)")


def register(sub) -> None:
    p = sub.add_parser("network", help="the central network database: provisioning, exports, publishing",
                       description="Manage the network database (sponsors, channels, hosts, servers, keys), "
                       "export server files, publish signed lists and client builds.")
    p.add_argument("--db", metavar="URL", help=DB_HELP)
    nsub = p.add_subparsers(dest="network_command", required=True)
    i = _leaf(nsub, "init", "create or upgrade the schema and the network keys", "commands.init")
    i.add_argument("--rsa-bits", type=int, default=4096, help="size of new RSA keys (default 4096)")
    _sponsors_channels(nsub)
    _hosts_servers(nsub)
    _versions_keys_settings(nsub)
    _files(nsub)
    _operations(nsub)
    from .cli_cloud import register as register_cloud
    register_cloud(nsub, _leaf, _group)
