"""A worker process of ``onehop.procpool``: ``python -m onehop.procworker``.

Reads calls on stdin and writes answers on stdout until stdin closes, which also happens
when its parent dies (even by SIGKILL), so a worker never outlives it. A call is a frame
holding the pickled ``(call_id, function, args)``; its answer a frame holding the pickled
``(call_id, ok, result or exception)``. A frame is a 4-byte big-endian length, then that
many bytes. Functions travel by name, so they must be module-level.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from typing import BinaryIO

LENGTH_BYTES = 4


def _read_frame(stream: BinaryIO) -> bytes | None:
    head = stream.read(LENGTH_BYTES)
    if len(head) < LENGTH_BYTES:
        return None
    length = int.from_bytes(head, "big")
    body = stream.read(length)
    return body if len(body) == length else None


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(LENGTH_BYTES, "big") + body


def serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    while (body := _read_frame(stdin)) is not None:
        call_id, function, args = pickle.loads(body)
        try:
            answer = (call_id, True, function(*args))
        except Exception as exc:  # the caller's to judge
            answer = (call_id, False, exc)
        try:
            data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an unpicklable result or exception
            data = pickle.dumps((call_id, False, RuntimeError(f"worker answer not picklable: {exc!r}")))
        try:
            stdout.write(frame(data))
            stdout.flush()
        except BrokenPipeError:
            # the parent stopped reading (it closed the pool or exited): nothing to answer, and
            # nothing left for the interpreter to flush at exit (Python's documented recipe)
            os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
            return


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    serve(sys.stdin.buffer, sys.stdout.buffer)
