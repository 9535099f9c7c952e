"""Running scenarios end to end: pick a topology, run each scenario in a fresh one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from collections.abc import AsyncIterator, Iterable

from ..core.api.protocols import TunnelProtocol as P
from ..errors import ConfigError, ConfigProblem
from .capture import ClassifiedFlow
from .flows import NoCensor
from .report import Observation
from .runner import Lab, LabSettings, Row, make_workdir, remove_workdir, run_rows, run_rows_detailed
from .scenarios import SCENARIOS, SPLIT_DELAY
from .topology import LabError, RelayTopology, Topology

log = logging.getLogger(__name__)

MODES = ("auto", "netns", "relay")
#: What nDPI must call each protocol's flows (master protocol).
EXPECTED_NDPI = {"SSH": "SSH", "OSSH": "Unknown", "OSSH-PREFIX": "HTTP", "OSSH-PREFIX+split": "HTTP"}


def resolve_mode(mode: str) -> str:
    """``auto`` is ``netns`` when running as root with working namespaces, else ``relay``."""
    from .netns import netns_available
    if mode not in MODES:
        raise ConfigError([ConfigProblem("--mode", f"choose from {', '.join(MODES)}")])
    if mode == "relay":
        return mode
    why_not = netns_available()
    if why_not is None:
        return "netns"
    if mode == "netns":
        raise LabError(f"network namespaces are not usable here: {why_not}")
    log.info("using the loopback relay: %s", why_not)
    return "relay"


def make_topology(mode: str) -> Topology:
    if mode == "netns":
        from .netns import NetnsTopology
        return NetnsTopology()
    if mode == "relay":
        return RelayTopology()
    raise LabError(f"unknown topology mode {mode!r}")


def scenario_names(name: str) -> list[str]:
    if name == "all":
        return list(SCENARIOS)
    if name not in SCENARIOS:
        raise ConfigError([ConfigProblem("SCENARIO", f"choose from all, {', '.join(SCENARIOS)}")])
    return [name]


@contextlib.asynccontextmanager
async def running_lab(mode: str, settings: LabSettings | None = None) -> AsyncIterator[Lab]:
    """A started Lab in a fresh topology of ``mode`` (``netns`` or ``relay``) and work
    directory; all three are gone afterwards."""
    workdir = make_workdir()
    try:
        async with make_topology(mode) as topology:
            lab = Lab(topology, settings or LabSettings(), workdir)
            try:
                await lab.start()
                yield lab
            finally:
                await lab.close()
    finally:
        remove_workdir(workdir)


async def run_scenario(name: str, mode: str, settings: LabSettings | None = None) -> list[Observation]:
    """Run one scenario in a fresh topology of ``mode`` (``netns`` or ``relay``)."""
    scenario = SCENARIOS[name]
    async with running_lab(mode, settings) as lab:
        rows = await scenario.build(lab)
        return await run_rows(lab, name, rows)


async def run_scenarios(names: Iterable[str], mode: str,
                        settings: LabSettings | None = None) -> list[Observation]:
    observations: list[Observation] = []
    for name in names:
        observations += await run_scenario(name, mode, settings)
    return observations


@dataclass(frozen=True)
class Classification:
    protocol: str                      # the row's protocol label
    observation: Observation
    flows: tuple[ClassifiedFlow, ...]  # nDPI's verdict on each of the row's TCP flows

    @property
    def applications(self) -> list[str]:
        return sorted({f.application for f in self.flows})


async def classify_traffic(mode: str, pcap: str, settings: LabSettings | None = None) -> list[Classification]:
    """Run SSH, OSSH and OSSH with the HTTP prefix (unsplit and split) through an open
    network while tcpdump captures, then classify every flow with nDPI."""
    from .capture import Capture, classify
    async with running_lab(mode, settings) as lab:
        server = await lab.add_server()
        entries = (server.entry,)
        rows = [Row("none", p, "pass", NoCensor, entries) for p in (P.SSH, P.OSSH, P.OSSH_PREFIX)]
        rows.append(Row("none", P.OSSH_PREFIX, "pass", NoCensor, entries, split_delay=SPLIT_DELAY))
        ports = [p for p in (server.entry.ssh_port, server.entry.ssh_obfuscated_port) if p]
        async with Capture(lab.topology.capture_spec(ports), pcap):
            results = await run_rows_detailed(lab, "ndpi", rows)
    flows = await asyncio.to_thread(classify, pcap)
    classified = []
    for observation, run in results:
        client_ports = {flow.client.port for flow in run.tracker.flows()}
        classified.append(Classification(observation.protocol, observation,
                                         tuple(f for f in flows if f.client_port in client_ports)))
    return classified
