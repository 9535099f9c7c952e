"""The censorship lab: censor models, a middlebox that applies them, scenarios, reports.

Boundary: a developer and operator tool. Nothing in the product path imports
``onehop.lab`` (tests/unit/test_import_boundaries.py); the lab imports the product
(client controller, tunnel server, core) to measure it.

Layers, as in the product: the censor models (``flows``, ``blocking``, ``dpi``,
``fet``, ``prober``) are sans-IO and pure: they see flow events and return verdicts,
with time and randomness passed in. ``middlebox`` and ``probing`` are the asyncio
adapters that apply them to real TCP flows; ``topology`` and ``netns`` build the
network (a relay on loopback, or network namespaces as root); ``scenarios``,
``runner`` and ``report`` run and present measurements; ``capture`` classifies the
traffic with nDPI.
"""
