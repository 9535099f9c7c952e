"""``onehop lab run SCENARIO|all [--report FILE] [--plot FILE] [--mode auto|netns|relay]``."""

from __future__ import annotations

MODES = ("auto", "netns", "relay")


def register(subparsers) -> None:
    lab = subparsers.add_parser("lab", help="censorship lab: run onehop through censor models")
    sub = lab.add_subparsers(dest="lab_command", required=True)
    run = sub.add_parser("run", help="run a scenario (or all) and report what got through")
    run.add_argument("scenario", metavar="SCENARIO",
                     help="all, ssh-dpi, http-whitelist, entropy, ip-blocking, embedded-blocked, active-prober")
    run.add_argument("--report", metavar="FILE", help="write the observations as JSON")
    run.add_argument("--plot", metavar="FILE", help="write a PNG of the time to connect per scenario")
    run.add_argument("--mode", choices=MODES, default="auto",
                     help="network namespaces (root) or a relay on loopback; auto picks netns when it can")
    run.add_argument("--no-notes", action="store_true", help="print the tables without the notes")
    run.set_defaults(func=_run)
    ndpi = sub.add_parser("ndpi", help="capture SSH, OSSH and prefixed OSSH and classify the flows with nDPI")
    ndpi.add_argument("--mode", choices=MODES, default="auto", help="as for run")
    ndpi.add_argument("--pcap", metavar="FILE", help="keep the capture here (default: a temporary file)")
    ndpi.set_defaults(func=_ndpi)


def _run_cleanly(coroutine):
    """asyncio.run, with SIGTERM unwinding like Ctrl-C so that namespaces, servers and
    captures are removed on the way out."""
    import asyncio
    import signal
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return asyncio.run(coroutine)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args) -> int:
    import sys

    from .report import print_table, write_json, write_plot
    from .runner import LabSettings
    from .session import resolve_mode, run_scenarios, scenario_names

    if args.plot:
        from ..extras import require
        require("matplotlib", "--plot")  # before the scenarios, not after minutes of them
    names = scenario_names(args.scenario)
    mode = resolve_mode(args.mode)
    settings = LabSettings()
    print(f"onehop lab: {', '.join(names)} ({mode} mode)", flush=True)
    observations = _run_cleanly(run_scenarios(names, mode, settings))
    print_table(observations, sys.stdout, notes=not args.no_notes)
    if args.report:
        write_json(observations, args.report)
    if args.plot:
        write_plot(observations, args.plot, settings.establish_deadline)
    mismatches = [o for o in observations if not o.as_expected]
    print(f"\n{len(observations) - len(mismatches)} of {len(observations)} observations as expected"
          + (f"; MISMATCH: {', '.join(f'{o.scenario}/{o.censor}/{o.protocol}' for o in mismatches)}"
             if mismatches else ""))
    return 1 if mismatches else 0


def _ndpi(args) -> int:
    import os
    import tempfile

    from .capture import capture_available
    from .session import EXPECTED_NDPI, classify_traffic, resolve_mode
    from .topology import LabError

    why_not = capture_available()
    if why_not is not None:
        raise LabError(why_not)
    mode = resolve_mode(args.mode)
    with tempfile.TemporaryDirectory(prefix="onehop-ndpi-") as tmp:
        pcap = args.pcap or os.path.join(tmp, "lab.pcap")
        results = _run_cleanly(classify_traffic(mode, pcap))
    failures = 0
    print(f"nDPI on the lab's traffic ({mode} mode):")
    for result in results:
        masters = {f.master for f in result.flows}
        ok = bool(result.flows) and masters == {EXPECTED_NDPI[result.protocol]}
        failures += not ok
        print(f"  {result.protocol:18s} {len(result.flows)} flow(s): {', '.join(result.applications) or '-'}"
              f"  (expected {EXPECTED_NDPI[result.protocol]}){'' if ok else '  MISMATCH'}")
    return 1 if failures else 0
