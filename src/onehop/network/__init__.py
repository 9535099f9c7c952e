"""The central network database (psinet) and everything it produces (``onehop network``).

Boundary: operator tooling only. Nothing in the product path (client, server, core,
net, tunnel) imports this package; servers and clients read the files it exports and
publishes (server.json, server-entry.dat, psinet.json, signed server lists, client
builds, upgrade packages), never the database itself.

``db`` opens databases and checks the schema (migrations in ``migrations/``, run
programmatically); ``models`` is the SQLAlchemy schema; the operation modules
(``sponsors``, ``channels``, ``hosts``, ``servers``, ``versions``, ``keys``,
``settings``) change it, each change with an ``audit`` record in the same transaction;
``entries`` and ``lists`` sign server entries and build server lists; ``export``,
``builds`` and ``publish`` write files; ``simulate`` sizes discovery pools; ``cli``
registers ``onehop network``. Secrets live in the database: protect its file.
No client IP address is ever stored here; reports name servers by their IDs.
"""
