"""Client upgrades: signed packages, resumable downloads, atomic installs, deltas.

Boundary: two halves around one format (``package``).

* Operator helpers (``package``, ``artifacts``): make Psiphon's upgrade package (an
  authenticated package whose data is the base64 of the client build, gzip, signed
  with the upgrade key) and, beyond Psiphon, a signed bsdiff4 delta from the previous
  build. ``onehop network client-version add`` / ``publish`` call them; nothing here
  touches the network database.
* Client side (``fetch``, ``install``, ``progress``, ``client``): on
  ClientUpgradeAvailable, download (through the tunnel when one is up, else the
  out-of-band mirrors directly or through the upstream proxy; resumable), verify the
  key digest and the signature before anything is written in place, then install
  atomically keeping the previous build for rollback — or, for a pip-installed
  client, say exactly what to run. Imports ``onehop.core``, ``onehop.net`` and the
  client's transfer URLs; never the server or the operator's tooling.
"""
