"""Rendering and DKIM-signing replies away from the event loop.

Both are CPU-bound Python that holds the GIL in long stretches (dkimpy canonicalizes the
body with regular expressions and signs with pure-Python RSA: tens of milliseconds for a
reply carrying a build). In a thread they would stall the event loop that answers the
SMTP dialogue, so by default they run in worker processes (``render_processes``,
started with ``spawn``: the responder has threads, and forking those is unsafe); 0 keeps
them in one thread of the responder (tests, tiny deployments).

A worker reads the attachment from the state directory's blobs (by sha256) and keeps the
base64 of the last builds it used, so a build is encoded once per worker, not per reply.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import signal
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ..errors import OnehopError
from . import dkimtools
from .blobs import Blobs
from .dkimkey import DkimKey
from .options import RunOptions
from .render import ATTACHMENT, EncodedAttachment, ReplySpec, encode_attachment, render
from .templates import TemplateSet, load_templates

_CACHED_BUILDS = 2


class RendererCrashed(OnehopError):
    """A render worker process died; the pool is restarted and the reply stays queued."""


class _Worker:
    """Everything one renderer (process or thread) needs, loaded once."""

    def __init__(self, templates: TemplateSet, dkim: DkimKey | None, state_dir: Path) -> None:
        self.templates = templates
        self.dkim = dkim
        self.blobs = Blobs(state_dir)
        self.encoded: dict[str, EncodedAttachment] = {}

    def build(self, spec_json: str) -> tuple[ReplySpec, bytes]:
        spec = ReplySpec.from_json(spec_json)
        if spec.language not in self.templates.supported:
            spec = dataclasses.replace(spec, language="en")
        attachment = self._attachment(spec.attachment_sha256) if spec.kind == ATTACHMENT else None
        message = render(spec, self.templates, attachment)
        if self.dkim is not None:
            message = dkimtools.sign(message, self.dkim)
        return spec, message

    def _attachment(self, sha256: str | None) -> EncodedAttachment:
        if not sha256:
            raise ValueError("attachment reply without a blob")
        cached = self.encoded.get(sha256)
        if cached is None:
            cached = encode_attachment(self.blobs.read(sha256))
            while len(self.encoded) >= _CACHED_BUILDS:
                self.encoded.pop(next(iter(self.encoded)))
            self.encoded[sha256] = cached
        return cached


_process_worker: _Worker | None = None


def _init_process(templates_dir: Path | None, dkim: DkimKey | None, state_dir: Path) -> None:
    global _process_worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _process_worker = _Worker(load_templates(templates_dir), dkim, state_dir)


def _build_in_process(spec_json: str) -> tuple[ReplySpec, bytes]:
    assert _process_worker is not None
    return _process_worker.build(spec_json)


def _ready() -> bool:
    return _process_worker is not None


class Renderer:
    """``await renderer.build(spec_json)`` -> (spec, message bytes, signed if configured)."""

    def __init__(self, options: RunOptions, templates: TemplateSet) -> None:
        self.options = options
        self.templates = templates
        self._executor: Executor | None = None
        self._worker: _Worker | None = None

    def _start(self) -> Executor:
        o = self.options
        if o.render_processes <= 0:
            self._worker = _Worker(self.templates, o.dkim, o.state_dir)
            return ThreadPoolExecutor(max_workers=1, thread_name_prefix="mail-render")
        return ProcessPoolExecutor(max_workers=o.render_processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_process, initargs=(o.templates_dir, o.dkim, o.state_dir))

    async def start(self) -> None:
        """Start the workers now rather than at the first reply (a spawn takes a moment)."""
        self._executor = self._start()
        if isinstance(self._executor, ProcessPoolExecutor):
            await asyncio.wrap_future(self._executor.submit(_ready))

    def submit(self, spec_json: str) -> asyncio.Future:
        try:
            return self._submit(spec_json)
        except BrokenProcessPool:  # a worker died since the last reply: start afresh
            self.close()
            return self._submit(spec_json)

    def _submit(self, spec_json: str) -> asyncio.Future:
        if self._executor is None:
            self._executor = self._start()
        if self._worker is not None:
            future = self._executor.submit(self._worker.build, spec_json)
        else:
            future = self._executor.submit(_build_in_process, spec_json)
        return asyncio.wrap_future(future)

    async def result(self, future: asyncio.Future) -> tuple[ReplySpec, bytes]:
        try:
            return await future
        except BrokenProcessPool:
            self.close()
            raise RendererCrashed("a render worker process died") from None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
