"""The tunnel server (``onehop server ...``).

``config`` loads and validates server.json; ``generate`` creates a new server's secrets;
``service`` runs the listeners (OSSH with and without prefix on one port via
``listener``, plain SSH) over ``connection``; ``session`` is the per-SSH-connection
policy the tunnel layer consults (credentials, the API handlers in ``api``, TCP forwards
through ``portforwards``, ``forwarding`` and ``policy``, UDP through ``udpgw``).
Operations: ``trafficrules`` (per-client rules, hot-reloaded; the model is in
``core.trafficrules``) enforced with ``throttle`` and ``idle``; ``geoip`` names the
client's region, city, ISP and ASN; ``stats`` builds the fields ``events`` writes.
Servers never query the central database: they read the files it exports (``psinet``);
files that change are re-read (``watched``).
Client IP addresses are used in memory only and never written anywhere.
"""
