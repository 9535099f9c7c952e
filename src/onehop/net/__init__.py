"""Thin asyncio adapters: the only code that opens, reads and writes sockets.

``net.ossh`` drives the sans-IO OSSH core over a real TCP transport and presents an
asyncio Transport to the SSH layer; ``net.listener`` accepts connections with a
handshake deadline and the probe-silent failure path; ``net.dial`` opens outgoing TCP
connections, optionally through an upstream proxy. Library and OS exceptions are
mapped to ``onehop.errors`` here.
"""
