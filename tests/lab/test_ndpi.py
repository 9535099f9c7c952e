"""A real DPI engine on the lab's traffic: nDPI (bundled in nfstream) must label plain
SSH as SSH, OSSH as Unknown and OSSH behind the HTTP prefix as HTTP."""

from __future__ import annotations

import os

import pytest

from onehop.lab.capture import capture_available
from onehop.lab.session import classify_traffic

from .conftest import ON_CI

pytestmark = pytest.mark.e2e


@pytest.fixture
def can_capture():
    why_not = capture_available()
    if why_not is not None:
        if ON_CI and os.geteuid() == 0:
            pytest.fail(f"CI runs as root but cannot capture: {why_not}")
        pytest.skip(why_not)


async def test_ndpi_labels(mode, tmp_path, can_capture):
    results = {c.protocol: c for c in await classify_traffic(mode, str(tmp_path / "lab.pcap"))}
    assert set(results) == {"SSH", "OSSH", "OSSH-PREFIX", "OSSH-PREFIX+split"}
    for protocol, result in results.items():
        assert result.observation.observed == "pass", protocol
        assert result.flows, f"{protocol}: no flow in the capture"
    assert {f.application for f in results["SSH"].flows} == {"SSH"}
    assert {f.application for f in results["OSSH"].flows} == {"Unknown"}
    for protocol in ("OSSH-PREFIX", "OSSH-PREFIX+split"):
        # HTTP, or HTTP.<service> should the random Host name match a known service
        assert {f.master for f in results[protocol].flows} == {"HTTP"}, results[protocol].applications
    assert not any(f.guessed for r in results.values() for f in r.flows)
