"""The client's local web UI (``onehop client --ui``): a page a person uses instead of flags.

Boundary: ``server`` serves the page and a small JSON API on 127.0.0.1 only, behind a
random per-run token and Origin/Host checks; it talks to the running client only through
the ``ClientControl`` Protocol in ``port`` (never the controller's internals).
``control.ControllerControl`` is the one adapter that implements that Protocol over the
controller, the settings file (``settings``) and the feedback path. ``live`` turns the
client's notices into the state the page shows; ``static/`` holds the page (plain HTML,
CSS and JavaScript, no build step, no external resources).
"""
