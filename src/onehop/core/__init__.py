"""Pure, sans-IO protocol code.

Everything under ``onehop.core`` takes bytes and values in and gives bytes and values
out. It never imports asyncio, opens sockets, reads the clock, logs, or draws from
``os.urandom``: time, randomness and keys are parameters. This is what makes the wire
formats testable against Psiphon's byte-exact vectors and fuzzable with hypothesis.
"""
