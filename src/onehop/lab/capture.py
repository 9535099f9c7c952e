"""Real DPI on the lab's traffic: capture with tcpdump, classify with nDPI (via nfstream).

The capture runs where the client's packets are still untouched by the censor: on the
client's veth in the client namespace, or on loopback filtered to the middlebox's
port. nfstream (which bundles nDPI) turns the pcap into bidirectional flows, each with
nDPI's application name (``SSH``, ``HTTP``, ``Unknown``, or ``HTTP.<service>`` when
a Host header matches a known service).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from dataclasses import dataclass

from .topology import CaptureSpec, LabError

READY_TIMEOUT = 10.0


@dataclass(frozen=True)
class ClassifiedFlow:
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    application: str           # nDPI application name, e.g. "SSH", "HTTP", "Unknown"
    guessed: bool              # nDPI guessed (by port) rather than detected it
    packets: int
    bytes: int

    @property
    def master(self) -> str:
        """The protocol without the service (``HTTP.Google`` -> ``HTTP``)."""
        return self.application.split(".")[0]


def capture_available() -> str | None:
    """None when tcpdump and nfstream can be used here, else why not."""
    if os.geteuid() != 0:
        return "capturing needs root"
    if shutil.which("tcpdump") is None:
        return "tcpdump is not installed"
    try:
        import nfstream  # noqa: F401
    except ImportError as exc:
        from ..extras import install_hint
        return f"nfstream is not installed ({exc}); it {install_hint('nfstream')}"
    return None


class Capture:
    """``async with Capture(spec, path):`` -- tcpdump writes ``path`` meanwhile."""

    def __init__(self, spec: CaptureSpec, path: str) -> None:
        self.spec = spec
        self.path = path
        self._process: asyncio.subprocess.Process | None = None

    def argv(self) -> list[str]:
        argv = ["tcpdump", "-i", self.spec.interface, "-n", "-s", "0", "-U", "-w", self.path,
                self.spec.bpf_filter]
        return (["ip", "netns", "exec", self.spec.netns] if self.spec.netns else []) + argv

    async def __aenter__(self) -> Capture:
        self._process = await asyncio.create_subprocess_exec(
            *self.argv(), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert self._process.stderr is not None
        try:
            while True:
                line = await asyncio.wait_for(self._process.stderr.readline(), READY_TIMEOUT)
                if not line:
                    raise LabError(f"tcpdump exited: {' '.join(self.argv())}")
                if b"listening on" in line:
                    break
        except (TimeoutError, LabError):
            await self._stop()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await asyncio.sleep(0.3)  # let the last packets reach the file
        await self._stop()

    async def _stop(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()


def classify(pcap: str) -> list[ClassifiedFlow]:
    """nDPI's verdict for every TCP flow in ``pcap`` (blocking: run it in a thread)."""
    from nfstream import NFStreamer
    flows = []
    for flow in NFStreamer(source=pcap, statistical_analysis=False, n_dissections=255):
        if flow.protocol != 6:
            continue
        flows.append(ClassifiedFlow(flow.src_ip, flow.src_port, flow.dst_ip, flow.dst_port,
                                    flow.application_name, bool(getattr(flow, "application_is_guessed", 0)),
                                    flow.bidirectional_packets, flow.bidirectional_bytes))
    return flows
