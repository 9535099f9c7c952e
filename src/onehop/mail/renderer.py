"""Rendering and DKIM-signing replies away from the event loop.

Both are CPU-bound Python that holds the GIL in long stretches (dkimpy canonicalizes the
body with regular expressions and signs with pure-Python RSA: tens of milliseconds for a
reply carrying a build). In a thread they would stall the event loop that answers the
SMTP dialogue, so by default they run in worker processes (``render_processes``, the
project's one process pool, ``onehop.procpool``: fresh interpreters, never forks of the
responder, which has threads); 0 keeps them in one thread of the responder (tests, tiny
deployments).

A worker reads the attachment from the state directory's blobs (by sha256) and keeps the
base64 of the last builds it used, so a build is encoded once per worker, not per reply.
"""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import OnehopError
from ..procpool import ProcessPool, WorkerDied
from . import dkimtools
from .blobs import Blobs
from .dkimkey import DkimKey
from .options import RunOptions
from .render import ATTACHMENT, EncodedAttachment, ReplySpec, encode_attachment, render
from .templates import TemplateSet, load_templates

_CACHED_BUILDS = 2


class RendererCrashed(OnehopError):
    """A render worker process died; the pool starts another and the reply stays queued."""


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
    _process_worker = _Worker(load_templates(templates_dir), dkim, state_dir)


def _build_in_process(spec_json: str) -> tuple[ReplySpec, bytes]:
    assert _process_worker is not None
    return _process_worker.build(spec_json)


class Renderer:
    """``await renderer.build(spec_json)`` -> (spec, message bytes, signed if configured)."""

    def __init__(self, options: RunOptions, templates: TemplateSet) -> None:
        self.options = options
        self.templates = templates
        self._pool: ProcessPool | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._worker: _Worker | None = None

    def _start(self) -> None:
        o = self.options
        if o.render_processes <= 0:
            self._worker = _Worker(self.templates, o.dkim, o.state_dir)
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mail-render")
        else:
            self._pool = ProcessPool(o.render_processes, _init_process, (o.templates_dir, o.dkim, o.state_dir))

    async def start(self) -> None:
        """Start the workers now rather than at the first reply (a new interpreter takes a moment)."""
        self._start()
        if self._pool is not None:
            await self._pool.start()

    @property
    def worker_pids(self) -> list[int]:
        return self._pool.pids if self._pool is not None else []

    def submit(self, spec_json: str) -> asyncio.Future:
        if self._pool is None and self._thread is None:
            self._start()
        if self._thread is not None:
            assert self._worker is not None
            return asyncio.wrap_future(self._thread.submit(self._worker.build, spec_json))
        assert self._pool is not None
        return asyncio.ensure_future(self._pool.call(_build_in_process, spec_json))

    async def result(self, future: asyncio.Future) -> tuple[ReplySpec, bytes]:
        try:
            return await future
        except WorkerDied:  # the pool starts another worker at the next reply
            raise RendererCrashed("a render worker process died") from None

    async def close(self) -> None:
        if self._thread is not None:
            await asyncio.to_thread(self._thread.shutdown, wait=True, cancel_futures=True)
            self._thread = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
