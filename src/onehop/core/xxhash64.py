"""Pure-Python xxHash64 (XXH64), the hash behind Psiphon's consistent-hashing discovery.

Psiphon hashes ring members, partition ids and client IPs with cespare/xxhash, i.e.
XXH64 with seed 0. Inputs here are short (IP strings, 8 and 16 byte keys), so this
straightforward implementation of the published algorithm is fast enough; it is not
meant for bulk data.
"""

from __future__ import annotations

import struct

_P1 = 0x9E3779B185EBCA87
_P2 = 0xC2B2AE3D27D4EB4F
_P3 = 0x165667B19E3779F9
_P4 = 0x85EBCA77C2B2AE63
_P5 = 0x27D4EB2F165667C5
_MASK = 0xFFFFFFFFFFFFFFFF


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _MASK


def _round(acc: int, lane: int) -> int:
    acc = (acc + lane * _P2) & _MASK
    return (_rotl(acc, 31) * _P1) & _MASK


def _merge(acc: int, val: int) -> int:
    acc ^= _round(0, val)
    return (acc * _P1 + _P4) & _MASK


def _stripes(data: bytes, seed: int) -> tuple[int, int]:
    """Consume all full 32-byte stripes; return (accumulator, bytes consumed)."""
    v1 = (seed + _P1 + _P2) & _MASK
    v2 = (seed + _P2) & _MASK
    v3 = seed
    v4 = (seed - _P1) & _MASK
    end = len(data) - len(data) % 32
    for off in range(0, end, 32):
        a, b, c, d = struct.unpack_from("<4Q", data, off)
        v1, v2, v3, v4 = _round(v1, a), _round(v2, b), _round(v3, c), _round(v4, d)
    acc = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _MASK
    for v in (v1, v2, v3, v4):
        acc = _merge(acc, v)
    return acc, end


def xxhash64(data: bytes, seed: int = 0) -> int:
    """XXH64 of ``data`` as an unsigned 64-bit integer."""
    n = len(data)
    if n >= 32:
        acc, pos = _stripes(data, seed)
    else:
        acc, pos = (seed + _P5) & _MASK, 0
    acc = (acc + n) & _MASK
    while pos + 8 <= n:
        (lane,) = struct.unpack_from("<Q", data, pos)
        acc = (_rotl(acc ^ _round(0, lane), 27) * _P1 + _P4) & _MASK
        pos += 8
    if pos + 4 <= n:
        (word,) = struct.unpack_from("<I", data, pos)
        acc = (_rotl(acc ^ (word * _P1 & _MASK), 23) * _P2 + _P3) & _MASK
        pos += 4
    for byte in data[pos:]:
        acc = (_rotl(acc ^ (byte * _P5 & _MASK), 11) * _P1) & _MASK
    acc ^= acc >> 33
    acc = (acc * _P2) & _MASK
    acc ^= acc >> 29
    acc = (acc * _P3) & _MASK
    return acc ^ (acc >> 32)
