"""Fixtures for the live interoperability tests against Psiphon's own binaries."""

from __future__ import annotations

import os

import pytest

from .harness import Processes, WebServer, require_psiphon

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True)
def _psiphon_binaries():
    require_psiphon()


@pytest.fixture
def procs():
    """Start processes with ``procs.start``/the server and client classes; all stop at teardown."""
    processes = Processes()
    yield processes
    processes.stop_all()


@pytest.fixture
def page():
    """A web server with one random page: (server, path, body)."""
    body = os.urandom(20000).hex().encode()
    web = WebServer({"/page.txt": body})
    yield web, "/page.txt", body
    web.close()
