"""The CBOR codec: RFC 8949 Appendix A examples, CTAP2 canonical form, bounded decoding."""

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onehop.core.cbor import MAX_DEPTH, dumps, loads
from onehop.errors import LocalProtocolError, RemoteProtocolError

# (value, canonical encoding) pairs from RFC 8949 Appendix A.
RFC_EXAMPLES = [
    (0, "00"), (1, "01"), (10, "0a"), (23, "17"), (24, "1818"), (25, "1819"), (100, "1864"),
    (1000, "1903e8"), (1000000, "1a000f4240"), (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"), (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"), (-10, "29"), (-100, "3863"), (-1000, "3903e7"),
    (0.0, "f90000"), (-0.0, "f98000"), (1.0, "f93c00"), (1.1, "fb3ff199999999999a"),
    (1.5, "f93e00"), (65504.0, "f97bff"), (100000.0, "fa47c35000"),
    (3.4028234663852886e38, "fa7f7fffff"), (1.0e300, "fb7e37e43c8800759c"),
    (5.960464477539063e-8, "f90001"), (0.00006103515625, "f90400"), (-4.0, "f9c400"),
    (-4.1, "fbc010666666666666"), (math.inf, "f97c00"), (-math.inf, "f9fc00"),
    (False, "f4"), (True, "f5"), (None, "f6"),
    (b"", "40"), (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"), ("a", "6161"), ("IETF", "6449455446"), ('"\\', "62225c"),
    ("\u00fc", "62c3bc"), ("\u6c34", "63e6b0b4"), ("\U00010151", "64f0908591"),
    ([], "80"), ([1, 2, 3], "83010203"), ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"), ({1: 2, 3: 4}, "a201020304"), ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    ({"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}, "a56161614161626142616361436164614461656145"),
]

# Indefinite-length and non-shortest forms: accepted on decode only.
DECODE_ONLY = [
    ("5f42010243030405ff", b"\x01\x02\x03\x04\x05"),
    ("7f657374726561646d696e67ff", "streaming"),
    ("9fff", []),
    ("9f018202039f0405ffff", [1, [2, 3], [4, 5]]),
    ("83019f0203ff820405", [1, [2, 3], [4, 5]]),
    ("bf61610161629f0203ffff", {"a": 1, "b": [2, 3]}),
    ("bf6346756ef563416d7421ff", {"Fun": True, "Amt": -2}),
    ("1801", 1), ("190001", 1), ("f7", None), ("fa3fc00000", 1.5), ("fb3ff8000000000000", 1.5),
]


@pytest.mark.parametrize("value,encoded", RFC_EXAMPLES, ids=lambda x: repr(x)[:20])
def test_rfc8949_examples_encode_canonically(value, encoded):
    assert dumps(value).hex() == encoded


@pytest.mark.parametrize("value,encoded", RFC_EXAMPLES, ids=lambda x: repr(x)[:20])
def test_rfc8949_examples_decode(value, encoded):
    decoded = loads(bytes.fromhex(encoded))
    assert decoded == value and type(decoded) is type(value)
    if isinstance(value, float):
        assert math.copysign(1, decoded) == math.copysign(1, value)


@pytest.mark.parametrize("encoded,value", DECODE_ONLY)
def test_decode_only_forms(encoded, value):
    assert loads(bytes.fromhex(encoded)) == value


def test_nan_is_canonical_half_precision():
    assert dumps(math.nan).hex() == "f97e00"
    assert math.isnan(loads(bytes.fromhex("fb7ff8000000000000")))


def test_tuples_encode_as_arrays():
    assert dumps((1, "a")) == dumps([1, "a"])


def test_map_keys_sorted_by_encoded_length_then_bytes():
    # 10 -> 0a, -1 -> 20, 100 -> 1864, "z" -> 617a, "aa" -> 626161, 1000 -> 1903e8
    encoded = dumps({"aa": 0, 1000: 0, "z": 0, 100: 0, -1: 0, 10: 0})
    assert encoded.hex() == "a6" "0a00" "2000" "186400" "617a00" "1903e800" "62616100"


def test_map_key_order_is_independent_of_insertion_order():
    assert dumps({168: 1, 1: 2, 24: 3, 23: 4}) == dumps({23: 4, 24: 3, 1: 2, 168: 1}) == bytes.fromhex(
        "a4" "0102" "1704" "181803" "18a801")


@pytest.mark.parametrize("value", [2**64, -(2**64) - 1, object(), {1, 2}, {1.5: 0}, {True: 0},
                                   {(1,): 0}, "\ud800"])
