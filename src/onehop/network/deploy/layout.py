"""What a deployed host looks like, and the scripts that run on it (pure: text out).

Layout under the deploy root (``--root``, default ``/opt/onehop``)::

    ROOT/venv/                        Python virtual environment with onehop[server]
    ROOT/wheels/onehop-*.whl          the wheel installed there (+ installed.sha256, constraints.txt)
    ROOT/servers/<id>/server.json     0600: the exported config plus LogFilename (and GeoIP files)
    ROOT/servers/<id>/server-entry.dat, psinet.json
    ROOT/logs/<id>/events.jsonl       the server's event log: stats ingest --from ssh://HOST/ROOT/logs
    ROOT/geoip/*.mmdb                 GeoIP databases given with --geoip
    ROOT/run/<id>.pid, <id>.out       without systemd: the pidfile and the server's output

With systemd the servers run as instances of ``onehop-server@.service`` (written to
/etc/systemd/system, enabled, restarted with systemctl); without it each runs under
``nohup setsid`` with a pidfile, in its own process group (stopped with SIGTERM to the
group, SIGKILL after 10 s), and does not come back after a reboot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ...server.config import server_config_to_json
from ..export import LOG_NAME
from ..remote import quote

UNIT_NAME = "onehop-server@.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
DEFAULT_ROOT = "/opt/onehop"


@dataclass(frozen=True)
class Layout:
    root: str

    @property
    def venv(self) -> str:
        return f"{self.root}/venv"

    @property
    def onehop(self) -> str:
        return f"{self.venv}/bin/onehop"

    @property
    def wheels(self) -> str:
        return f"{self.root}/wheels"

    def server_dir(self, server_id: str) -> str:
        return f"{self.root}/servers/{server_id}"

    def config(self, server_id: str) -> str:
        return f"{self.server_dir(server_id)}/server.json"

    def log_dir(self, server_id: str) -> str:
        return f"{self.root}/logs/{server_id}"

    def log_file(self, server_id: str) -> str:
        return f"{self.log_dir(server_id)}/{LOG_NAME}"

    def pidfile(self, server_id: str) -> str:
        return f"{self.root}/run/{server_id}.pid"

    def output(self, server_id: str) -> str:
        return f"{self.root}/run/{server_id}.out"

    def geoip(self, name: str) -> str:
        return f"{self.root}/geoip/{name}"

    def unit(self, server_id: str) -> str:
        return f"onehop-server@{server_id}.service"


def deployed_config(exported: bytes, layout: Layout, server_id: str, geoip_names: list[str]) -> bytes:
    """The exported server.json with the host's log file (and GeoIP databases) set."""
    config = json.loads(exported)
    config["LogFilename"] = layout.log_file(server_id)
    if geoip_names:
        config["GeoIPDatabaseFilenames"] = [layout.geoip(name) for name in geoip_names]
    return server_config_to_json(config).encode("utf-8")


def systemd_unit(layout: Layout) -> str:
    protect_home = "" if layout.root.startswith(("/home", "/root")) else "ProtectHome=yes\n"
    return f"""\
# Written by onehop network deploy; instances: onehop-server@<server id>.service
[Unit]
Description=onehop server %i
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
WorkingDirectory={layout.root}/servers/%i
ExecStart={layout.onehop} server run --config {layout.root}/servers/%i/server.json
Restart=on-failure
RestartSec=5
KillMode=control-group
TimeoutStopSec=15
LimitNOFILE=65536
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=strict
{protect_home}ReadWritePaths={layout.root}/logs

[Install]
WantedBy=multi-user.target
"""


def _pid_helpers(layout: Layout, server_id: str) -> str:
    return (f"pidfile={quote(layout.pidfile(server_id))}; config={quote(layout.config(server_id))}; "
            "running() { [ -f \"$pidfile\" ] && pid=$(cat \"$pidfile\") && [ -n \"$pid\" ] "
            "&& kill -0 \"$pid\" 2>/dev/null && tr '\\0' ' ' < /proc/$pid/cmdline | grep -qF -- \"$config\"; }; ")


def nohup_stop_script(layout: Layout, server_id: str) -> str:
    """Stop the pidfile's server (only if it is that server), SIGKILL after 10 s."""
    return _pid_helpers(layout, server_id) + (
        "if running; then kill -TERM -- \"-$pid\" 2>/dev/null || kill -TERM \"$pid\"; i=0; "
        "while kill -0 \"$pid\" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; "
        "if kill -0 \"$pid\" 2>/dev/null; then kill -KILL -- \"-$pid\" 2>/dev/null || kill -KILL \"$pid\"; fi; fi; "
        "rm -f \"$pidfile\"")


def nohup_start_script(layout: Layout, server_id: str) -> str:
    """Start the server detached (own session and process group), record its pid, and
    fail with the end of its output if it dies at once."""
    return (f"cd {quote(layout.server_dir(server_id))} || exit 1; "
            f"nohup setsid {quote(layout.onehop)} server run --config {quote(layout.config(server_id))} "
            f">> {quote(layout.output(server_id))} 2>&1 < /dev/null & "
            f"pid=$!; echo $pid > {quote(layout.pidfile(server_id))}; sleep 1; "
            f"if ! kill -0 $pid 2>/dev/null; then tail -n 20 {quote(layout.output(server_id))} >&2; exit 1; fi")


def nohup_running_script(layout: Layout, server_id: str) -> str:
    return _pid_helpers(layout, server_id) + "running"


def probe_script(python: str) -> str:
    """One line of facts about the host: service manager, Python version, user."""
    return ("if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then m=systemd; else m=nohup; fi; "
            f"v=$({quote(python)} -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])' 2>/dev/null || echo none); "
            "echo \"$m $v $(id -u)\"")
