"""Programs that know nothing of proxies, run inside the test namespaces.

``python3 peers.py world IP [IP6]``: in the "world" namespace, a web server on port 80
whose page is the address it saw the connection come from (also printed, one per
line, ``seen <ip>``), a DNS responder on UDP 53 (one A record, ``ANSWER_IP``) and a UDP
echo on port 7. ``python3 peers.py fetch IP`` / ``dns IP`` / ``echo IP``: in the
"device" (or LAN) namespace, one plain request; prints the answer, exits 1 without one.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading

ANSWER_IP = "192.0.2.33"
TIMEOUT = 8.0


def _web(family: int, ip: str) -> None:
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((ip, 80))
    srv.listen(64)
    while True:
        conn, peer = srv.accept()
        print(f"seen {peer[0]}", flush=True)
        try:
            conn.settimeout(5)
            conn.recv(4096)
            body = peer[0].encode()
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass
        conn.close()


def dns_answer(query: bytes) -> bytes:
    (query_id,) = struct.unpack(">H", query[:2])
    record = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(ANSWER_IP)
    return struct.pack(">HHHHHH", query_id, 0x8180, 1, 1, 0, 0) + query[12:] + record


def _udp(family: int, ip: str, port: int, answer) -> None:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((ip, port))
    while True:
        data, peer = sock.recvfrom(65535)
        print(f"udp {port} from {peer[0]}", flush=True)
        sock.sendto(answer(data), peer)


def world(addresses: list[str]) -> None:
    for ip in addresses:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        for target, args in ((_web, (family, ip)), (_udp, (family, ip, 53, dns_answer)),
                             (_udp, (family, ip, 7, lambda d: d))):
            threading.Thread(target=target, args=args, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


def dns_query(name: str, query_id: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x01\x00\x01"


def _family(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def fetch(ip: str) -> str:
    with socket.create_connection((ip, 80), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nHost: world\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode()


def udp(ip: str, port: int, payload: bytes) -> bytes:
    sock = socket.socket(_family(ip), socket.SOCK_DGRAM)
    sock.settimeout(TIMEOUT / 2)
    try:
        for _ in range(3):  # retries, as a resolver would (the first may wait for udpgw on a busy machine)
            sock.sendto(payload, (ip, port))
            try:
                return sock.recv(65535)
            except TimeoutError:
                continue
        raise OSError("no answer")
    finally:
        sock.close()


def main(argv: list[str]) -> int:
    command, *rest = argv
    if command == "world":
        world(rest)
        return 0
    try:
        if command == "fetch":
            print(fetch(rest[0]))
        elif command == "dns":
            answer = udp(rest[0], 53, dns_query("example.test", 0x4242))
            print(socket.inet_ntoa(answer[-4:]))
        elif command == "echo":
            print(udp(rest[0], 7, b"echo-payload").decode())
    except OSError as exc:
        print(f"failed: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
