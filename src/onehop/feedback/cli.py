"""``onehop feedback``: send (users), collect / decrypt / list (operators).

::

    onehop feedback send --message TEXT [--email ADDR] [--no-diagnostics]
                         [--config FILE | --data-dir DIR] [--attempts N] [--json]
    onehop feedback flush [--config FILE | --data-dir DIR] [--attempts N] [--json]
    onehop feedback collect --db URL --from DIR|s3://bucket/prefix [--key FILE]
                            [--s3-endpoint URL] [--server-ids FILE] [--max-size BYTES] [--json]
    onehop feedback receive --listen HOST:PORT --to DIR [--max-size BYTES] [--quiet]
    onehop feedback decrypt --key FILE BLOB|- [--raw]
    onehop feedback list --db URL [--limit N] [--json]

``send`` exits 0 once uploaded, 75 (EX_TEMPFAIL) when the package is saved but not
uploaded yet (the client, or ``flush``, uploads it later). ``collect`` exits 0 when
every upload was stored or skipped, 1 when some were rejected or failed (they are left
in place). Heavy imports happen inside the handlers.

``collect`` and ``list`` use the network database (``onehop network init`` creates the
table): by default ``collect`` decrypts with the network's feedback keys (the active
one, then retired ones, so uploads made before a rotation still decrypt) and replaces
the address of every server the network ever had with its server ID; ``--key`` and
``--server-ids`` override them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..cliargs import add_after_verb

DB_HELP = ("network database URL, for collect and list (default: the network's default database); "
           "accepted before or after the verb")

EX_TEMPFAIL = 75
CLI_BACKOFF = (2.0, 10.0)


def register(sub) -> None:
    p = sub.add_parser("feedback", help="send feedback; collect, decrypt and list it (operators)")
    p.add_argument("--db", metavar="URL", help=DB_HELP)
    fsub = p.add_subparsers(dest="feedback_command", required=True)
    s = fsub.add_parser("send", help="send feedback with redacted, encrypted diagnostics")
    s.add_argument("--message", required=True, help="what went wrong, in your words")
    s.add_argument("--email", default="", help="where the operators may answer (optional)")
    s.add_argument("--no-diagnostics", action="store_true", help="send the message only")
    _client_flags(s)
    s.set_defaults(func=_send)
    f = fsub.add_parser("flush", help="upload feedback saved earlier and not uploaded yet")
    _client_flags(f)
    f.set_defaults(func=_flush)
    c = fsub.add_parser("collect", help="decrypt and store uploaded feedback, then delete the uploads")
    add_after_verb(c, "--db", metavar="URL", help_text=DB_HELP)
    c.add_argument("--from", dest="source", required=True, help="upload directory or s3://bucket/prefix")
    c.add_argument("--key", help="the feedback private key (PEM or base64 DER file); default: the network "
                   "database's feedback keys")
    c.add_argument("--s3-endpoint", help="S3-compatible endpoint URL")
    c.add_argument("--server-ids", help='JSON file {"<server ip>": "<server id>", ...}, added to (and '
                   "overriding) the network database's servers")
    c.add_argument("--max-size", type=int, help="largest upload accepted, in bytes (default 8 MiB)")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.set_defaults(func=_collect)
    r = fsub.add_parser("receive", help="accept feedback uploads (HTTP PUT) into a directory for collect",
                        description="A small upload endpoint for a directory setup: each PUT body is stored "
                                    "atomically in --to DIR, which `onehop feedback collect --from DIR` reads. "
                                    "Clients upload to it once `onehop network settings set feedback-upload-url "
                                    "http://HOST:PORT/` is set and their build is made again. Never records who "
                                    "uploaded.")
    r.add_argument("--listen", required=True, metavar="HOST:PORT", help="where to accept uploads")
    r.add_argument("--to", required=True, metavar="DIR", help="the directory uploads are stored in")
    r.add_argument("--max-size", type=int, default=8 * 1024 * 1024, metavar="BYTES",
                   help="larger uploads get 413 (default 8 MiB, what collect accepts)")
    r.add_argument("--quiet", action="store_true", help="print no start line")
    r.set_defaults(func=_receive)
    d = fsub.add_parser("decrypt", help="decrypt one feedback blob (MAC checked first)")
    d.add_argument("--key", required=True, help="the feedback private key (PEM or base64 DER file)")
    d.add_argument("blob", help="blob file, or - for standard input")
    d.add_argument("--raw", action="store_true", help="print the plaintext without redacting it")
    d.set_defaults(func=_decrypt)
    ls = fsub.add_parser("list", help="list stored feedback (decrypted, redacted)")
    add_after_verb(ls, "--db", metavar="URL", help_text=DB_HELP)
    ls.add_argument("--limit", type=int, default=50, help="how many, newest first (default 50)")
    ls.add_argument("--json", action="store_true", help="print JSON for scripts")
    ls.set_defaults(func=_list)


def _client_flags(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--config", help="client config file (Psiphon key names)")
    where.add_argument("--data-dir", help="client data directory (with the built-in or default config)")
    p.add_argument("--attempts", type=int, default=3, help="upload attempts before giving up for now")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


# -- users --------------------------------------------------------------------------

def client_config(args):
    """The config file, else a client build's embedded config, else the defaults."""
    from ..client.config import (
        ClientConfig,
        apply_flags,
        load_client_config,
        parse_client_config,
    )
    from ..configtools import parse_json_text
    config: ClientConfig
    embedded = None
    if not args.config:
        from ..client.app import embedded_resource
        embedded = embedded_resource("config.json")
    if embedded is not None:
        config = parse_client_config(parse_json_text(embedded, "embedded config.json"), "embedded config.json")
    else:
        config = load_client_config(args.config)
    return apply_flags(config, data_dir=args.data_dir)


