"""Authenticated data packages against Psiphon's vectors (vectors/auth_package.json)."""

import base64
import hashlib
import json
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onehop.core import authpackage as ap
from onehop.core.serverentry import decode_server_list
from onehop.errors import LocalProtocolError, RemoteProtocolError, SignatureError
from tests.conftest import vector_cases

VALID = vector_cases("auth_package", go_result="ok")[0]
NEGATIVE = vector_cases("auth_package", go_result="error")
PUBLIC = VALID["public_key_b64_der"]
PACKAGE_JSON = VALID["package_json"].encode("utf-8")
PACKAGE_ZLIB = bytes.fromhex(VALID["package_zlib"])

# Go's final error message -> the error we raise for it.
GO_ERROR_KINDS = {
    "crypto/rsa: verification error": (SignatureError, "verification error"),
    "unexpected signing public key digest": (SignatureError, "unexpected signing public key digest"),
}


def test_valid_vector_verifies_and_yields_data():
    assert ap.read_package(PACKAGE_ZLIB, PUBLIC) == VALID["data"]
    assert ap.read_package(PACKAGE_ZLIB, PUBLIC, compression="auto") == VALID["data"]
    assert ap.read_package(PACKAGE_JSON, PUBLIC, compression="none") == VALID["data"]
    assert ap.decompress(PACKAGE_ZLIB) == PACKAGE_JSON


def test_payload_is_the_server_entry_vectors():
    entries, errors = decode_server_list(ap.read_package(PACKAGE_ZLIB, PUBLIC))
    assert errors == [] and [e.ip_address for e in entries] == ["192.0.2.10", "198.51.100.20", "203.0.113.30"]


@pytest.mark.parametrize("key_field", ["private_key_pem_pkcs1", "private_key_pem_pkcs8", "private_key_b64_pkcs1_der"])
def test_our_signer_reproduces_go_package_byte_exact(key_field):
    made = ap.make_package(VALID["data"], VALID[key_field], PUBLIC)
    assert made == PACKAGE_JSON  # PKCS#1 v1.5 is deterministic, so the signature matches too
    assert json.loads(made)["signature"] == json.loads(PACKAGE_JSON)["signature"]


def test_private_key_as_der_bytes_and_public_key_derivation():
    der = base64.b64decode(VALID["private_key_b64_pkcs1_der"])
    assert ap.make_package(VALID["data"], der, PUBLIC) == PACKAGE_JSON
    assert ap.public_key_b64_from_private(VALID["private_key_pem_pkcs1"]) == PUBLIC
    digest = base64.b64decode(ap.public_key_digest(PUBLIC))
    assert digest.hex() == VALID["signing_public_key_digest_hex"]


@pytest.mark.parametrize("case", NEGATIVE, ids=lambda c: c["name"])
def test_negative_vectors_rejected_with_matching_kind(case):
    error_type, message = GO_ERROR_KINDS[case["error_kind"]]
    with pytest.raises(error_type, match=message):
        ap.read_package(bytes.fromhex(case["package_zlib"]), case["verify_with_public_key_b64_der"])
    assert ap.decompress(bytes.fromhex(case["package_zlib"])) == case["package_json"].encode("utf-8")


def test_digest_is_checked_before_rsa():
    # Wrong digest and a garbage signature: the digest error must win.
    package = json.loads(PACKAGE_JSON)
    package["signingPublicKeyDigest"] = base64.b64encode(bytes(32)).decode()
    package["signature"] = base64.b64encode(b"junk").decode()
    with pytest.raises(SignatureError, match="digest"):
        ap.verify_package_json(json.dumps(package).encode(), PUBLIC)


def test_gzip_and_zlib_writers_round_trip():
    assert ap.read_package(ap.compress_gzip(PACKAGE_JSON), PUBLIC, compression="gzip") == VALID["data"]
    assert ap.read_package(ap.compress_gzip(PACKAGE_JSON), PUBLIC, compression="auto") == VALID["data"]
    assert ap.read_package(ap.compress_zlib(PACKAGE_JSON), PUBLIC) == VALID["data"]
    two_members = ap.compress_gzip(PACKAGE_JSON[:100]) + ap.compress_gzip(PACKAGE_JSON[100:])
    assert ap.read_package(two_members, PUBLIC, compression="gzip") == VALID["data"]


