"""Feedback, the operator half: uploads collected, decrypted, redacted and stored.

The client half (gather, redact, encrypt, queue, upload) is ``onehop.client.feedback``;
the two share the blob format (``onehop.core.feedbackcrypto``), the redactor
(``onehop.core.redact``) and the document (``onehop.client.feedback.document``).

* ``receive``: a small HTTP PUT endpoint storing uploads in a directory;
* ``sources``: uploads waiting in a directory or an S3 prefix (boto3, imported for S3
  only);
* ``collect``: checks each MAC before decrypting, redacts again (server addresses
  become server IDs) and stores records through the ``FeedbackStore`` interface
  (``store``);
* ``sqlstore``: that interface on the network database (its table is
  ``onehop.network.feedback_records``; SQLAlchemy, the ``network`` extra).

Boundary: above the client and the network database; neither imports this package.
``cli`` registers ``onehop feedback send|flush`` (users: ``commands_user``, on the client
half) and ``collect|receive|decrypt|list`` (operators: ``commands_operator``); it holds
the parsers only and imports a handler's module when its verb runs.
"""
