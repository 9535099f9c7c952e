"""The SSH layer shared by client and server: asyncssh over OSSH (or plain TCP) streams.

* ``algorithms``  algorithm preferences and OpenSSH-looking version strings.
* ``relay``       byte-counting, flow-controlled forwarders between SSH channels and TCP.
* ``server``      an asyncssh server connection that speaks Psiphon's SSH API requests
                  and ``random@psiphon.ca`` channels, delegating every decision to a
                  ``TunnelServerPolicy`` supplied by ``onehop.server``.
* ``tuning``      data-path settings and hooks for bulk traffic (window, packet size).
* ``asyncssh_compat`` every use of asyncssh's private internals, behind named functions
                  (checked by tests/tunnel/test_asyncssh_compat.py).
* ``client``      dialing one tunnel (OSSH, OSSH with prefix, or SSH) with a pinned host
                  key, keepalives and raw-payload API requests.

This package knows nothing about configuration files, notices or databases.
"""