def test_dumps_rejects_unsupported_values(value):
    with pytest.raises(LocalProtocolError):
        dumps(value)


def test_dumps_rejects_cycles_through_the_depth_limit():
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(LocalProtocolError):
        dumps(cyclic)


@pytest.mark.parametrize("encoded,reason", [
    ("", "cbor_truncated"),
    ("18", "cbor_truncated"),
    ("6261", "cbor_truncated"),
    ("0000", "cbor_trailing_data"),
    ("1c", "cbor_malformed"),
    ("1f", "cbor_malformed"),
    ("ff", "cbor_unexpected_break"),
    ("8201ff", "cbor_unexpected_break"),
    ("c074323031332d30332d32315432303a30343a30305a", "cbor_tag_unsupported"),
    ("c11a514b67b0", "cbor_tag_unsupported"),
    ("62c328", "cbor_invalid_utf8"),
    ("a201000100", "cbor_duplicate_key"),
    ("a1800000", "cbor_unsupported_key"),
    ("a1f500", "cbor_unsupported_key"),
    ("a1f900000000", "cbor_unsupported_key"),
    ("5f6161ff", "cbor_bad_chunk"),
    ("5f5f4101ffff", "cbor_bad_chunk"),
    ("e0", "cbor_simple_unsupported"),
    ("f810", "cbor_simple_unsupported"),
    ("f820", "cbor_simple_unsupported"),
    ("9f01", "cbor_truncated"),
    ("5bffffffffffffffff", "cbor_truncated"),
    ("9bffffffffffffffff", "cbor_truncated"),
    ("bbffffffffffffffff", "cbor_truncated"),
    ("a3010203", "cbor_truncated"),
])
def test_loads_rejects_with_reason(encoded, reason):
    with pytest.raises(RemoteProtocolError) as info:
        loads(bytes.fromhex(encoded))
    assert info.value.reason == reason


def test_nesting_limit():
    assert loads(b"\x81" * MAX_DEPTH + b"\x00") is not None
    with pytest.raises(RemoteProtocolError) as info:
        loads(b"\x81" * (MAX_DEPTH + 1) + b"\x00")
    assert info.value.reason == "cbor_too_deep"
    with pytest.raises(RemoteProtocolError):
        loads(b"\x9f" * 100000)
    assert loads(b"\x81\x81\x00", max_depth=2) == [[0]]


def test_accepts_bytearray_and_memoryview():
    assert loads(bytearray(b"\x83\x01\x02\x03")) == [1, 2, 3]
    assert loads(memoryview(b"\x43abc")) == b"abc"


# ----------------------------------------------------------------------- properties

_keys = st.one_of(st.integers(-(2**64), 2**64 - 1), st.text(max_size=8))
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64 - 1), st.floats(allow_nan=False),
    st.binary(max_size=32), st.text(max_size=32),
)
values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(_keys, inner, max_size=5)),
    max_leaves=30,
)


@given(values)
def test_round_trip(value):
    encoded = dumps(value)
    assert loads(encoded) == value
    assert dumps(loads(encoded)) == encoded


@given(st.floats())
def test_floats_keep_their_value_in_the_shortest_form(x):
    encoded = dumps(x)
    decoded = loads(encoded)
    if math.isnan(x):
        assert math.isnan(decoded)
    else:
        assert decoded == x and math.copysign(1, decoded) == math.copysign(1, x)
    if not math.isnan(x) and len(encoded) > 3:  # no shorter form would have kept the value
        shorter = ">e" if len(encoded) == 5 else ">f"
        try:
            assert struct.unpack(shorter, struct.pack(shorter, x))[0] != x
        except OverflowError:
            pass


@given(values)
def test_matches_cbor2_canonical_encoding(value):
    cbor2 = pytest.importorskip("cbor2")
    assert dumps(value) == cbor2.dumps(value, canonical=True)


@given(st.binary(max_size=512))
def test_fuzz_loads_raises_only_remote_protocol_error(data):
    try:
        loads(data)
    except RemoteProtocolError:
        pass


@given(values, st.binary(max_size=8), st.integers(min_value=0))
def test_fuzz_mutated_encodings(value, junk, where):
    encoded = bytearray(dumps(value))
    at = where % (len(encoded) + 1)
    encoded[at:at + len(junk)] = junk
    try:
        loads(bytes(encoded))
    except RemoteProtocolError:
        pass
