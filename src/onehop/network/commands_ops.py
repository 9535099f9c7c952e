"""Handlers of the verbs that reach hosts: ``stats ingest|report``, ``deploy``, ``host set-key``.

Like ``commands_files`` they read what they need from the database first, do the
(possibly long) remote work outside any transaction, and record the audit trail after.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import date
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError, ConfigProblem
from ..extras import require
from . import audit, hosts, lookup
from .commands import run, session_for
from .db import Database
from .remote import connect, ssh_target
from .render import output, record, table
from .state import load_state
from .stats.report import BlockCriteria, build_report, human_bytes


def host_set_key(args) -> int:
    def work(session, ctx):
        host = lookup.host(session, args.name)
        hosts.set_host_key(session, ctx, host, args.ssh_host_key)
        return hosts.host_dict(host)
    return run(args, work, lambda r: f"pinned the SSH host key of {r['name']}: {r['ssh_host_key']}")


# -- stats ----------------------------------------------------------------------------

async def _ingest(db: Database, args, servers, ctx):
    from .stats.ingest import Ingest
    from .stats.sources import LocalLogSource, SshLogSource
    if not args.source.startswith("ssh://"):
        return await Ingest(db, LocalLogSource(Path(args.source)), servers, ctx).run()
    parts = urlsplit(args.source)
    path = unquote(parts.path)
    if not parts.hostname or not path.startswith("/"):
        raise ConfigError([ConfigProblem("--from", "an SSH source looks like ssh://HOST/absolute/path "
                                                   "(HOST: a host name of the database)")])
    with db.transaction() as session:
        target = ssh_target(lookup.host(session, parts.hostname, include_deleted=True),
                            username=parts.username, port=parts.port)
    async with connect(target, args.ssh_key) as remote:
        return await Ingest(db, SshLogSource(remote, path), servers, ctx).run()


def _ingest_human(result: dict) -> str:
    if not result["files"] and not result["pending_partial_lines"]:
        skipped = result["skipped_files"]
        return (f"no event logs in {result['source']}" + (f" ({skipped} other files skipped, e.g. "
                f"{', '.join(result['skipped_examples'][:3])})" if skipped else "")
                + ": point --from at the folder of the servers' LogFilename (on a deployed host, ROOT/logs)")
    events = ", ".join(f"{name} {count}" for name, count in result["events_added"].items())
    lines = [f"ingested {result['source']}: {result['files']} files ({result['new_files']} new, "
             f"{result['unchanged_files']} unchanged), {result['events_added_total']} events added"
             + (f" ({events})" if events else "")
             + f", {result['malformed_lines']} malformed lines skipped"]
    if result["unresolved_events"]:
        lines.append(f"{result['unresolved_events']} events could not be tied to a server (counted for their host)")
    if result["skipped_files"]:
        lines.append(f"{result['skipped_files']} files skipped, not event logs (e.g. "
                     f"{', '.join(result['skipped_examples'][:3])})")
    lines += [f"malformed: {example}" for example in result["malformed_examples"]]
    lines += [f"partial last line left for later: {p['path']} ({p['bytes']} bytes)"
              for p in result["pending_partial_lines"]]
    lines += [f"warning: {w}" for w in result["warnings"]] + [f"error: {e}" for e in result["errors"]]
    return "\n".join(lines)


def stats_ingest(args) -> int:
    from .stats.ingest import ServerMap, record_audit
    ctx = audit.Context()
    db = Database.open(args.db)
    try:
        report = asyncio.run(_ingest(db, args, ServerMap.load(db), ctx))
        record_audit(db, ctx, report)
    finally:
        db.close()
    result = report.as_dict()
    output(args.json, result, _ingest_human(result))
    return 0 if not report.errors else 1


def _report_problems(args) -> list[ConfigProblem]:
    problems = []
    if not 1 <= args.days <= 3660:
        problems.append(ConfigProblem("--days", "must be between 1 and 3660"))
    if not 0 < args.block_ratio < 1:
        problems.append(ConfigProblem("--block-ratio", "must be between 0 and 1"))
    if args.min_daily < 0:
        problems.append(ConfigProblem("--min-daily", "must not be negative"))
    if args.until:
        try:
            date.fromisoformat(args.until)
        except ValueError:
            problems.append(ConfigProblem("--until", "must be a date like 2025-01-31"))
    return problems


def _report_human(report: dict) -> str:
    measures = [("CONNECTIONS", "connections"), ("UNIQUE USERS", "unique_users"), ("BYTES", "bytes_text")]
    for key in ("totals", "by_region", "by_channel", "by_sponsor", "by_server"):
        for row in report[key]:
            row["bytes_text"] = human_bytes(row["bytes"])
    parts = [f"onehop network statistics, {report['from']} to {report['until']} (UTC days)",
             "", "Per day", table(report["totals"], [("DAY", "day")] + measures)]
    for key, title, columns in (("by_region", "By region", [("REGION", "region")]),
                                ("by_channel", "By channel", [("CHANNEL", "channel"), ("NAME", "name")]),
                                ("by_sponsor", "By sponsor", [("SPONSOR", "sponsor"), ("NAME", "name")]),
                                ("by_server", "By server", [("SERVER", "server"), ("HOST", "host")])):
        parts += ["", title, table(report[key], [("DAY", "day")] + columns + measures)]
    criteria = report["block_criteria"]
    parts += ["", f"Likely blocks (connections from a region, {criteria['this_week'][0]} to "
                  f"{criteria['this_week'][1]}: daily mean below {criteria['ratio']:.0%} of the week before, "
                  f"which had at least {criteria['min_daily']:g} a day)",
              table(report["likely_blocks"], [("SERVER", "server"), ("HOST", "host"), ("REGION", "region"),
                                              ("BEFORE/DAY", "previous_daily_mean"), ("NOW/DAY", "daily_mean"),
                                              ("SINCE", "since"), ("KIND", "kind")])]
    for row in report["totals"] + report["by_region"] + report["by_channel"] + report["by_sponsor"] \
            + report["by_server"]:
        row.pop("bytes_text", None)
    return "\n".join(parts)


def stats_report(args) -> int:
    problems = _report_problems(args)
    if problems:
        raise ConfigError(problems)
    until = date.fromisoformat(args.until) if args.until else audit.utc_now().date()
    criteria = BlockCriteria(args.block_ratio, args.min_daily)
    if args.plot:
        require("matplotlib", "--plot")  # before the work, naming the extra
    with session_for(args) as session:
        report = build_report(session, until, args.days, criteria)
    if args.plot:
        from .stats.plot import plot_report
        plot_report(report, Path(args.plot).expanduser())
        report["plot"] = str(Path(args.plot).expanduser())
    human = _report_human(report)
    output(args.json, report, human + (f"\n\nplot written to {report['plot']}" if args.plot else ""))
    return 0


# -- deploy ---------------------------------------------------------------------------

def _deploy_options(args):
    from .deploy.run import DeployOptions
    problems = []
    geoip = tuple(Path(p).expanduser() for p in args.geoip)
    problems += [ConfigProblem("--geoip", f"no file {p}") for p in geoip if not p.is_file()]
    if args.from_export and not Path(args.from_export).expanduser().is_dir():
        problems.append(ConfigProblem("--from-export", f"no directory {args.from_export}"))
    if not args.root.startswith("/") or args.root.rstrip("/") in ("", "/"):
        problems.append(ConfigProblem("--root", "must be an absolute directory other than /"))
    if problems:
        raise ConfigError(problems)
    return DeployOptions(root=args.root, python=args.python, service=args.service, restart=args.restart,
                         geoip=geoip, ssh_keys=tuple(args.ssh_key), check_timeout=args.check_timeout)


def _deploy_human(result: dict) -> str:
    head = [f"host {result['host']}: {result['service_manager']}, Python {result['python']}, root {result['root']}"]
    if result.get("wheel"):
        head.append(f"software: {result['wheel']} "
                    + ("installed" if result["software_installed"] else "already installed")
                    + f" (sha256 {result['wheel_sha256'][:16]}...)")
    if result["stopped"]:
        head.append(f"stopped: {', '.join(result['stopped'])}")
    rows = [{**s, "check_text": ("ok: " if s["check_ok"] else "FAILED: ") + s["check"]
             + (f" ({s['check_ms']} ms)" if s["check_ok"] else "")} for s in result["servers"]]
    return "\n".join(head) + ("\n" + table(rows, [("SERVER", "server"), ("CONFIG CHANGED", "config_changed"),
                                                   ("ACTION", "action"), ("CHECK", "check_text")]) if rows else "")


def deploy(args) -> int:
    from .deploy.bundles import from_export, from_state, host_server_ids
    from .deploy.run import deploy_host, stop_host
    from .deploy.wheel import constraints, local_wheel
    options = _deploy_options(args)
    ctx = audit.Context()
    with session_for(args) as session:
        host = lookup.host(session, args.host, include_deleted=args.stop)  # a removed host's servers can stop
        target = ssh_target(host)
        state = load_state(session, ctx.now)
    if args.stop:
        result = asyncio.run(stop_host(target, options))
    else:
        ids = host_server_ids(state, target.name)
        bundles = (from_export(Path(args.from_export).expanduser(), ids) if args.from_export
                   else from_state(state, target.name))
        result = asyncio.run(deploy_host(target, bundles, lambda: local_wheel(args.source),
                                         constraints(not args.no_pin), options))
    data = result.as_dict()
    with session_for(args) as session:
        audit.record(session, ctx, "host.stop" if args.stop else "host.deploy", "host", [target.name],
                     servers=[s["server"] for s in data["servers"]], stopped=data["stopped"],
                     service_manager=data["service_manager"], wheel_sha256=data["wheel_sha256"], ok=data["ok"])
    for note in data["notes"]:
        print(f"onehop: note: {note}", file=sys.stderr)
    output(args.json, data, _deploy_human(data) if not args.stop else record(
        {"host": data["host"], "stopped": data["stopped"], "service_manager": data["service_manager"]}))
    return 0 if result.ok else 1
