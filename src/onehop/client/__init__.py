"""The client (``onehop client``): what people in censored networks run.

``config`` merges the config file and flags into one frozen ClientConfig; ``notices``
prints Psiphon-style JSON notices; ``dialer`` turns a server entry into one dialled and
handshaken tunnel; ``controller`` dials many candidates at once and keeps the first good
tunnel; ``socks_proxy`` and ``http_proxy`` are the local proxies that open channels
through whichever tunnel is active. ``feedback`` and ``upgrade`` are the client halves of
those channels (their operator halves, ``onehop.feedback`` and ``onehop.upgrade``, sit
above the client and import it, never the other way); ``ports`` names what the parts
around the controller may ask of it. The client never imports ``onehop.server`` nor
anything of the operator's.
"""
