"""Feedback: what users tell the operators, with encrypted, redacted diagnostics.

Boundary: two halves that share only the blob format (``onehop.core.feedbackcrypto``)
and the redactor.

* Client half (``redact``, ``document``, ``diagnostics``, ``noticelog``, ``targets``,
  ``queue``, ``upload``, ``send``): gathers diagnostics with addresses and secrets
  redacted, builds Psiphon's feedback JSON, encrypts it to the network's feedback key,
  writes it to ``<data dir>/feedback/pending/`` and uploads it with HTTP PUT through
  whatever way out the caller gives (the tunnel, else direct or the upstream proxy).
  Imports ``onehop.core``, ``onehop.net`` and the client's config, notices and
  transfer URLs only; never the server or the operator's tooling.
* Operator half (``models``, ``store``, ``sources``, ``collect``): pulls uploads from a
  directory or an S3 prefix, checks each MAC before decrypting, redacts again (server
  addresses become server IDs) and stores records through the ``FeedbackStore``
  interface (SQLAlchemy). SQLAlchemy and boto3 are imported only there, so a client
  build never loads them.

``cli`` registers ``onehop feedback send|flush|collect|decrypt|list``.
"""