def _policy(args):
    from ..errors import ConfigError, ConfigProblem
    from .upload import UploadPolicy
    if not 1 <= args.attempts <= 100:
        raise ConfigError([ConfigProblem("--attempts", "must be between 1 and 100")])
    return UploadPolicy(max_attempts=args.attempts, backoff=CLI_BACKOFF)


def _known_servers(config) -> list[str]:
    import os

    from ..client.datastore import Datastore
    from ..errors import OnehopError
    if not os.path.exists(os.path.join(config.data_dir, "datastore.sqlite")):
        return []
    try:
        store = Datastore(config.data_dir)
    except OnehopError:
        return []
    try:
        return [e.ip_address for e in store.entries()]
    finally:
        store.close()


def _installation() -> str:
    from ..upgrade.install import detect_installation
    return detect_installation().kind


def _without_db(args) -> None:
    """``--db`` before a verb that has no use for it is a mistake worth saying."""
    if getattr(args, "db", None):
        from ..errors import ConfigError, ConfigProblem
        raise ConfigError([ConfigProblem("--db", f"only collect and list use the network database, "
                                                 f"not {args.feedback_command}")])


def _send(args) -> int:
    import asyncio

    from .send import send_feedback
    _without_db(args)
    config = client_config(args)
    result = asyncio.run(send_feedback(
        config, args.message, email=args.email, include_diagnostics=not args.no_diagnostics,
        keep_ips=_known_servers(config), installation=_installation(), policy=_policy(args),
        on_event=_print_upload_event))
    if args.json:
        print(json.dumps({"upload_id": result.upload_id, "uploaded": result.uploaded,
                          "pending": list(result.report.pending)}))
    elif result.uploaded:
        print(f"feedback {result.upload_id} sent, thank you")
    else:
        print(f"feedback {result.upload_id} saved in {result.pending_path}; it will be uploaded "
              "when a connection works (onehop client, or onehop feedback flush)")
    return 0 if result.uploaded else EX_TEMPFAIL


def _print_upload_event(kind: str, data: dict) -> None:
    attempt = f" (attempt {data['attempt']})" if data.get("attempt") else ""
    if kind == "uploaded":
        print(f"feedback {data['uploadId']} uploaded{attempt}", file=sys.stderr)
    else:
        print(f"feedback {data['uploadId']}: upload {kind}{attempt}: {data.get('error', '')}", file=sys.stderr)


def _receive(args) -> int:
    import asyncio

    from ..errors import ConfigError, ConfigProblem
    from .receive import ReceiveOptions, parse_listen, serve_until_signalled, start_line
    host, port = parse_listen(args.listen)
    if args.max_size <= 0:
        raise ConfigError([ConfigProblem("--max-size", "must be positive")])
    options = ReceiveOptions(host, port, os.path.abspath(os.path.expanduser(args.to)), args.max_size)
    started = None if args.quiet else (lambda bound: print(start_line(options, bound), file=sys.stderr, flush=True))
    count = asyncio.run(serve_until_signalled(options, started))
    if not args.quiet:
        print(f"onehop feedback receive: stopped; {count} uploads stored in {options.directory}", file=sys.stderr)
    return 0


def _flush(args) -> int:
    import asyncio

    from .send import flush_feedback
    _without_db(args)
    report = asyncio.run(flush_feedback(client_config(args), policy=_policy(args)))
    if args.json:
        print(json.dumps({"uploaded": list(report.uploaded), "pending": list(report.pending)}))
    else:
        print(f"uploaded {len(report.uploaded)}, still pending {len(report.pending)}")
    return 0 if not report.pending else EX_TEMPFAIL


