"""Handlers of ``provider add|list``, ``host launch|destroy`` and ``heal`` (parsers in ``cli_cloud``).

Provider calls and deploys run outside any long transaction: ``launch`` and ``heal``
commit each step as it happens, so an error half-way leaves the database saying
exactly what exists, and a rerun finishes the job.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

from ..errors import ConfigError, ConfigProblem
from . import audit, launch
from .commands import run, session_for
from .db import Database
from .models import Launch
from .render import output, record, table


def _images(values: list[str]) -> dict[str, str]:
    images = {}
    for value in values:
        region, _, image = value.rpartition("=")
        images[region or "*"] = image
    return images


def _settings(args) -> dict:
    if args.kind == "aws":
        settings = {"images": _images(args.image), "instance_type": args.instance_type,
                    "elastic_ip": bool(args.elastic_ip), "ssh_user": args.ssh_user}
        for key in ("credentials_file", "profile", "endpoint_url"):
            if getattr(args, key):
                settings[key] = getattr(args, key)
        return settings
    if not args.machines:
        raise ConfigError([ConfigProblem("--machines", "an ssh provider needs its machines (a JSON file)")])
    try:
        machines = json.loads(Path(args.machines).expanduser().read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError([ConfigProblem("--machines", f"cannot read {args.machines}: {exc}")]) from None
    return {"machines": machines}


def provider_add(args) -> int:
    settings = _settings(args)
    result = run(args, lambda s, ctx: launch.provider_dict(launch.add_provider(s, ctx, args.name, args.kind, settings)),
                 lambda r: record(r, ["name", "kind", "ssh_public_key"]))
    return result


def provider_list(args) -> int:
    from sqlalchemy import select
    from .models import Provider
    with session_for(args) as session:
        rows = [launch.provider_dict(p) for p in session.scalars(select(Provider).order_by(Provider.name))]
    output(args.json, rows, table(rows, [("NAME", "name"), ("KIND", "kind"), ("CREATED", "created_at")]))
    return 0


def _open(args) -> Database:
    return Database.open(args.db)


def host_launch(args) -> int:
    if not 1 <= args.count <= 20:
        raise ConfigError([ConfigProblem("--count", "between 1 and 20")])
    db, ctx, done = _open(args), audit.Context(), []
    try:
        for _ in range(args.count):
            done.append(launch.launch_host(db, ctx, args.provider, args.region, ports=tuple(args.port or [443])))
    finally:
        db.close()
        if done and len(done) < args.count:
            print(f"onehop: launched {', '.join(d.host for d in done)} before the error", file=sys.stderr)
    rows = [d.as_dict() for d in done]
    output(args.json, rows, table(rows, [("HOST", "host"), ("REGION", "region"), ("COUNTRY", "country")])
           + "\nadd servers (server add --host H) and deploy them (deploy --host H)")
    return 0


def host_destroy(args) -> int:
    db = _open(args)
    try:
        result = launch.destroy_host(db, audit.Context(), args.name, force=args.force)
    finally:
        db.close()
    output(args.json, result, record(result))
    return 0


def launches_list(args) -> int:
    from sqlalchemy import select
    with session_for(args) as session:
        rows = [{"host": row.host_name, "provider": row.provider.name, "region": row.region, "state": row.state,
                 "error": row.error,
                 "unreleased": [f"{r.kind} {r.resource_id}" for r in launch.unreleased(session, row.id)]}
                for row in session.scalars(select(Launch).order_by(Launch.id))]
    output(args.json, rows, table(rows, [("HOST", "host"), ("PROVIDER", "provider"), ("REGION", "region"),
                                         ("STATE", "state"), ("UNRELEASED", "unreleased")]))
    return 0


def _heal_options(args):
    from .deploy.run import DeployOptions
    from .heal import HealOptions
    from .stats.report import BlockCriteria
    problems = []
    try:
        until = date.fromisoformat(args.until) if args.until else audit.utc_now().date()
    except ValueError:
        problems.append(ConfigProblem("--until", "must be a date like 2025-01-31"))
        until = None
    if args.max_hosts is not None and not 0 <= args.max_hosts <= 100:
        problems.append(ConfigProblem("--max-hosts", "between 0 and 100"))
    if problems:
        raise ConfigError(problems)
    deploy = DeployOptions(root=args.root, python=args.python, ssh_keys=tuple(args.ssh_key),
                           check_timeout=args.check_timeout)
    return HealOptions(until=until, criteria=BlockCriteria(args.block_ratio, args.min_daily),
                       max_hosts=args.max_hosts, provider=args.provider,
                       export_dir=Path(args.export).expanduser() if args.export else None,
                       publish_to=args.publish_to, base_url=args.base_url, s3_endpoint=args.s3_endpoint,
                       deploy=not args.no_deploy, deploy_options=deploy, source=args.source)


def _heal_human(result: dict, dry_run: bool) -> str:
    lines = [table(result["plan"], [("SERVER", "server"), ("KIND", "kind"), ("REGIONS", "regions"),
                                    ("ACTION", "action"), ("PROVIDER", "provider"), ("WHERE", "provider_region"),
                                    ("WHY", "reason")]) if result["plan"] else "no likely blocks: nothing to do"]
    if dry_run:
        return "\n".join(lines + ["(dry run: nothing changed)"])
    lines += [f"replaced {r['server']} with {r['replacement']}" for r in result["replaced"]]
    lines += [f"deployed {d['host']}: {'ok' if d['ok'] else 'CHECK FAILED'}" for d in result["deployed"]]
    lines += [f"published {url}" for url in result["published"]]
    lines += [f"destroyed idle host {h}" for h in result["destroyed"]]
    lines += [f"FAILED {e['step']} {e['server'] or ''}: {e['error']}" + (" (quota)" if e["quota"] else "")
              for e in result["errors"]]
    if result["errors"]:
        lines.append("run heal again to finish (every finished step is kept)")
    return "\n".join(lines)


def heal(args) -> int:
    from . import heal as healing
    from . import settings
    options = _heal_options(args)
    db = _open(args)
    try:
        if options.max_hosts is None:
            with db.transaction() as session:
                options.max_hosts = int(settings.get(session, "heal-max-hosts-per-run"))
        result = healing.run(db, audit.Context(), options, dry_run=args.dry_run).as_dict()
    finally:
        db.close()
    output(args.json, result, _heal_human(result, args.dry_run))
    return 0 if result["ok"] else 1


def discovery_simulate(args) -> int:
    """``discovery simulate``: the enumeration count, or with ``--week`` the censorship week."""
    if not args.week:
        from .commands_files import discovery_simulate as enumeration
        return enumeration(args)
    from ..extras import require
    from .censorsim import WeekParams, plot_weeks, simulate_week
    problems = [ConfigProblem(key, f"between 1 and {top}") for key, value, top in (
        ("--days", args.days, 60), ("--users", args.users, 20000), ("--attacker-ips", args.attacker_ips, 10000),
        ("--embedded", args.embedded, 1000), ("--discovery-servers", args.discovery_servers, 10000),
        ("--block-delay-hours", args.block_delay_hours, 24 * 30), ("--max-hosts", args.max_hosts + 1, 1001))
        if not 1 <= value <= top]
    if problems:
        raise ConfigError(problems)
    if args.plot:
        require("matplotlib", "--plot")
    strategies = ("consistent", "classic") if args.strategy == "both" else (args.strategy,)
    heals = {"both": (False, True), "on": (True,), "off": (False,)}[args.heal]
    results = [simulate_week(WeekParams(strategy, heal, args.days, args.users, args.embedded, args.discovery_servers,
                                        args.attacker_ips, args.block_delay_hours, args.max_hosts, args.seed))
               for strategy in strategies for heal in heals]
    if args.plot:
        plot_weeks(results, Path(args.plot).expanduser())
    rows = [{"strategy": r.params.strategy, "heal": "daily" if r.params.heal else "off", **vars(d)}
            for r in results for d in r.days]
    output(args.json, [r.as_dict() for r in results],
           table(rows, [("STRATEGY", "strategy"), ("HEAL", "heal"), ("DAY", "day"),
                        ("USERS WORKING", "users_with_working_server"), ("LAUNCHED", "servers_launched"),
                        ("REVEALED", "revealed_to_censor"), ("BLOCKED", "blocked")])
           + (f"\nplot written to {args.plot}" if args.plot else ""))
    return 0
