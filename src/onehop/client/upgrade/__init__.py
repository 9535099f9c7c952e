"""The client half of upgrades: signed packages checked, downloaded and installed.

``package`` is the format both sides share (Psiphon's authenticated package with the
version and platform signed in, and onehop's signed bsdiff4 deltas; the operator's
``onehop.upgrade.artifacts`` makes them with it). On ClientUpgradeAvailable, ``check``
downloads (``fetch``: resumable, through the tunnel when one is up, else the mirrors
directly or through the upstream proxy), verifies the key digest and the signature
before anything is written in place, then ``install`` replaces the build atomically
keeping the previous one for rollback — or, for a pip-installed client, says exactly
what to run. ``progress`` shows the download.

Boundary: imports ``onehop.core``, ``onehop.net`` and the client's transfer URLs and
ports; never the server or the operator's tooling.
"""
