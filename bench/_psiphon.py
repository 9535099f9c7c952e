"""Psiphon's own binaries in the benchmarks: psiphond, psiphon-tunnel-core, and which SSH
algorithms an OSSH tunnel negotiated.

The binaries are test fixtures (``../shared/psiphon``, see its README): run them, write their
data in the benchmark's temp dir, never copy or ship them. ``ONEHOP_PSIPHON_DIR`` points
elsewhere.

Psiphon's client draws a random KEX, cipher and MAC for every tunnel and says which in no
notice, so ``HandshakeSniffer`` reads them off the wire: an AF_PACKET socket on ``lo``
(needs CAP_NET_RAW; without it the cipher is reported as unknown) captures the first
bytes of the tunnel's TCP connection while it is set up, and ``negotiated`` removes the
OSSH obfuscation (RC4 keyed from the seed and the server entry's obfuscation keyword),
parses both SSH_MSG_KEXINIT packets and applies RFC 4253's rule: the first client
algorithm the server also offers. The capture stops once the tunnel is up, so it costs
nothing during the measured transfers.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from _common import BenchError, NoticeReader, Processes, free_port, port_accepts, wait_until

PSIPHON_DIR = Path(os.environ.get("ONEHOP_PSIPHON_DIR",
                                  Path(__file__).resolve().parents[1].parent / "shared" / "psiphon"))
PSIPHOND = PSIPHON_DIR / "psiphond"
PSIPHON_CLIENT = PSIPHON_DIR / "psiphon-tunnel-core"
CHANNEL = SPONSOR = "FFFFFFFFFFFFFFFF"


def missing_binaries() -> list[str]:
    return [str(p) for p in (PSIPHOND, PSIPHON_CLIENT) if not os.access(p, os.X_OK)]


def entry_json(entry_hex: str) -> dict:
    """The JSON part of a hex-encoded server entry (Psiphon's encoding)."""
    text = bytes.fromhex(entry_hex.strip()).decode("utf-8")
    return json.loads(text[text.index("{"):])


# -- processes -------------------------------------------------------------------------

@dataclass
class Psiphond:
    proc: object
    port: int
    entry_file: str


def start_psiphond(procs: Processes, root: str, ip: str = "127.0.0.1") -> Psiphond:
    """``psiphond generate`` (OSSH only) + ``run`` in ROOT/psiphond, AllowBogons on."""
    import subprocess

    d = os.path.join(root, "psiphond")
    os.makedirs(d)
    port = free_port(ip)
    gen = subprocess.run([str(PSIPHOND), "-ipaddress", ip, "-protocol", f"OSSH:{port}", "generate"],
                         cwd=d, capture_output=True, text=True, timeout=120)
    if gen.returncode != 0:
        raise BenchError(f"psiphond generate failed: {gen.stderr.strip() or gen.stdout.strip()}")
    config_path = os.path.join(d, "psiphond.config")
    with open(config_path) as f:
        config = json.load(f)
    config["AllowBogons"] = True  # the sink is on loopback
    config["LogFilename"] = os.path.join(d, "psiphond.log")
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2)
    proc = procs.start("psiphond", [str(PSIPHOND), "-config", config_path, "run"], cwd=d)
    wait_until(lambda: port_accepts(ip, port), 30, "psiphond to listen",
               lambda: procs.check_alive("psiphond", proc))
    return Psiphond(proc, port, os.path.join(d, "server-entry.dat"))


def start_psiphon_client(procs: Processes, root: str, name: str, entry_file: str,
                         timeout: float = 60.0) -> tuple[int, object, NoticeReader]:
    """Psiphon's console client, OSSH only, to the one server in ``entry_file``; waits for
    ``Tunnels`` count 1 and returns (SOCKS port, process, notices)."""
    d = os.path.join(root, name)
    os.makedirs(os.path.join(d, "data"))
    with open(entry_file, encoding="ascii") as f:
        entry = f.read().strip()
    config = {
        "PropagationChannelId": CHANNEL, "SponsorId": SPONSOR, "ClientPlatform": "Linux_bench",
        "ClientVersion": "1", "DataRootDirectory": os.path.join(d, "data"),
        "LocalSocksProxyPort": 0, "LocalHttpProxyPort": 0,
        "DisableRemoteServerListFetcher": True, "DisableTactics": True,
        "EmitDiagnosticNotices": True, "LimitTunnelProtocols": ["OSSH"],
        "TargetServerEntry": entry,
    }
    config_path = os.path.join(d, "client.json")
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2)
    # notices are JSON lines on stderr; the log file gets stdout (nothing)
    proc = procs.start(name, [str(PSIPHON_CLIENT), "-config", config_path], stdout_pipe=True,
                       stderr_to_stdout=True, cwd=d)
    notices = NoticeReader(proc.stdout, copy_to=os.path.join(procs.log_dir, f"{name}.log"))

    def alive() -> None:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with status {proc.returncode}\n  last notices:\n{notices.last()}")
    try:
        wait_until(lambda: notices.tunnels >= 1 and notices.socks_port, timeout,
                   f"{name}'s tunnel (Tunnels count 1)", alive)
    except BenchError as exc:
        raise BenchError(f"{exc}\n  last notices:\n{notices.last()}") from None
    return int(notices.socks_port), proc, notices


# -- which algorithms the tunnel negotiated ----------------------------------------------

ETH_P_ALL = 0x0003
SEED_LENGTH = 16
MAGIC = 0x0BF5CA7E
MSG_KEXINIT = 20


