"""Security tests: one test (or a few) per attack, each failing before its fix."""

from tests.e2e.conftest import echo_server, make_client, network, notice_log, page  # noqa: F401
from tests.upgrade.conftest import mirror  # noqa: F401
