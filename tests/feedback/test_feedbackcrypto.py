"""Psiphon's feedback blob: the Go vectors decrypt, the MAC is checked before anything
is decrypted, and no input makes the parser fail other than with RemoteProtocolError."""

from __future__ import annotations

import base64
import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onehop.core import feedbackcrypto as fc
from onehop.errors import LocalProtocolError, RemoteProtocolError
from tests.conftest import load_vectors

CASES = load_vectors("feedback")["cases"]
PRIVATE_PEM = CASES[0]["private_key_pem_pkcs1"]
PRIVATE_KEY = fc.load_private_key(PRIVATE_PEM)
PUBLIC_B64 = CASES[0]["public_key_b64_der"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_every_go_vector_decrypts(case):
    plaintext = fc.decrypt(case["blob_json"], PRIVATE_KEY)
    assert plaintext == bytes.fromhex(case["plaintext_hex"]) == case["plaintext"].encode()
    assert len(base64.b64decode(json.loads(case["blob_json"])["contentCiphertext"])) == case["padded_length"]


@pytest.mark.parametrize("form", ["private_key_pem_pkcs1", "private_key_pem_pkcs8"])
def test_both_private_key_forms_load(form):
    assert fc.decrypt(CASES[1]["blob_json"], CASES[0][form]) == b"hello feedback"


def test_the_public_half_is_the_configured_key():
    assert fc.public_key_b64(PRIVATE_KEY) == PUBLIC_B64


@pytest.mark.parametrize("plaintext", [b"", b"x", b"y" * 16, "Unicode ✓ «feedback»".encode(), os.urandom(5000)])
def test_round_trip_and_field_format(plaintext):
    blob = fc.encrypt(plaintext, PUBLIC_B64, os.urandom)
    fields = json.loads(blob)
    assert list(fields) == list(fc.BLOB_FIELDS)
    assert all(base64.b64encode(base64.b64decode(v)).decode() == v for v in fields.values())
    assert len(base64.b64decode(fields["contentCiphertext"])) == (len(plaintext) // 16 + 1) * 16
    assert fc.decrypt(blob, PRIVATE_KEY) == plaintext


def test_randomness_is_a_parameter():
    def fixed(n: int) -> bytes:
        return b"\x01" * n

    a, b = json.loads(fc.encrypt(b"same", PUBLIC_B64, fixed)), json.loads(fc.encrypt(b"same", PUBLIC_B64, fixed))
    assert (a["iv"], a["contentCiphertext"], a["contentMac"]) == (b["iv"], b["contentCiphertext"], b["contentMac"])
    with pytest.raises(LocalProtocolError):
        fc.encrypt(b"x", PUBLIC_B64, lambda n: b"short")


def _mutated(blob: str, name: str, change) -> str:
    fields = json.loads(blob)
    fields[name] = base64.b64encode(change(base64.b64decode(fields[name]))).decode()
    return json.dumps(fields)


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


def test_the_mac_is_checked_before_decrypting():
    # Flipping the last ciphertext byte would also break the PKCS#7 padding: the error must
    # be the MAC's, which proves no decryption happened first.
    tampered = _mutated(CASES[0]["blob_json"], "contentCiphertext", _flip_last)
    with pytest.raises(RemoteProtocolError) as caught:
        fc.decrypt(tampered, PRIVATE_KEY)
    assert caught.value.reason == "bad_mac"


@pytest.mark.parametrize("name, reason", [("iv", "bad_mac"), ("contentMac", "bad_mac"),
                                          ("wrappedMacKey", "foreign_key"),
                                          ("wrappedEncryptionKey", "foreign_key")])
def test_every_field_is_authenticated(name, reason):
    with pytest.raises(RemoteProtocolError) as caught:
        fc.decrypt(_mutated(CASES[0]["blob_json"], name, _flip_last), PRIVATE_KEY)
    assert caught.value.reason == reason


def test_a_blob_for_another_key_is_foreign(feedback_keys):
    _, other_public = feedback_keys
    with pytest.raises(RemoteProtocolError) as caught:
        fc.decrypt(fc.encrypt(b"secret", other_public, os.urandom), PRIVATE_KEY)
    assert caught.value.reason == "foreign_key"


def test_an_oversized_blob_is_refused_before_parsing():
    with pytest.raises(RemoteProtocolError) as caught:
        fc.decrypt(b"{" + b" " * 2000 + b"}", PRIVATE_KEY, max_size=1000)
    assert caught.value.reason == "too_large"


@pytest.mark.parametrize("blob, detail", [
    (b"not json", "not JSON"), (b"[1]", "object"), (b'{"iv": 1}', "iv"),
    (json.dumps({n: "AAAA" for n in fc.BLOB_FIELDS}).encode(), "iv must be 16"),
    (b'{"iv": "NaN"}', "base64"), (b"\xff\xfe", "JSON"),
])
def test_malformed_blobs_get_clear_errors(blob, detail):
    with pytest.raises(RemoteProtocolError) as caught:
        fc.decrypt(blob, PRIVATE_KEY)
    assert caught.value.reason == "invalid_blob" and detail in str(caught.value)


# -- fuzz -----------------------------------------------------------------------------

@given(st.binary(max_size=2000))
def test_fuzz_arbitrary_bytes(blob):
    with pytest.raises(RemoteProtocolError):
        fc.decrypt(blob, PRIVATE_KEY)


_b64 = st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode())
_field_value = st.one_of(_b64, st.text(max_size=50), st.integers(), st.none(), st.lists(st.integers(), max_size=3))


@given(st.dictionaries(st.sampled_from(fc.BLOB_FIELDS + ("extra",)), _field_value, max_size=7))
def test_fuzz_structured_blobs(fields):
    with pytest.raises(RemoteProtocolError):
        fc.decrypt(json.dumps(fields), PRIVATE_KEY)


@given(st.sampled_from(fc.BLOB_FIELDS), st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_fuzz_any_single_byte_change_is_rejected(name, position, xor):
    def change(data: bytes) -> bytes:
        i = position % len(data)
        return data[:i] + bytes([data[i] ^ xor]) + data[i + 1:]
    with pytest.raises(RemoteProtocolError) as caught:
        fc.decrypt(_mutated(CASES[0]["blob_json"], name, change), PRIVATE_KEY)
    assert caught.value.reason in ("bad_mac", "foreign_key", "invalid_blob")


@given(st.binary(max_size=3000))
def test_fuzz_round_trip(plaintext):
    assert fc.decrypt(fc.encrypt(plaintext, PUBLIC_B64, os.urandom), PRIVATE_KEY) == plaintext
