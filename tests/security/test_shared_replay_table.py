"""Attack: the workers' shared seed-replay table, corrupted or opened by someone else.

Each worker attaches to the table (a memfd) when it starts. A header whose bucket count
does not fit the file (a worker's bug, or a stray write through /proc/<pid>/fd) used to be
accepted: every later replay check then read past the mapping, so every valid client
made the worker raise out of ``data_received`` (one traceback per connection, and a
close unlike a failed probe's). Now attaching refuses such a table, so the worker stops
at start and the supervisor restarts it with back-off while the others serve. The table
is also readable and writable by its owner only.
"""

from __future__ import annotations

import os
import stat
import struct

import pytest

from onehop.server.sharedhistory import HEADER, SharedSeedHistory

BUCKET_COUNT_OFFSET = HEADER.size - struct.calcsize("Q")


@pytest.mark.parametrize("buckets", [5, 1 << 40, (1 << 64) - 1])
def test_a_header_naming_more_buckets_than_the_file_holds_is_refused(buckets):
    table = SharedSeedHistory.create(buckets=4)
    try:
        os.pwrite(table.fd, struct.pack("Q", buckets), BUCKET_COUNT_OFFSET)
        fd = os.dup(table.fd)
        with pytest.raises(ValueError):
            SharedSeedHistory(fd)
        os.close(fd)
    finally:
        table.close()


def test_slots_full_of_garbage_never_raise():
    table = SharedSeedHistory.create(buckets=4)
    try:
        size = os.fstat(table.fd).st_size
        os.pwrite(table.fd, os.urandom(size - HEADER.size), HEADER.size)
        seed = os.urandom(16)
        assert table.add_new(seed, 1_000_000.0) is True
        assert table.add_new(seed, 1_000_001.0) is False
    finally:
        table.close()


def test_the_table_is_its_owners_alone():
    table = SharedSeedHistory.create(buckets=4)
    try:
        assert stat.S_IMODE(os.fstat(table.fd).st_mode) == 0o600
    finally:
        table.close()
