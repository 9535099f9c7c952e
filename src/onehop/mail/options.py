"""``onehop mail run`` options, validated once into a frozen ``RunOptions``.

Every problem is reported at once, keyed by its command-line flag (``--listen``,
``--dkim-key``...). Tests build ``RunOptions`` directly, with short timings.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, ConfigProblem
from .dkimkey import DkimKey

DEFAULT_MAX_MESSAGE_SIZE = 2 * 1024 * 1024
DEFAULT_REPLIES_PER_DAY = 3
DEFAULT_REPLIES_PER_MINUTE = 600
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_SELECTOR_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,62})")


@dataclass(frozen=True)
class RunOptions:
    config_path: Path
    listen: tuple[str, int]
    relay: tuple[str, int]
    state_dir: Path
    dkim: DkimKey | None = None
    max_replies_per_day: int = DEFAULT_REPLIES_PER_DAY
    max_replies_per_minute: int = DEFAULT_REPLIES_PER_MINUTE
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    require_dkim: bool = False
    tls_cert: Path | None = None         # STARTTLS for requests (PEM chain and key)
    tls_key: Path | None = None
    require_tls: bool = False            # refuse MAIL before STARTTLS
    hostname: str = "localhost"
    templates_dir: Path | None = None
    max_queued: int = 10000              # pending replies before requests get 451
    max_recipients: int = 5              # our addresses per request
    queue_lifetime: float = 86400.0      # a reply not delivered by then is dropped
    relay_timeout: float = 30.0
    relay_connections: int = 4           # parallel deliveries to the relay
    render_processes: int = 1            # 0: render and sign in a thread of this process
    relay_backoff_initial: float = 1.0   # relay unreachable: 1, 2, 4 ... seconds
    relay_backoff_max: float = 60.0
    retry_initial: float = 30.0          # relay answered 4xx/5xx for one reply
    retry_max: float = 3600.0
    max_refusals: int = 5                # 5xx answers before a reply is given up
    reload_interval: float = 2.0
    housekeeping_interval: float = 30.0  # expiry, rate-limit purge, statistics flush
    smtp_timeout: float = 60.0           # idle SMTP connection
    dns_timeout: float = 5.0


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "onehop" / "mail"


def parse_hostport(value: str, flag: str, problems: list[ConfigProblem]) -> tuple[str, int] | None:
    host, sep, port = (value or "").rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        problems.append(ConfigProblem(flag, f"expected HOST:PORT, got {value!r}"))
        return None
    return host, int(port)


def options_from_args(args) -> RunOptions:
    problems: list[ConfigProblem] = []
    listen = parse_hostport(args.listen, "--listen", problems)
    relay = parse_hostport(args.relay, "--relay", problems)
    if relay is not None and relay[1] == 0:
        problems.append(ConfigProblem("--relay", "port 0 is not a relay"))
    for flag, value, low in (("--max-replies-per-day", args.max_replies_per_day, 1),
                             ("--max-replies-per-minute", args.max_replies_per_minute, 1),
                             ("--max-message-size", args.max_message_size, 1024),
                             ("--render-processes", args.render_processes, 0)):
        if value < low:
            problems.append(ConfigProblem(flag, f"must be at least {low}"))
    for flag, value in (("--queue-lifetime", args.queue_lifetime), ("--relay-backoff-max", args.relay_backoff_max)):
        if not value > 0:
            problems.append(ConfigProblem(flag, "must be positive"))
    hostname = args.hostname or socket.gethostname() or "localhost"
    if not _HOSTNAME_RE.fullmatch(hostname):
        problems.append(ConfigProblem("--hostname", "not a host name"))
    if not os.path.isfile(args.config):
        problems.append(ConfigProblem("--config", f"file not found: {args.config}"))
    dkim = _dkim(args, problems)
    _tls(args, problems)
    if problems:
        raise ConfigError(problems)
    assert listen is not None and relay is not None  # a missing one is a problem above
    return RunOptions(config_path=Path(args.config).absolute(), listen=listen, relay=relay,
                      state_dir=Path(args.state_dir or default_state_dir()).absolute(), dkim=dkim,
                      max_replies_per_day=args.max_replies_per_day,
                      max_replies_per_minute=args.max_replies_per_minute,
                      max_message_size=args.max_message_size, require_dkim=args.require_dkim,
                      hostname=hostname, templates_dir=Path(args.templates) if args.templates else None,
                      queue_lifetime=args.queue_lifetime, relay_backoff_max=args.relay_backoff_max,
                      relay_backoff_initial=min(1.0, args.relay_backoff_max),
                      render_processes=args.render_processes,
                      tls_cert=Path(args.tls_cert).absolute() if args.tls_cert else None,
                      tls_key=Path(args.tls_key).absolute() if args.tls_key else None,
                      require_tls=args.require_tls)


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The server side of STARTTLS (TLS 1.2 at least); ssl.SSLError/OSError if unusable."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def _tls(args, problems: list[ConfigProblem]) -> None:
    if bool(args.tls_cert) != bool(args.tls_key):
        problems.append(ConfigProblem("--tls-key" if args.tls_cert else "--tls-cert",
                                      "--tls-cert and --tls-key go together"))
    elif args.tls_cert:
        try:
            tls_context(Path(args.tls_cert), Path(args.tls_key))
        except (ssl.SSLError, OSError) as exc:
            problems.append(ConfigProblem("--tls-cert", f"cannot load the certificate and key: {exc}"))
    if args.require_tls and not args.tls_cert:
        problems.append(ConfigProblem("--require-tls", "needs --tls-cert and --tls-key"))


def _dkim(args, problems: list[ConfigProblem]) -> DkimKey | None:
    given = {"--dkim-key": args.dkim_key, "--dkim-selector": args.dkim_selector,
             "--dkim-domain": args.dkim_domain}
    if not any(given.values()):
        return None
    before = len(problems)
    missing = [flag for flag, value in given.items() if not value]
    for flag in missing:
        problems.append(ConfigProblem(flag, "required with the other --dkim-* options"))
    if args.dkim_selector and not _SELECTOR_RE.fullmatch(args.dkim_selector):
        problems.append(ConfigProblem("--dkim-selector", "not a DKIM selector"))
    if args.dkim_domain and (not _HOSTNAME_RE.fullmatch(args.dkim_domain) or "." not in args.dkim_domain):
        problems.append(ConfigProblem("--dkim-domain", "not a domain name"))
    if len(problems) > before:
        return None
    from .dkimtools import load_dkim_key  # dkimpy and cryptography: only when signing
    try:
        return load_dkim_key(args.dkim_key, args.dkim_selector, args.dkim_domain)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None
