"""Server statistics in the network database: ingest event logs, report on them.

``sources`` reads logs from a directory or a host over SSH; ``lines`` turns lines into
rows (pure); ``ingest`` stores them idempotently (per file: consumed bytes and the
SHA-256 of that prefix); ``report`` aggregates per day by region, channel, sponsor and
server and flags likely blocks; ``plot`` draws the report. No client IP address is ever
stored: servers do not log one, and every stored string is scrubbed of addresses.
"""
