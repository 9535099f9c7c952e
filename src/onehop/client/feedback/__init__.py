"""The client half of feedback: what a user sends, redacted, encrypted and queued.

``diagnostics`` gathers what a client attaches (redacted with ``onehop.core.redact``);
``document`` builds Psiphon's feedback JSON (and reads it back: the operator's
collector uses it too); ``noticelog`` keeps a bounded, redacted log of the notices;
``queue`` holds packages in ``<data dir>/feedback/pending/`` until one is uploaded;
``targets`` reads ``FeedbackUploadURLs``; ``upload`` PUTs each package with retries;
``send`` is the API (``onehop feedback send``, the web UI, the controller's upload of
what earlier runs left) and takes the way out its caller gives: the tunnel when one is
up (``client.ports.OutboundClient``), else direct or through the upstream proxy.

Boundary: imports ``onehop.core``, ``onehop.net`` and the client's own modules only;
the operator's side (``onehop.feedback``: collect, store, receive) imports this, never
the reverse. The blob format is ``onehop.core.feedbackcrypto``.
"""