class HandshakeSniffer:
    """Captures TCP payloads to and from ``port`` on ``lo`` until ``stop()``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.error: str | None = None
        # flows[client_port] = {"c2s": {seq: payload}, "s2c": {seq: payload}}
        self.flows: dict[int, dict[str, dict[int, bytes]]] = {}
        self._stop = threading.Event()
        try:
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            self._sock.bind(("lo", 0))
            self._sock.settimeout(0.1)
        except (OSError, AttributeError) as exc:
            self._sock = None
            self.error = f"no packet capture on lo ({exc}); needs CAP_NET_RAW"
            return
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        total = 0
        while not self._stop.is_set() and total < (4 << 20):
            try:
                frame = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                self.error = str(exc)
                return
            if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            if ip[9] != 6:  # TCP
                continue
            ihl = (ip[0] & 0x0F) * 4
            ip_len = struct.unpack(">H", ip[2:4])[0]
            tcp = ip[ihl:ip_len]
            if len(tcp) < 20:
                continue
            sport, dport, seq = struct.unpack(">HHI", tcp[:8])
            if self.port not in (sport, dport):
                continue
            payload = tcp[(tcp[12] >> 4) * 4:]
            if not payload:
                continue
            direction, client = ("c2s", sport) if dport == self.port else ("s2c", dport)
            flow = self.flows.setdefault(client, {"c2s": {}, "s2c": {}})
            flow[direction].setdefault(seq, bytes(payload))  # lo shows each packet twice
            total += len(payload)

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._thread.join(2.0)
            self._sock.close()

    def streams(self) -> list[tuple[bytes, bytes]]:
        """(client-to-server, server-to-client) bytes of every captured connection, newest last."""
        out = []
        for client in self.flows:
            pair = []
            for direction in ("c2s", "s2c"):
                segs = self.flows[client][direction]
                data, expect = b"", None
                for seq in sorted(segs):  # fine for a handshake: no sequence wrap expected
                    if expect is not None and seq != expect:
                        break  # a gap: what follows cannot be decoded
                    data += segs[seq]
                    expect = seq + len(segs[seq])
                pair.append(data)
            out.append((pair[0], pair[1]))
        return out


def _rc4(key: bytes):
    from cryptography.hazmat.primitives.ciphers import Cipher
    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
    except ImportError:  # older cryptography
        from cryptography.hazmat.primitives.ciphers.algorithms import ARC4
    return Cipher(ARC4(key), mode=None).decryptor()


def _ossh_key(seed: bytes, keyword: bytes, label: bytes) -> bytes:
    digest = hashlib.sha1(seed + keyword + label).digest()
    for _ in range(6000):
        digest = hashlib.sha1(digest).digest()
    return digest[:16]


def _kexinit(plain: bytes) -> list[list[str]]:
    """The ten name-lists of the first KEXINIT after the identification line."""
    pos = plain.find(b"SSH-2.0-")
    if pos < 0:
        raise ValueError("no SSH identification line")
    end = plain.index(b"\n", pos) + 1
    while end + 5 <= len(plain):
        length, padding = struct.unpack(">IB", plain[end:end + 5])
        payload = plain[end + 5:end + 4 + length - padding]
        if len(payload) < length - padding - 1:
            break
        if payload and payload[0] == MSG_KEXINIT:
            lists, p = [], 17
            for _ in range(10):
                (n,) = struct.unpack(">I", payload[p:p + 4])
                lists.append(payload[p + 4:p + 4 + n].decode("ascii").split(",") if n else [])
                p += 4 + n
            return lists
        end += 4 + length
    raise ValueError("no KEXINIT in the captured bytes")


def negotiated(c2s: bytes, s2c: bytes, keyword: str) -> dict[str, str]:
    """Undo OSSH on both directions and apply RFC 4253's algorithm choice."""
    seed = c2s[:SEED_LENGTH]
    kw = keyword.encode()
    up = _rc4(_ossh_key(seed, kw, b"client_to_server")).update(c2s[SEED_LENGTH:])
    magic, padding = struct.unpack(">Ii", up[:8])
    if magic != MAGIC:
        raise ValueError("not OSSH with this keyword (bad magic)")
    client = _kexinit(up[8 + padding:])
    down = _rc4(_ossh_key(seed, kw, b"server_to_client")).update(s2c)
    server = _kexinit(down)

    def pick(i: int) -> str:
        return next((a for a in client[i] if a in server[i]), "none in common")
    cipher, mac = pick(2), pick(4)
    aead = cipher.endswith(("-gcm@openssh.com", "chacha20-poly1305@openssh.com"))
    return {"kex": pick(0), "host_key": pick(1), "cipher": cipher,
            "mac": "(AEAD)" if aead else mac, "server_cipher": pick(3),
            "server_mac": "(AEAD)" if pick(3).endswith(("-gcm@openssh.com", "poly1305@openssh.com")) else pick(5)}


def describe(sniffer: HandshakeSniffer, entry_file: str) -> dict[str, str] | str:
    """The negotiated algorithms of the last decodable captured connection, or why not."""
    sniffer.stop()
    if sniffer.error:
        return sniffer.error
    with open(entry_file, encoding="ascii") as f:
        keyword = entry_json(f.read())["sshObfuscatedKey"]
    last_error = "no connection captured"
    for c2s, s2c in reversed(sniffer.streams()):
        try:
            return negotiated(c2s, s2c, keyword)
        except (ValueError, struct.error, UnicodeDecodeError, IndexError) as exc:
            last_error = f"could not decode the handshake: {exc}"
    return last_error


def fmt_algs(algs: dict[str, str] | str) -> str:
    if isinstance(algs, str):
        return f"unknown ({algs})"
    text = f"{algs['cipher']} {algs['mac']}"
    if (algs["server_cipher"], algs["server_mac"]) != (algs["cipher"], algs["mac"]):
        text += f" up / {algs['server_cipher']} {algs['server_mac']} down"
    return text + f", kex {algs['kex']}"
