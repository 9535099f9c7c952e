"""The tunnel server (``onehop server ...``).

``config`` loads and validates server.json; ``generate`` creates a new server's secrets;
``service`` runs the listeners (OSSH with and without prefix on one port, plain SSH);
``session`` is the per-SSH-connection policy the tunnel layer consults (credentials,
the API handlers in ``api``, forwards through ``forwarding`` and ``policy``).
Servers never query the central database: they read the files it exports (``psinet``).
Client IP addresses are used in memory only and never written anywhere.
"""
