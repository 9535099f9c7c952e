"""``onehop feedback receive``, ``collect``, ``decrypt`` and ``list``: the operator's
verbs. Loaded by ``cli`` only when one of them runs; ``collect`` and ``list`` import the
SQL store (SQLAlchemy, the ``network`` extra) when they run, so ``receive`` and
``decrypt`` work on the base install."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from ..core.feedbackcrypto import DEFAULT_MAX_BLOB_SIZE, decrypt, load_private_key
from ..core.redact import Redactor
from ..errors import ConfigError, ConfigProblem, FeedbackReason
from .collect import CollectReport, collect, parse_document
from .receive import ReceiveOptions, parse_listen, serve_until_signalled, start_line
from .sources import open_source


def receive(args) -> int:
    host, port = parse_listen(args.listen)
    if args.max_size <= 0:
        raise ConfigError([ConfigProblem("--max-size", "must be positive")])
    options = ReceiveOptions(host, port, os.path.abspath(os.path.expanduser(args.to)), args.max_size)
    started = None if args.quiet else (lambda bound: print(start_line(options, bound), file=sys.stderr, flush=True))
    count = asyncio.run(serve_until_signalled(options, started))
    if not args.quiet:
        print(f"onehop feedback receive: stopped; {count} uploads stored in {options.directory}", file=sys.stderr)
    return 0



def _read_file(path: str, flag: str, binary: bool = False):
    try:
        if path == "-":
            return sys.stdin.buffer.read() if binary else sys.stdin.read()
        with open(path, "rb" if binary else "r") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError([ConfigProblem(flag, f"cannot read {path}: {exc.strerror}")]) from None


def _server_ids(path: str | None) -> dict[str, str]:
    if not path:
        return {}
    try:
        mapping = json.loads(_read_file(path, "--server-ids"))
    except ValueError as exc:
        raise ConfigError([ConfigProblem("--server-ids", f"not JSON: {exc}")]) from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise ConfigError([ConfigProblem("--server-ids", 'must be {"<ip>": "<server id>", ...}')])
    return mapping


def _merge(reports: list):
    """One report of several passes (one per key) over the same uploads: everything
    stored by any pass; the rejections and errors of the last pass (still in place)."""
    stored = tuple(k for r in reports for k in r.stored)
    duplicates = tuple(k for r in reports for k in r.duplicates)
    return CollectReport(stored, duplicates, reports[-1].rejected, reports[-1].errors)


def collect_uploads(args) -> int:
    # late: the network extra (SQLAlchemy)
    from .sqlstore import SqlFeedbackStore, network_facts
    store = SqlFeedbackStore.open(args.db)
    try:
        keys, server_ids = network_facts(store, with_keys=not args.key)
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


def decrypt_blob(args) -> int:
    key = load_private_key(_read_file(args.key, "--key", binary=True))
    plaintext = decrypt(_read_file(args.blob, "BLOB", binary=True), key)
    if args.raw:
        sys.stdout.write(plaintext.decode("utf-8", errors="replace") + "\n")
    else:
        print(json.dumps(Redactor().value(parse_document(plaintext)), ensure_ascii=False, indent=2))
    return 0


def list_records(args) -> int:
    # late: the network extra (SQLAlchemy)
    from .sqlstore import SqlFeedbackStore
    store = SqlFeedbackStore.open(args.db)
    try:
        records = store.list(limit=max(1, args.limit))
    finally:
        store.close()
    if args.json:
        print(json.dumps([r.as_dict() for r in records], ensure_ascii=False))
        return 0
    if not records:
        print("no feedback stored")
        return 0
    for r in records:
        servers = ",".join(r.server_ids) or "-"
        print(f"{r.stored_at:%Y-%m-%d %H:%M} {r.upload_id} {r.platform or '-'} v{r.client_version or '?'} "
              f"servers={servers} {r.email or '-'}: {r.message[:200]!r}")
    return 0
