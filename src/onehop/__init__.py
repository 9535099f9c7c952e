"""onehop: a Python implementation of the Psiphon 3 circumvention system.

Package boundaries (enforced by tests/unit/test_import_boundaries.py):

* ``onehop.core``   pure, sans-IO protocol code: bytes and values in, bytes and values
                    out. No asyncio, sockets, clock, logging or os.urandom.
* ``onehop.net``    thin asyncio adapters; the only code that touches sockets.
* ``onehop.tunnel`` the SSH layer shared by client and server (asyncssh over OSSH).
* ``onehop.client`` / ``onehop.server``  the two ends; they never import each other.
* ``onehop.cli``    the ``onehop`` command.
"""

__version__ = "0.1.0"
