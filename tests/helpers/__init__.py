"""What many test files (and the benchmarks) need, written once: ports, waiting for a
condition, echo and relay servers, SSH channel helpers, a private OpenSSH server and
builders of configs and server entries.

Nothing here imports pytest at module level, so ``bench/`` can import these modules too
(``sys.path`` gets the repository root); anything here that skips a test says so.
"""
