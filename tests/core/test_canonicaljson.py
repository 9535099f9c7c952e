"""Go encoding/json compatible serialisation (the bytes Psiphon signs)."""

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onehop.core import canonicaljson as cj
from onehop.errors import LocalProtocolError, RemoteProtocolError
from tests.conftest import vector_cases

SIGNED = vector_cases("server_entry", kind="signed")[0]


def test_vector_field_maps_round_trip_byte_exact():
    for name in ("fields_json_before_signing_excluding_signature", "json_with_signature", "signed_message"):
        text = SIGNED[name]
        assert cj.dumps(cj.loads(text)).decode("utf-8") == text
    assert cj.dumps(cj.loads(SIGNED["signed_message"])).hex() == SIGNED["signed_message_hex"]


def test_vector_json_sorted_from_struct_order():
    # The unsigned vectors carry struct-order JSON; Go's map form is the sorted one.
    case = next(c for c in vector_cases("server_entry") if c["name"] == "entry_1")
    fields = json.loads(case["json"])
    expected = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert cj.dumps(cj.loads(case["json"])).decode("utf-8") == expected


@pytest.mark.parametrize("text, expected", [
    ("a<b>&c", r'"a\u003cb\u003e\u0026c"'),
    ("\u2028\u2029", r'"\u2028\u2029"'),
    ("quote\" back\\", r'"quote\" back\\"'),
    ("\n\r\t", r'"\n\r\t"'),
    ("\b\f", r'"\b\f"'),  # Go >= 1.22 writes short escapes for these
    ("\x00\x01\x1f", r'"\u0000\u0001\u001f"'),
    ("\x7f", '"\x7f"'),  # DEL is not escaped by Go
    ("é€😀", '"é€😀"'),  # non-ASCII stays raw UTF-8
    ("/", '"/"'),
    ("lone\ud800", '"lone\ufffd"'),
])
def test_string_escapes_match_go(text, expected):
    assert cj.dumps(text).decode("utf-8") == expected


def test_invalid_utf8_bytes_become_escaped_replacement_per_byte():
    # Go writes \ufffd for each invalid byte of a string holding raw bytes.
    assert cj.dumps(b"a\xffb\xe2\x82c<") == rb'"a\ufffdb\ufffd\ufffdc\u003c"'
    assert cj.dumps(b"ok \xc3\xa9") == '"ok é"'.encode()


def _go_decode_rune_reference(raw: bytes) -> str:
    """Go's utf8.DecodeRune loop, naively: a valid rune at pos, else U+FFFD for one byte."""
    out, pos = [], 0
    while pos < len(raw):
        for size in (1, 2, 3, 4):
            try:
                char = raw[pos:pos + size].decode("utf-8")
            except UnicodeDecodeError:
                continue
            out.append(char)
            pos += size
            break
        else:
            out.append(None)  # marks one replaced byte
            pos += 1
    return "".join("\x00REPL\x00" if c is None else c for c in out)


@given(st.binary(max_size=40) | st.text(max_size=10).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_fuzz_go_bytes_replacement_matches_decoderune_reference(raw):
    reference = cj.dumps(_go_decode_rune_reference(raw)).decode("utf-8")
    assert cj.dumps(raw).decode("utf-8") == reference.replace("\\u0000REPL\\u0000", "\\ufffd")


@pytest.mark.parametrize("value, expected", [
    (0, "0"), (22, "22"), (-5, "-5"), (1.0, "1"), (1.5, "1.5"), (-0.0, "-0"),
    (0.1, "0.1"), (1e20, "100000000000000000000"), (1e21, "1e+21"), (1e-6, "0.000001"),
    (1e-7, "1e-7"), (1.5e-10, "1.5e-10"), (123456.789, "123456.789"),
    (2 ** 53, "9007199254740992"), (2 ** 53 + 1, "9007199254740992"), (2 ** 64, "18446744073709552000"),
    (1.7976931348623157e308, "1.7976931348623157e+308"), (5e-324, "5e-324"),
])
def test_numbers_formatted_like_go_float64(value, expected):
    assert cj.dumps(value).decode() == expected


def test_objects_sorted_bytewise_nested_and_compact():
    value = {"b": {"z": 1, "a": [True, False, None]}, "a": "x", "é": 1, "B": 2, "\U0001f600": 3, "\uffff": 4}
    assert cj.dumps(value).decode("utf-8") == \
        '{"B":2,"a":"x","b":{"a":[true,false,null],"z":1},"é":1,"\uffff":4,"\U0001f600":3}'


def test_keys_are_escaped_too():
    assert cj.dumps({"<k>": 1}) == rb'{"\u003ck\u003e":1}'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1: 2}, object(), {"a": {3}}])
def test_dumps_rejects_unsupported_values(bad):
    with pytest.raises(LocalProtocolError):
        cj.dumps(bad)


def test_loads_mirrors_go_number_model():
    parsed = cj.loads('{"i": 42, "big": 12345678901234567890, "neg0": -0, "f": 2.50, "e": 1e2}')
    assert parsed["i"] == 42 and type(parsed["i"]) is int
    assert parsed["big"] == float(12345678901234567890) and type(parsed["big"]) is float
    assert math.copysign(1.0, parsed["neg0"]) == -1.0
    assert cj.dumps(parsed) == b'{"big":12345678901234567000,"e":100,"f":2.5,"i":42,"neg0":-0}'


def test_loads_replaces_bad_surrogate_escapes_like_go():
    parsed = cj.loads(r'{"a": "\ud800x\udc00\ud83d\ude00", "\udfff": 1}')
    assert parsed == {"a": "\ufffdx\ufffd\U0001f600", "\ufffd": 1}


@pytest.mark.parametrize("bad", [
    b"NaN", b'{"a": Infinity}', b"-Infinity", b"1e400", b'{"a":1', b"\xff", b'"\xc3"',
    b"[" * 100000, b"", b"01", b'{"a":"\x01"}',
])
def test_loads_rejects_what_go_rejects(bad):
    with pytest.raises(RemoteProtocolError) as info:
        cj.loads(bad)
    assert info.value.reason == "invalid_json"


def test_nesting_limit():
    assert cj.loads("[" * 100 + "]" * 100) is not None
    for depth in (101, 900, 5000):
        with pytest.raises(RemoteProtocolError, match="too deep"):
            cj.loads("[" * depth + "]" * depth)
    assert cj.loads('{"a":' * 3 + "1" + "}" * 3, max_depth=3) == {"a": {"a": {"a": 1}}}
    with pytest.raises(RemoteProtocolError):
        cj.loads('{"a":' * 3 + "1" + "}" * 3, max_depth=2)


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_fuzz_loads_raises_only_our_error(data):
    try:
        cj.loads(data)
    except RemoteProtocolError:
        pass


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_json_values)
def test_fuzz_dumps_is_valid_json_and_stable(value):
    encoded = cj.dumps(value)
    assert cj.dumps(cj.loads(encoded)) == encoded  # canonical: a second pass changes nothing
    json.loads(encoded)


_plain_text = st.text(st.characters(blacklist_categories=("Cs",)))
_plain_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 53), 2 ** 53) | _plain_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_plain_text, inner, max_size=4),
    max_leaves=20,
)


def _python_reference(value) -> bytes:
    """An independent oracle: the stdlib encoder plus Go's extra escapes."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text.encode("utf-8")


@given(_plain_values)
def test_fuzz_matches_independent_reference(value):
    assert cj.dumps(value) == _python_reference(value)
