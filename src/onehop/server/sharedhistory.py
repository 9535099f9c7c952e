"""The seed-replay history of a multi-process server, in memory its workers share.

A replayed OSSH seed must be refused whichever worker process accepts it, so the
workers of one server record seeds in one table: an anonymous shared-memory file
(memfd) that the supervisor creates and hands to each worker as a descriptor. The
check stays synchronous, as the OSSH core expects of ``replay_check``, so a replay is
refused exactly as in a single process: no byte back, the same close.

Layout: a header (magic, a random hashing key) and buckets of ``BUCKET_SLOTS`` slots,
each slot a 16-byte seed and the time it was first seen (0.0: empty). A seed lives in
the bucket its keyed hash names (keyed, so chosen seeds cannot crowd one bucket); a
full bucket forgets its oldest entry, so memory is fixed while entries last the TTL
(24 hours) until the table nears capacity. A POSIX record lock on the bucket's bytes
makes check-and-record atomic across processes. Seeds only: no address is stored.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import tempfile

from ..core.ossh.constants import SEED_LENGTH
from ..core.ossh.history import DEFAULT_TTL_SECONDS

MAGIC = b"onehopSH"
HEADER = struct.Struct("8s16sQ")  # magic, hashing key, bucket count
SLOT = struct.Struct(f"{SEED_LENGTH}sd")
BUCKET_SLOTS = 8
BUCKET_SIZE = SLOT.size * BUCKET_SLOTS
#: 2**17 buckets of 8 slots: about a million seeds (as SeedHistory), 24 MiB, touched as used
DEFAULT_BUCKETS = 1 << 17


def _anonymous_file() -> int:
    if hasattr(os, "memfd_create"):
        return os.memfd_create("onehop-seed-history", os.MFD_CLOEXEC)
    with tempfile.TemporaryFile() as f:  # unlinked at once; the descriptor keeps it
        return os.dup(f.fileno())


class SharedSeedHistory:
    """``add_new(seed, now)`` as :class:`~onehop.core.ossh.SeedHistory`, over shared memory."""

    def __init__(self, fd: int, ttl_seconds: float = DEFAULT_TTL_SECONDS) -> None:
        """Attach to the table in ``fd`` (made by :meth:`create`; this object owns ``fd``)."""
        self.fd = fd
        self.ttl_seconds = ttl_seconds
        size = os.fstat(fd).st_size
        if size < HEADER.size:
            raise ValueError("not a shared seed history")
        self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        magic, self._key, self.buckets = HEADER.unpack_from(self._map, 0)
        # a bucket count the file cannot hold (a corrupt header) would make every check
        # read past the mapping: refuse it here, where the worker can still just stop
        if magic != MAGIC or not 1 <= self.buckets <= (size - HEADER.size) // BUCKET_SIZE:
            self._map.close()
            raise ValueError("not a shared seed history")

    @classmethod
    def create(cls, buckets: int = DEFAULT_BUCKETS, ttl_seconds: float = DEFAULT_TTL_SECONDS) -> SharedSeedHistory:
        fd = _anonymous_file()
        os.fchmod(fd, 0o600)  # a memfd starts as 0777; only its owner needs it
        os.ftruncate(fd, HEADER.size + buckets * BUCKET_SIZE)
        os.pwrite(fd, HEADER.pack(MAGIC, os.urandom(16), buckets), 0)
        return cls(fd, ttl_seconds)

    @property
    def capacity(self) -> int:
        return self.buckets * BUCKET_SLOTS

    def _bucket_offset(self, seed: bytes) -> int:
        digest = hashlib.blake2b(seed, digest_size=8, key=self._key).digest()
        return HEADER.size + int.from_bytes(digest, "big") % self.buckets * BUCKET_SIZE

    def add_new(self, seed: bytes, now: float) -> bool:
        """Record ``seed``; True if no worker saw it within the TTL, False for a replay."""
        seed = bytes(seed)
        if len(seed) != SEED_LENGTH:
            raise ValueError(f"a seed is {SEED_LENGTH} bytes")
        offset = self._bucket_offset(seed)
        cutoff = now - self.ttl_seconds
        fcntl.lockf(self.fd, fcntl.LOCK_EX, BUCKET_SIZE, offset)
        try:
            free, oldest, oldest_time = None, offset, float("inf")
            for slot in range(offset, offset + BUCKET_SIZE, SLOT.size):
                stored, first_seen = SLOT.unpack_from(self._map, slot)
                if first_seen == 0.0 or first_seen <= cutoff:
                    if free is None:
                        free = slot
                    continue
                if stored == seed:
                    return False
                if first_seen < oldest_time:
                    oldest, oldest_time = slot, first_seen
            SLOT.pack_into(self._map, free if free is not None else oldest, seed, now)
            return True
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, BUCKET_SIZE, offset)

    def __len__(self) -> int:
        """Slots in use (expired ones included until reused)."""
        return sum(1 for slot in range(HEADER.size, len(self._map), SLOT.size)
                   if SLOT.unpack_from(self._map, slot)[1] != 0.0)

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)
