"""A minimal MaxMind DB (.mmdb) writer for tests: enough for City, ISP and ASN databases.

Format (MaxMind DB spec 2.0): a binary search tree over the address bits, 16 zero bytes,
a data section, then ``\\xab\\xcd\\xefMaxMind.com`` and a metadata map. Records are
32 bits; a record below ``node_count`` is a node, equal to it means "no data", above it
points into the data section at ``record - node_count - 16``. IPv4 networks in an IPv6
tree sit under ``::/96``, where readers look them up. Networks must not overlap.
"""

from __future__ import annotations

import ipaddress
import struct

METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"


# -- data section encoding -----------------------------------------------------------

def _control(type_number: int, size: int) -> bytes:
    if size < 29:
        head, extra = size, b""
    elif size < 29 + 256:
        head, extra = 29, bytes([size - 29])
    elif size < 285 + 65536:
        head, extra = 30, struct.pack(">H", size - 285)
    else:
        head, extra = 31, struct.pack(">I", size - 65821)[1:]
    if type_number <= 7:
        return bytes([type_number << 5 | head]) + extra
    return bytes([head, type_number - 7]) + extra


def _uint(type_number: int, value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return _control(type_number, len(raw)) + raw


def encode(value) -> bytes:
    """One value in the data section's encoding."""
    if isinstance(value, bool):
        return _control(14, int(value))
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return _control(2, len(raw)) + raw
    if isinstance(value, bytes):
        return _control(4, len(value)) + value
    if isinstance(value, float):
        return _control(3, 8) + struct.pack(">d", value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative integers are not needed here")
        return _uint(6 if value < 1 << 32 else 9, value)
    if isinstance(value, dict):
        return _control(7, len(value)) + b"".join(encode(str(k)) + encode(v) for k, v in value.items())
    if isinstance(value, list):
        return _control(11, len(value)) + b"".join(encode(v) for v in value)
    raise TypeError(type(value).__name__)


def _uint16(value: int) -> bytes:
    return _uint(5, value)


# -- the search tree -------------------------------------------------------------------

class _Node:
    __slots__ = ("children",)

    def __init__(self) -> None:
        self.children: list = [None, None]  # None, a _Node, or ("data", offset)


def _bits(network: ipaddress.IPv4Network | ipaddress.IPv6Network, ip_version: int) -> list[int]:
    if ip_version == 6 and network.version == 4:
        address, prefix = int(network.network_address), network.prefixlen + 96
        total = 128
    else:
        address, prefix = int(network.network_address), network.prefixlen
        total = 32 if network.version == 4 else 128
    return [(address >> (total - 1 - i)) & 1 for i in range(prefix)]


def _insert(root: _Node, bits: list[int], leaf) -> None:
    node = root
    for bit in bits[:-1]:
        child = node.children[bit]
        if child is None:
            child = node.children[bit] = _Node()
        elif not isinstance(child, _Node):
            raise ValueError("overlapping networks are not supported")
        node = child
    if node.children[bits[-1]] is not None:
        raise ValueError("overlapping networks are not supported")
    node.children[bits[-1]] = leaf


def _number(root: _Node) -> list[_Node]:
    order, todo = [], [root]
    while todo:
        node = todo.pop(0)
        order.append(node)
        todo.extend(c for c in node.children if isinstance(c, _Node))
    return order


def write_mmdb(path, records: dict[str, dict], *, database_type: str = "GeoLite2-City",
               ip_version: int = 6, build_epoch: int = 1_700_000_000) -> None:
    """Write ``records`` (CIDR text -> data map) as a MaxMind DB file at ``path``."""
    data = bytearray()
    root = _Node()
    for cidr, record in records.items():
        network = ipaddress.ip_network(cidr)
        if network.version == 6 and ip_version == 4:
            raise ValueError("IPv6 network in an IPv4 database")
        offset = len(data)
        data += encode(record)
        _insert(root, _bits(network, ip_version), ("data", offset))
    nodes = _number(root)
    index = {id(node): i for i, node in enumerate(nodes)}
    node_count = len(nodes)

    def record(child) -> int:
        if child is None:
            return node_count
        if isinstance(child, _Node):
            return index[id(child)]
        return node_count + 16 + child[1]

    tree = b"".join(struct.pack(">II", record(n.children[0]), record(n.children[1])) for n in nodes)
    metadata = b"".join([
        _control(7, 9),
        encode("node_count"), _uint(6, node_count),
        encode("record_size"), _uint16(32),
        encode("ip_version"), _uint16(ip_version),
        encode("database_type"), encode(database_type),
        encode("languages"), encode(["en"]),
        encode("binary_format_major_version"), _uint16(2),
        encode("binary_format_minor_version"), _uint16(0),
        encode("build_epoch"), _uint(9, build_epoch),
        encode("description"), encode({"en": "onehop test database"}),
    ])
    with open(path, "wb") as f:
        f.write(tree + bytes(16) + bytes(data) + METADATA_MARKER + metadata)


def city_record(country: str, city: str) -> dict:
    return {"country": {"iso_code": country}, "city": {"names": {"en": city}}}


def isp_record(isp: str, asn: int, aso: str) -> dict:
    return {"isp": isp, "autonomous_system_number": asn, "autonomous_system_organization": aso}
