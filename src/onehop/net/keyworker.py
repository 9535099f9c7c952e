"""A key-derivation worker process: ``python -m onehop.net.keyworker``.

Reads requests on stdin and writes answers on stdout until stdin closes, which also
happens when its server dies (even by SIGKILL), so a worker never outlives its server.
Request: 8-byte id, 16-byte seed, 2-byte keyword length, keyword. Answer: 8-byte id,
16-byte client-to-server key, 16-byte server-to-client key.
"""

from __future__ import annotations

import struct
import sys

from ..core.ossh.cipher import derive_key
from ..core.ossh.constants import CLIENT_TO_SERVER_LABEL, SERVER_TO_CLIENT_LABEL

REQUEST_HEAD = struct.Struct(">8s16sH")
ANSWER_SIZE = 8 + 16 + 16


def serve(stdin, stdout) -> None:
    while True:
        head = stdin.read(REQUEST_HEAD.size)
        if len(head) < REQUEST_HEAD.size:
            return
        request_id, seed, length = REQUEST_HEAD.unpack(head)
        keyword = stdin.read(length)
        if len(keyword) < length:
            return
        stdout.write(request_id + derive_key(seed, keyword, CLIENT_TO_SERVER_LABEL)
                     + derive_key(seed, keyword, SERVER_TO_CLIENT_LABEL))
        stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
