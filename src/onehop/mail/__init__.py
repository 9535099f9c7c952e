"""The e-mail auto-responder: people write to a campaign's address and get back the
channel's download links and its client build.

Boundary: ``parse -> policy -> render`` are pure (bytes and values in, values and bytes
out; the clock, randomness and keys are parameters), beside the I/O modules that own the
sockets, files and processes: ``handler`` (the aiosmtpd side of the SMTP dialogue),
``sender`` (the relay, aiosmtplib), ``renderer`` (rendering and DKIM signing in a worker
process), ``store`` and ``blobs`` (the SQLite outbox and state directory) and ``service``
(wiring, config reloads). It reads ``mail/responder.json`` as exported by
``onehop network export`` and never imports the network package; nothing in the product
path (client, server) imports this one.

Privacy: a requester's address is never logged and is stored only inside a queued reply,
erased when that reply is delivered (or expires); the per-sender rate limit keeps only
keyed hashes that expire after a day. Logs and statistics name the address written to
(ours).
"""
