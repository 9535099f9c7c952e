"""``onehop client``: load configuration, build the candidate store, run the controller."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
import threading
import sys
from datetime import datetime, UTC

from ..configtools import parse_json_text
from ..core.serverentry import (ServerEntry, decode_server_entry, decode_server_list, rfc3339_timestamp,
                                verify_server_entry_signature)
from ..errors import ConfigError, ConfigProblem, OnehopError, ServerEntryError
from ..net.bulkreads import keep_read_buffers_in_heap
from ..stopsignals import on_stop_signals
from .candidates import TargetStore
from .config import (ClientConfig, apply_flags, default_data_dir, embedded_resource, load_client_config,
                     parse_client_config)
from .controller import Controller
from .datastore import Datastore
from . import notices as N
from .dns_forwarder import start_dns_forwarder
from .feedback.noticelog import attach_notice_log
from .notices import Notices
from .remote_lists import RemoteListFetcher
from .transfer_urls import parse_transfer_urls
from .ui.settings import read_overlay
from .upgrade.install import rollback_client
from .upgrade_hook import UpgradeHook


def _read_text(path: str, key: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError([ConfigProblem(key, f"cannot read {path}: {exc.strerror}")]) from None


def target_entry(value: str) -> ServerEntry:
    """``--target-server-entry HEX`` or ``@FILE``; a bad entry names its bad field."""
    text = _read_text(value[1:], "--target-server-entry") if value.startswith("@") else value
    try:
        return decode_server_entry(text.strip())
    except ServerEntryError as exc:
        raise ConfigError([ConfigProblem("--target-server-entry", str(exc))]) from None


def initial_entries(config: ClientConfig, notices: Notices) -> list[ServerEntry]:
    now = rfc3339_timestamp(datetime.now(UTC))
    if config.target_server_entry:
        entry = target_entry(config.target_server_entry)
        _check_target_signature(entry, config.server_entry_signature_public_key)
        return [entry.with_local("TARGET", now)]
    entries: list[ServerEntry] = []
    embedded = embedded_resource("server_list.dat")
    if embedded:
        parsed, errors = decode_server_list(embedded)
        entries += [e.with_local("EMBEDDED", now) for e in parsed]
    if config.server_list_file:
        parsed, errors = decode_server_list(_read_text(config.server_list_file, "--server-list"))
        for error in errors:
            notices.alert("skipped an invalid server entry", error=str(error))
        entries += [e.with_local("EMBEDDED", now) if not e.local_source else e for e in parsed]
    return entries


def _check_target_signature(entry: ServerEntry, public_key: str) -> None:
    """With ServerEntrySignaturePublicKey set, the target entry is held to it like any other."""
    if not public_key:
        return
    if not entry.signature:
        raise ConfigError([ConfigProblem("--target-server-entry", "the entry is unsigned, and "
                                         "ServerEntrySignaturePublicKey is set: only signed entries are used")])
    try:
        verify_server_entry_signature(entry, public_key)
    except OnehopError as exc:
        raise ConfigError([ConfigProblem("--target-server-entry", f"signature does not verify with "
                                         f"ServerEntrySignaturePublicKey: {exc}")]) from None


def build_config(args) -> ClientConfig:
    embedded = embedded_resource("config.json") if not args.config else None
    if args.config:
        config = load_client_config(args.config)
    else:  # with what a UI saved (client/ui/settings.py), which --config FILE holds itself
        raw = parse_json_text(embedded, "embedded config.json") if embedded is not None else {}
        config = parse_client_config(with_ui_settings(raw, args.data_dir), "embedded config.json"
                                     if embedded is not None else "the UI's settings.json")
    return apply_flags(
        config, data_dir=args.data_dir, socks_port=args.socks_port, http_port=args.http_port,
        dns_port=getattr(args, "dns_port", None),
        egress_region=args.region, protocols=tuple(args.protocol) if args.protocol else None,
        upstream_proxy=args.upstream_proxy, server_list_file=args.server_list,
        target_server_entry=args.target_server_entry, open_home_page=args.open_home_page,
        whole_device=getattr(args, "whole_device", None), share_lan=getattr(args, "share_lan", None),
        ui=getattr(args, "ui", None) or None, ui_port=getattr(args, "ui_port", None))


def with_ui_settings(raw: dict, data_dir: str | None) -> dict:
    return {**raw, **read_overlay(data_dir or raw.get("DataRootDirectory") or default_data_dir())}


EXIT_GRACE_SECONDS = 10.0


def _stop(main: asyncio.Task) -> None:
    """Cancel the client; if shutdown then hangs (a resolver thread stuck in getaddrinfo
    keeps asyncio from finishing), leave anyway after a grace period."""
    main.cancel()
    timer = threading.Timer(EXIT_GRACE_SECONDS, os._exit, args=(0,))
    timer.daemon = True
    timer.start()


def open_store(config: ClientConfig, notices: Notices):
    """The persistent datastore seeded with the embedded and --server-list entries (which
    never overwrite newer stored ones), or with a target server in front of it."""
    entries = initial_entries(config, notices)
    store = Datastore(config.data_dir, signature_public_key=config.server_entry_signature_public_key,
                      say=notices.alert)
    if config.target_server_entry:
        return TargetStore(entries[0], store)
    store.import_entries(entries, "EMBEDDED")
    return store


def remote_fetcher(config: ClientConfig, store, notices: Notices) -> RemoteListFetcher | None:
    if not isinstance(store, Datastore) or not config.remote_server_list_urls:
        return None
    urls = parse_transfer_urls(config.remote_server_list_urls, "RemoteServerListURLs")
    return RemoteListFetcher(urls, config.remote_server_list_signature_public_key, store, notices,
                             config.data_dir)


async def run_controller(config: ClientConfig, notices: Notices, *, terminal: bool = False,
                         ui: bool = False, config_file: str | None = None, open_browser: bool = True) -> int:
    if config.extra:
        notices.info("Psiphon settings accepted but not used by onehop", keys=sorted(config.extra))
    notice_log = attach_notice_log(notices, config.data_dir)  # redacted; what `feedback send` reports
    store = open_store(config, notices)
    controller = Controller(config, store, notices, remote_lists=remote_fetcher(config, store, notices))
    view = None
    if terminal:
        # local: rich (about 50 modules) loads only to draw on a terminal
        from .terminal_view import TerminalView
        view = TerminalView(controller, notices_path=notice_log.path)
    page = None
    try:
        if ui:
            # local: aiohttp's server and the page load with --ui only
            from .ui.launch import start_ui
            page = await start_ui(controller, config_file=config_file, open_browser=open_browser)
        return await _serve(controller, config, notices, view)
    finally:
        if page is not None:
            await page.close()
        store.close()


async def _serve(controller: Controller, config: ClientConfig, notices: Notices, view) -> int:
    upgrades = UpgradeHook(controller)
    notices.subscribe(upgrades.on_notice)
    loop = asyncio.get_running_loop()
    dns = None
    if config.dns_port:
        dns = await start_dns_forwarder(controller, config.listen_interface, config.dns_port)
        notices.emit(N.LISTENING_DNS_FORWARDER_PORT, port=dns.port)
    if config.whole_device:
        # local: the nft/netlink part loads in that mode only
        from .wholedevice import WholeDevice
        whole_device = WholeDevice(controller, config.share_lan)
        controller.whole_device = whole_device
        await whole_device.start()
    main = loop.create_task(controller.run())
    drawing = loop.create_task(view.run()) if view is not None else None
    on_stop_signals(_stop, main)
    try:
        await main
    except asyncio.CancelledError:
        pass
    except OnehopError as exc:
        notices.error(str(exc))
        if view is not None:
            view.failed(str(exc))
        return 1
    finally:
        if controller.whole_device is not None:
            await controller.whole_device.close()  # the rules go first, before anything can hang
        if drawing is not None:
            view.stopped()
            drawing.cancel()
            await asyncio.gather(drawing, return_exceptions=True)  # the final frame is drawn
        await upgrades.close()
        if dns is not None:
            dns.close()
        await controller.close()
        notices.emit(N.EXITING)
    return 0


def run_client(args) -> int:
    if getattr(args, "cleanup", False):
        return cleanup_whole_device(args)
    config = build_config(args)
    if getattr(args, "rollback", False):
        return rollback(config)
    if config.whole_device:
        # local: whole-device mode only
        from .wholedevice.rules import preflight
        preflight(config.share_lan)  # not root, no nft, no such interface: one line, nothing changed
    terminal = sys.stdout.isatty() and not args.notices
    ui = config.ui or (config.ui_without_terminal and not sys.stdout.isatty())
    if ui:  # the UI opens the home pages itself, once per connect
        config = replace(config, open_home_page=False)
    # On a terminal the view shows alerts and errors as sentences; JSON goes to the notice file.
    notices = Notices(None if terminal else sys.stdout)
    keep_read_buffers_in_heap()
    return asyncio.run(run_controller(config, notices, terminal=terminal, ui=ui, config_file=args.config,
                                      open_browser=not getattr(args, "no_browser", False)))


def cleanup_whole_device(args) -> int:
    """``onehop client --whole-device --cleanup``: remove a crashed run's rules, then exit."""
    if not args.whole_device:
        raise ConfigError([ConfigProblem("--cleanup", "needs --whole-device")])
    # local: whole-device mode only
    from .wholedevice import cleanup
    print("removed the whole-device rules (table inet onehop)" if cleanup()
          else "no whole-device rules were in place")
    return 0


def rollback(config: ClientConfig) -> int:
    """``onehop client --rollback``: put the previous single-file build back."""
    result = rollback_client(config.data_dir)
    print(f"restored {result.path} (version {result.restored_version or 'unknown'}); "
          f"the rolled-back build is kept as {result.rolled_back}")
    return 0