@pytest.mark.parametrize("cut", [1, 2, 10, 100, 1000,
                                 len(PACKAGE_ZLIB) // 2, len(PACKAGE_ZLIB) - 4, len(PACKAGE_ZLIB) - 1])
def test_truncated_zlib_is_reported_as_truncated(cut):
    with pytest.raises(RemoteProtocolError) as info:
        ap.read_package(PACKAGE_ZLIB[:cut], PUBLIC)
    assert info.value.reason == "truncated"


def test_decompression_bomb_refused():
    bomb = zlib.compress(b"0" * (8 * 1024 * 1024), 9)
    assert len(bomb) < 16 * 1024
    with pytest.raises(RemoteProtocolError) as info:
        ap.read_package(bomb, PUBLIC, max_size=1024 * 1024)
    assert info.value.reason == "too_large"
    with pytest.raises(RemoteProtocolError, match="too_large"):
        ap.read_package(PACKAGE_ZLIB, PUBLIC, max_size=len(PACKAGE_JSON) - 1)
    assert ap.read_package(PACKAGE_ZLIB, PUBLIC, max_size=len(PACKAGE_JSON)) == VALID["data"]
    with pytest.raises(RemoteProtocolError, match="too_large"):
        ap.read_package(PACKAGE_JSON, PUBLIC, compression="none", max_size=10)


@pytest.mark.parametrize("blob, reason", [
    (b"", "truncated"),
    (PACKAGE_ZLIB + b"extra", "trailing_data"),
    (PACKAGE_ZLIB[:50] + bytes(50) + PACKAGE_ZLIB[100:], "corrupt_compression"),
    (b"\x78\x9c" + b"\xff" * 20, "corrupt_compression"),
])
def test_bad_compression(blob, reason):
    with pytest.raises(RemoteProtocolError) as info:
        ap.read_package(blob, PUBLIC)
    assert info.value.reason == reason


def _package(**changes) -> bytes:
    package = json.loads(PACKAGE_JSON)
    package.update(changes)
    return json.dumps({k: v for k, v in package.items() if v is not None}).encode()


@pytest.mark.parametrize("package_json", [
    b"[]", b"not json", b'"data"', _package(data=None), _package(extra="x"), _package(signature=5),
    _package(signature="not base64!"), _package(signingPublicKeyDigest="@@"), _package(data=["x"]),
    b"\xff\xfe",
])
def test_malformed_package_json(package_json):
    with pytest.raises(RemoteProtocolError) as info:
        ap.read_package(package_json, PUBLIC, compression="none")
    assert info.value.reason == "invalid_package"


def test_bad_configured_keys_are_local_errors():
    for key in ("", "!!", base64.b64encode(b"not a key").decode()):
        with pytest.raises(LocalProtocolError):
            ap.read_package(PACKAGE_ZLIB, key)
        with pytest.raises(LocalProtocolError):
            ap.make_package("x", key, PUBLIC)
    with pytest.raises(LocalProtocolError):
        ap.decompress(PACKAGE_ZLIB, compression="brotli")


def test_unstreamable_data_refused_unless_asked():
    key = VALID["private_key_pem_pkcs1"]
    with pytest.raises(LocalProtocolError):
        ap.make_package('line "quoted" <tag>', key, PUBLIC)
    made = ap.make_package('line "quoted" <tag>\né', key, PUBLIC, streamable=False)
    assert ap.read_package(made, PUBLIC, compression="none") == 'line "quoted" <tag>\né'
    assert b'\\u003ctag\\u003e' in made  # Go's HTML-safe escaping
    assert ap.read_package(ap.make_package("a\nb", key, PUBLIC), PUBLIC, "none") == "a\nb"


def test_generated_keys_work_end_to_end():
    private_pem, public_b64 = ap.generate_rsa_keypair(key_size=2048)
    assert private_pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
    blob = ap.compress_zlib(ap.make_package("payload", private_pem, public_b64))
    assert ap.read_package(blob, public_b64) == "payload"
    with pytest.raises(SignatureError):
        ap.read_package(blob, PUBLIC)


# ----------------------------------------------------------------------- fuzzing

_OUR_ERRORS = (RemoteProtocolError, SignatureError)


@given(st.binary(max_size=500), st.sampled_from(["zlib", "gzip", "auto", "none"]))
def test_fuzz_reader_on_random_bytes(blob, compression):
    try:
        ap.read_package(blob, PUBLIC, compression=compression, max_size=4096)
    except _OUR_ERRORS:
        pass


@given(st.integers(0, len(PACKAGE_ZLIB) - 1), st.integers(1, 255))
def test_fuzz_reader_on_corrupted_vector(position, flip):
    blob = bytearray(PACKAGE_ZLIB)
    blob[position] ^= flip
    try:
        data = ap.read_package(bytes(blob), PUBLIC)
    except _OUR_ERRORS:
        return
    # Only bits without meaning may change silently (e.g. the zlib FLEVEL hint).
    assert data == VALID["data"] and position < 2


@given(st.dictionaries(st.sampled_from(["data", "signature", "signingPublicKeyDigest", "x"]),
                       st.text(max_size=50) | st.integers() | st.none(), max_size=4))
def test_fuzz_reader_on_structured_packages(package):
    blob = ap.compress_zlib(json.dumps(package).encode())
    with pytest.raises(_OUR_ERRORS):
        ap.read_package(blob, PUBLIC)


def test_digest_definition_is_over_base64_text_not_der():
    der_digest = hashlib.sha256(base64.b64decode(PUBLIC)).hexdigest()
    assert der_digest != VALID["signing_public_key_digest_hex"]
