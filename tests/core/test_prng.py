"""The seeded PRNG against Psiphon's vectors (vectors/prng.json)."""

import pytest

from onehop.core.prng import SeededPRNG, salted_seed
from tests.conftest import vector_cases

CASES = vector_cases("prng")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["seed"][:8])
def test_prng_matches_psiphon(case):
    seed = bytes.fromhex(case["seed"])
    assert SeededPRNG(seed).read(64).hex() == case["bytes_64"]
    p = SeededPRNG(seed)
    assert [str(p.uint64()) for _ in case["uint64"]] == case["uint64"]
    p = SeededPRNG(seed)
    assert [p.intn(8191) for _ in case["intn_8191"]] == case["intn_8191"]
    p = SeededPRNG(seed)
    assert [p.intn(256) for _ in case["intn_256"]] == case["intn_256"]
    p = SeededPRNG(seed)
    assert [p.range(32, 8192) for _ in case["range_32_8192"]] == case["range_32_8192"]
    p = SeededPRNG(seed)
    pad = p.padding(32, 64)
    assert len(pad) == case["padding_32_64"]["length"]
    assert pad.hex() == case["padding_32_64"]["bytes"]
    for salt, expected in case["salted_seeds"].items():
        assert salted_seed(seed, salt).hex() == expected


def test_read_is_a_continuous_stream():
    seed = bytes(range(32))
    whole = SeededPRNG(seed).read(10000)
    p = SeededPRNG(seed)
    parts = b"".join(p.read(n) for n in (1, 7, 4095, 3, 5894))
    assert parts == whole


def test_seed_length_is_checked():
    with pytest.raises(ValueError):
        SeededPRNG(b"short")