# -- operators ------------------------------------------------------------------------

def _read_file(path: str, flag: str, binary: bool = False):
    from ..errors import ConfigError, ConfigProblem
    try:
        if path == "-":
            return sys.stdin.buffer.read() if binary else sys.stdin.read()
        with open(path, "rb" if binary else "r") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError([ConfigProblem(flag, f"cannot read {path}: {exc.strerror}")]) from None


def _server_ids(path: str | None) -> dict[str, str]:
    from ..errors import ConfigError, ConfigProblem
    if not path:
        return {}
    try:
        mapping = json.loads(_read_file(path, "--server-ids"))
    except ValueError as exc:
        raise ConfigError([ConfigProblem("--server-ids", f"not JSON: {exc}")]) from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise ConfigError([ConfigProblem("--server-ids", 'must be {"<ip>": "<server id>", ...}')])
    return mapping


def _network_facts(store, with_keys: bool) -> tuple[list[str], dict[str, str]]:
    """(the network's feedback private keys, active first; {server IP: server ID})."""
    from sqlalchemy.orm import Session

    from ..network.keys import private_keys
    from ..network.servers import server_ids_by_ip
    with Session(store.engine) as session:
        keys = private_keys(session, "feedback") if with_keys else []
        return keys, server_ids_by_ip(session)


def _merge(reports: list):
    """One report of several passes (one per key) over the same uploads: everything
    stored by any pass; the rejections and errors of the last pass (still in place)."""
    from .collect import CollectReport
    stored = tuple(k for r in reports for k in r.stored)
    duplicates = tuple(k for r in reports for k in r.duplicates)
    return CollectReport(stored, duplicates, reports[-1].rejected, reports[-1].errors)


def _collect(args) -> int:
    from ..core.feedbackcrypto import DEFAULT_MAX_BLOB_SIZE, load_private_key
    from ..errors import ConfigError, ConfigProblem, FeedbackReason
    from .collect import collect
    from .sources import open_source
    from .store import SqlFeedbackStore
    store = SqlFeedbackStore.open(args.db)
    try:
        keys, server_ids = _network_facts(store, with_keys=not args.key)
        if args.key:
            keys = [_read_file(args.key, "--key", binary=True)]
        if not keys:
            raise ConfigError([ConfigProblem("--key", "the network database has no feedback key: give --key")])
        server_ids.update(_server_ids(args.server_ids))
        source = open_source(args.source, s3_endpoint=args.s3_endpoint)
        reports = []
        for key in keys:  # keys after the first only see uploads the others could not open
            reports.append(collect(source, store, load_private_key(key), server_ids=server_ids,
                                   max_size=args.max_size or DEFAULT_MAX_BLOB_SIZE))
            if not any(r.reason == FeedbackReason.FOREIGN_KEY for r in reports[-1].rejected):
                break
        report = _merge(reports)
    finally:
        store.close()
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(f"stored {len(report.stored)}, already stored {len(report.duplicates)}, "
              f"rejected {len(report.rejected)}, errors {len(report.errors)}")
        for rejection in report.rejected:
            print(f"rejected {rejection.key}: {rejection.message}", file=sys.stderr)
        for error in report.errors:
            print(f"error {error}", file=sys.stderr)
    return 0 if not (report.rejected or report.errors) else 1


def _decrypt(args) -> int:
    from ..core.feedbackcrypto import decrypt, load_private_key
    from .collect import parse_document
    from .redact import Redactor
    _without_db(args)
    key = load_private_key(_read_file(args.key, "--key", binary=True))
    plaintext = decrypt(_read_file(args.blob, "BLOB", binary=True), key)
    if args.raw:
        sys.stdout.write(plaintext.decode("utf-8", errors="replace") + "\n")
    else:
        print(json.dumps(Redactor().value(parse_document(plaintext)), ensure_ascii=False, indent=2))
    return 0


def _list(args) -> int:
    from .store import SqlFeedbackStore
    store = SqlFeedbackStore.open(args.db)
    try:
        records = store.list(limit=max(1, args.limit))
    finally:
        store.close()
    if args.json:
        print(json.dumps([r.as_dict() for r in records], ensure_ascii=False))
        return 0
    for r in records:
        servers = ",".join(r.server_ids) or "-"
        print(f"{r.stored_at:%Y-%m-%d %H:%M} {r.upload_id} {r.platform or '-'} v{r.client_version or '?'} "
              f"servers={servers} {r.email or '-'}: {r.message[:200]!r}")
    return 0
