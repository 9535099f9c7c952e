"""A bytearray handed over with a write: its writer never changes it afterwards.

asyncio lets a caller reuse a buffer once ``write`` returns, so a transport that keeps
data for later (the obfuscation layer gathers a loop turn's writes into one send) must
copy anything mutable. A writer that builds a packet batch into a fresh buffer and lets
go of it marks the buffer as an ``OwnedBuffer``: it is kept as it is, without that copy.
"""

from __future__ import annotations


class OwnedBuffer(bytearray):
    """A bytearray nobody writes to once it has been passed to ``write``."""

    __slots__ = ()
