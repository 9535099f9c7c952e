"""``onehop mail ...`` subcommands (the mail libraries are imported inside the handlers)."""

from __future__ import annotations

from .options import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_REPLIES_PER_DAY,
    DEFAULT_REPLIES_PER_MINUTE,
)


def register(sub) -> None:
    p = sub.add_parser("mail", help="the e-mail auto-responder")
    msub = p.add_subparsers(dest="mail_command", required=True)
    r = msub.add_parser("run", help="answer requests with download links and the client build")
    r.add_argument("--config", required=True, help="responder.json written by `onehop network export`")
    r.add_argument("--listen", required=True, metavar="HOST:PORT", help="where to accept mail")
    r.add_argument("--relay", required=True, metavar="HOST:PORT", help="the SMTP relay replies go through")
    r.add_argument("--dkim-key", metavar="FILE", help="RSA private key (PEM) to sign replies with")
    r.add_argument("--dkim-selector", metavar="SEL", help="the DKIM selector (with --dkim-key)")
    r.add_argument("--dkim-domain", metavar="DOMAIN", help="the signing domain, d= (with --dkim-key)")
    r.add_argument("--state-dir", metavar="DIR",
                   help="outbox, rate limit and statistics (default ~/.local/state/onehop/mail)")
    r.add_argument("--max-replies-per-day", type=int, default=DEFAULT_REPLIES_PER_DAY, metavar="N",
                   help=f"answered requests per sender and day (default {DEFAULT_REPLIES_PER_DAY})")
    r.add_argument("--max-replies-per-minute", type=int, default=DEFAULT_REPLIES_PER_MINUTE, metavar="N",
                   help=f"answered requests per minute in all, beyond: 451 (default {DEFAULT_REPLIES_PER_MINUTE})")
    r.add_argument("--max-message-size", type=int, default=DEFAULT_MAX_MESSAGE_SIZE, metavar="BYTES",
                   help=f"larger requests are refused with 552 (default {DEFAULT_MAX_MESSAGE_SIZE})")
    r.add_argument("--require-dkim", action="store_true",
                   help="answer only requests with a valid DKIM signature of their From domain")
    r.add_argument("--tls-cert", metavar="FILE", help="offer STARTTLS with this certificate chain (PEM)")
    r.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    r.add_argument("--require-tls", action="store_true",
                   help="refuse requests sent without STARTTLS (a request reveals who asks)")
    r.add_argument("--hostname", help="the name in our SMTP greeting and EHLO (default: this host's)")
    r.add_argument("--templates", metavar="DIR", help="reply templates (default: the packaged ones)")
    r.add_argument("--queue-lifetime", type=float, default=86400.0, metavar="SECONDS",
                   help="drop replies not delivered within this time (default 86400)")
    r.add_argument("--relay-backoff-max", type=float, default=60.0, metavar="SECONDS",
                   help="longest wait between attempts while the relay is down (default 60)")
    r.add_argument("--render-processes", type=int, default=1, metavar="N",
                   help="worker processes that render and DKIM-sign replies (0: a thread; default 1)")
    r.add_argument("--quiet", action="store_true",
                   help="print neither the start line nor events (warnings and errors still print)")
    r.set_defaults(func=_run)
    s = msub.add_parser("stats", help="replies per address and day, refusals by reason")
    s.add_argument("--state-dir", metavar="DIR", help="the responder's state directory (as for run)")
    s.add_argument("--since", metavar="YYYY-MM-DD", help="only days from this one on")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=_stats)
    d = msub.add_parser("dkim-record", help="print the DNS TXT record that publishes the DKIM key")
    d.add_argument("--dkim-key", required=True, metavar="FILE", help="the RSA private key (PEM)")
    d.add_argument("--dkim-selector", required=True, metavar="SEL", help="the DKIM selector")
    d.add_argument("--dkim-domain", required=True, metavar="DOMAIN", help="the signing domain")
    d.set_defaults(func=_dkim_record)


def _run(args) -> int:
    import asyncio
    import logging
    import sys

    from .options import options_from_args
    from .service import Responder
    responder = Responder(options_from_args(args))
    events = logging.getLogger("onehop.mail")
    if not args.quiet and events.getEffectiveLevel() > logging.INFO:
        events.setLevel(logging.INFO)  # requests answered, refused, delivered: never a requester's address
    started = None if args.quiet else (lambda: print(responder.start_line(), file=sys.stderr, flush=True))
    asyncio.run(responder.serve_until_signalled(on_started=started))
    return 0


def _dkim_record(args) -> int:
    from .dkimtools import load_dkim_key, public_key_record
    key = load_dkim_key(args.dkim_key, args.dkim_selector, args.dkim_domain)
    record = public_key_record(key).decode("ascii")
    strings = " ".join(f'"{record[i:i + 255]}"' for i in range(0, len(record), 255))  # 255 per string
    print(f"{key.selector}._domainkey.{key.domain}. IN TXT ( {strings} )")
    return 0


def _stats(args) -> int:
    from .options import default_state_dir
    from .stats import collect, format_json, format_table
    report = collect(args.state_dir or default_state_dir(), args.since)
    print(format_json(report) if args.json else format_table(report))
    return 0
