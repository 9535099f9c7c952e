"""``onehop feedback send`` and ``flush``: a user's feedback, through the client half
(``onehop.client.feedback``). Loaded by ``cli`` only when one of them runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from ..client.config import (
    ClientConfig,
    apply_flags,
    embedded_resource,
    load_client_config,
    parse_client_config,
)
from ..client.datastore import Datastore
from ..client.feedback.send import flush_feedback, send_feedback
from ..client.feedback.upload import UploadPolicy
from ..client.upgrade.install import detect_installation
from ..configtools import parse_json_text
from ..errors import ConfigError, ConfigProblem, OnehopError

EX_TEMPFAIL = 75
CLI_BACKOFF = (2.0, 10.0)


def client_config(args: argparse.Namespace) -> ClientConfig:
    """The config file, else a client build's embedded config, else the defaults."""
    config: ClientConfig
    embedded = None
    if not args.config:
        embedded = embedded_resource("config.json")
    if embedded is not None:
        config = parse_client_config(parse_json_text(embedded, "embedded config.json"), "embedded config.json")
    else:
        config = load_client_config(args.config)
    return apply_flags(config, data_dir=args.data_dir)


def _policy(args):
    if not 1 <= args.attempts <= 100:
        raise ConfigError([ConfigProblem("--attempts", "must be between 1 and 100")])
    return UploadPolicy(max_attempts=args.attempts, backoff=CLI_BACKOFF)


def _known_servers(config) -> list[str]:
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
    return detect_installation().kind


def send(args) -> int:
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


def flush(args) -> int:
    report = asyncio.run(flush_feedback(client_config(args), policy=_policy(args)))
    if args.json:
        print(json.dumps({"uploaded": list(report.uploaded), "pending": list(report.pending)}))
    else:
        print(f"uploaded {len(report.uploaded)}, still pending {len(report.pending)}")
    return 0 if not report.pending else EX_TEMPFAIL
