"""Server entries against Psiphon's vectors (vectors/server_entry.json), plus fuzzing."""

import base64
import json
from datetime import datetime, UTC

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onehop.core import canonicaljson
from onehop.core import serverentry as se
from onehop.errors import LocalProtocolError, ServerEntryError, SignatureError
from tests.conftest import vector_cases

UNSIGNED = vector_cases("server_entry", kind="unsigned")
SIGNED = vector_cases("server_entry", kind="signed")[0]
PUBLIC = SIGNED["signing_public_key_b64"]
PRIVATE = SIGNED["signing_private_key_b64"]


def _hex(text: str | bytes) -> str:
    return (text.encode("utf-8") if isinstance(text, str) else text).hex()


def _entry_1_fields() -> dict:
    return json.loads(UNSIGNED[0]["json"])


# ----------------------------------------------------------------------- vectors

@pytest.mark.parametrize("case", UNSIGNED, ids=lambda c: c["name"])
def test_decode_vector(case):
    entry = se.decode_server_entry(case["encoded"])
    expected = json.loads(case["json"])
    assert entry.to_dict() == expected
    assert entry.ip_address == expected["ipAddress"]
    assert entry.ssh_port == expected["sshPort"]
    assert entry.ssh_obfuscated_port == expected["sshObfuscatedPort"]
    assert entry.capabilities == tuple(expected["capabilities"])
    assert entry.region == expected["region"]
    assert entry.effective_tag == case["tag"]
    assert entry.diagnostic_id == case["diagnostic_id"]
    assert bytes.fromhex(case["encoded"]).decode().startswith(case["encoded_text_prefix"] + " {")


@pytest.mark.parametrize("case", UNSIGNED, ids=lambda c: c["name"])
def test_encode_from_plain_fields_is_byte_exact(case):
    fields = json.loads(case["json"])  # stdlib parse: independent of our decoder
    assert se.struct_json(fields).decode("utf-8") == case["json"]
    assert se.encode_server_entry(fields) == case["encoded"]


@pytest.mark.parametrize("case", UNSIGNED, ids=lambda c: c["name"])
def test_tag_and_diagnostic_id(case):
    fields = json.loads(case["json"])
    tag = se.derive_tag(fields["ipAddress"], fields["webServerSecret"])
    assert tag == case["tag"]
    assert se.diagnostic_id(tag) == case["diagnostic_id"]
    assert se.diagnostic_id("short") == "<unknown>"


def test_accessors_and_protocols():
    entry = se.decode_server_entry(UNSIGNED[0]["encoded"])
    assert entry.ssh_username == "psiphon_2a107a9d443f61f0"
    assert entry.ssh_password.startswith("1ccfd3e6") and entry.ssh_host_key.startswith("AAAAB3Nza")
    assert entry.ssh_obfuscated_key.startswith("45c23b3a")
    assert entry.provider_id == "20587EF6042392F0"
    assert entry.configuration_version == 1
    assert entry.tag == "" and entry.signature == "" and entry.local_source == ""
    assert entry.disable_ossh_prefix is False
    assert se.supported_protocols(entry) == {"OSSH", "SSH"}
    assert se.has_ssh_api_requests(entry)
    legacy = se.decode_server_entry(UNSIGNED[2]["encoded"])
    assert not se.has_ssh_api_requests(legacy)
    assert legacy.web_server_port == "8080" and legacy.web_server_certificate.startswith("V9E7N")


def test_supported_protocols_need_capability_and_port():
    fields = _entry_1_fields()
    del fields["sshObfuscatedPort"]
    assert se.supported_protocols(se.ServerEntry(fields)) == {"SSH"}
    fields = _entry_1_fields()
    fields["capabilities"] = ["OSSH"]
    assert se.supported_protocols(se.ServerEntry(fields)) == {"OSSH"}


def test_legacy_prefix_used_only_with_certificate():
    fields = json.loads(UNSIGNED[2]["json"])
    del fields["webServerCertificate"]
    assert bytes.fromhex(se.encode_server_entry(fields)).startswith(b"0 0 0 0 {")


# ----------------------------------------------------------------------- unknown fields

def test_unknown_fields_kept_in_map_form_dropped_in_struct_form():
    fields = {**_entry_1_fields(), "x-future": {"b": [1, "<"]}, "aNewPort": 7}
    entry = se.decode_server_entry(_hex("0 0 0 0 " + json.dumps(fields)))
    assert entry.fields["x-future"]["b"] == (1, "<")
    again = se.decode_server_entry(se.encode_server_entry_fields(entry))
    assert again == entry and again.to_dict()["x-future"] == {"b": [1, "<"]}
    struct_only = se.decode_server_entry(se.encode_server_entry(entry))
    assert "x-future" not in struct_only.fields
    assert struct_only.to_dict() == _entry_1_fields()


def test_entry_is_immutable_and_hashable():
    entry = se.ServerEntry(_entry_1_fields())
    with pytest.raises(AttributeError):
        entry.fields = {}
    with pytest.raises(TypeError):
        entry.fields["region"] = "CA"
    assert hash(entry) == hash(se.ServerEntry(_entry_1_fields()))
    assert entry.with_fields({"region": "CA"}).region == "CA" and entry.region == "US"
    assert "region" not in entry.with_fields({"region": None}).fields


# ----------------------------------------------------------------------- validation

def _bad(mutate):
    fields = _entry_1_fields()
    mutate(fields)
    return _hex("0 0 0 0 " + json.dumps(fields))


@pytest.mark.parametrize("mutate, field", [
    (lambda f: f.pop("ipAddress"), "ipAddress"),
    (lambda f: f.update(ipAddress="192.0.2.300"), "ipAddress"),
    (lambda f: f.update(ipAddress="fe80::1%eth0"), "ipAddress"),
    (lambda f: f.update(ipAddress="010.1.1.1"), "ipAddress"),
    (lambda f: f.update(ipAddress=7), "ipAddress"),
    (lambda f: f.update(sshObfuscatedPort="4242"), "sshObfuscatedPort"),
    (lambda f: f.update(sshObfuscatedPort=0), "sshObfuscatedPort"),
    (lambda f: f.update(sshObfuscatedPort=65536), "sshObfuscatedPort"),
    (lambda f: f.update(sshObfuscatedPort=True), "sshObfuscatedPort"),
    (lambda f: f.update(sshPort=22.0), "sshPort"),
    (lambda f: f.update(meekServerPort=None), "meekServerPort"),
    (lambda f: f.update(capabilities="SSH"), "capabilities"),
    (lambda f: f.update(capabilities=["SSH", 1]), "capabilities"),
    (lambda f: f.update(sshUsername=["x"]), "sshUsername"),
    (lambda f: f.update(configurationVersion="1"), "configurationVersion"),
    (lambda f: f.update(disableOSSHPrefix="true"), "disableOSSHPrefix"),
    (lambda f: f.update(webServerPort="80a"), "webServerPort"),
    (lambda f: f.update(webServerPort=8080), "webServerPort"),
    (lambda f: f.update(webServerSecret="a b"), "webServerSecret"),
    (lambda f: f.update(localTimestamp="yesterday"), "localTimestamp"),
    (lambda f: f.update(localTimestamp="2026-02-30T00:00:00Z"), "localTimestamp"),
    (lambda f: f.update(localTimestamp="\u0662026-01-01T00:00:00Z"), "localTimestamp"),
    (lambda f: f.update(webServerPort="1" * 5000), "webServerPort"),
    (lambda f: f.update(webServerPort="\u0668\u0660"), "webServerPort"),
])
def test_invalid_fields_name_the_field(mutate, field):
    with pytest.raises(ServerEntryError) as info:
        se.decode_server_entry(_bad(mutate))
    assert info.value.field == field


@pytest.mark.parametrize("mutate, field", [
    (lambda f: f.update(sshUsername="x\ud800"), "sshUsername"),
    (lambda f: f.update(capabilities=["\udfff"]), "capabilities"),
    (lambda f: f.update(sshPort=2 ** 70), "sshPort"),
])
def test_invalid_programmatic_fields(mutate, field):
    fields = _entry_1_fields()
    mutate(fields)
    with pytest.raises(ServerEntryError) as info:
        se.ServerEntry(fields)
    assert info.value.field == field


def test_unknown_fields_with_surrogates_encode_as_go_would():
    entry = se.ServerEntry({**_entry_1_fields(), "x-new": "a\ud800"})
    assert se.decode_server_entry(se.encode_server_entry_fields(entry)).fields["x-new"] == "a\ufffd"


@pytest.mark.parametrize("line, field", [
    ("zz", "encoding"), ("abc", "encoding"), (_hex("0 0 0 {}"), "encoding"),
    (_hex(b"0 0 0 0 {\"ipAddress\":\"1.2.3.4\",\"r\":\"\xff\"}"), "encoding"),
    ("é", "encoding"), ("ab cd", "encoding"), ("0" * (se.MAX_ENCODED_LINE + 2), "encoding"),
    (_hex("0 0 0 0 [1]"), "json"), (_hex("0 0 0 0 {"), "json"), (_hex("0 0 0 0 NaN"), "json"),
    (_hex('0 0 0 0 {"ipAddress": "1.2.3.4", "n": 1e999}'), "json"),
    (_hex('0 0 0 0 {"ipAddress": "1.2.3.4", "n": ' + "[" * 900 + "]" * 900 + "}"), "json"),
])
def test_invalid_encodings(line, field):
    with pytest.raises(ServerEntryError) as info:
        se.decode_server_entry(line)
    assert info.value.field == field


def test_accepted_variants():
    assert se.decode_server_entry(UNSIGNED[0]["encoded"].upper()).ip_address == "192.0.2.10"
    assert se.decode_server_entry(" " + UNSIGNED[0]["encoded"] + "\n").ip_address == "192.0.2.10"
    assert se.decode_server_entry(UNSIGNED[0]["encoded"].encode()).ip_address == "192.0.2.10"
    v6 = se.decode_server_entry(_hex('0 0 0 0 {"ipAddress": "2001:db8::5"}'))
    assert v6.ip_address == "2001:db8::5" and se.supported_protocols(v6) == set()
    stamped = v6.with_local("EMBEDDED", se.rfc3339_timestamp(datetime(2026, 7, 1, 12, tzinfo=UTC)))
    assert stamped.local_timestamp == "2026-07-01T12:00:00Z"
    offset = v6.with_fields({"localTimestamp": "2026-07-01T12:00:00.123+02:00"})
    assert offset.local_timestamp.endswith("+02:00")
    with pytest.raises(LocalProtocolError):
        se.rfc3339_timestamp(datetime(2026, 7, 1))


# ----------------------------------------------------------------------- lists

def test_decode_server_list_collects_errors_and_keeps_going():
    good = [c["encoded"] for c in UNSIGNED]
    text = "\n".join([good[0], "", "nothex", good[1] + "\r", _hex("0 0 0 0 {}"), "", good[2], ""])
    entries, errors = se.decode_server_list(text)
    assert [e.ip_address for e in entries] == ["192.0.2.10", "198.51.100.20", "203.0.113.30"]
    assert [(e.field, e.message.split(":")[0]) for e in errors] == [("encoding", "line 3"), ("ipAddress", "line 5")]
    entries_b, errors_b = se.decode_server_list(text.encode("ascii") + b"\n\xff\xfe")
    assert entries_b == entries and len(errors_b) == 3


def test_server_list_round_trip():
    entries = [se.decode_server_entry(c["encoded"]) for c in UNSIGNED]
    text = se.encode_server_list(entries)
    assert text == "\n".join(c["encoded"] for c in UNSIGNED)
    assert se.decode_server_list(text) == (entries, [])


# ----------------------------------------------------------------------- signatures

def test_keypair_from_seed_matches_go_form():
    private, public = se.ed25519_keypair_from_seed(bytes.fromhex(SIGNED["private_key_seed_hex"]))
    assert (private, public) == (PRIVATE, PUBLIC)
    digest_id = base64.b64decode(SIGNED["signature"])[:8].hex()
    assert digest_id == SIGNED["public_key_id"]
    with pytest.raises(LocalProtocolError):
        se.ed25519_keypair_from_seed(b"short")


def test_signed_message_and_signature_match_vector():
    fields = canonicaljson.loads(SIGNED["fields_json_before_signing_excluding_signature"])
    assert se.signed_message(fields).decode("utf-8") == SIGNED["signed_message"]
    signed = se.sign_server_entry(fields, PRIVATE)
    assert signed["signature"] == SIGNED["signature"]
    assert canonicaljson.dumps(signed).decode("utf-8") == SIGNED["json_with_signature"]
    assert "signature" not in fields  # the input is not modified


def test_vector_signature_verifies_through_decode():
    entry = se.ServerEntry(canonicaljson.loads(SIGNED["json_with_signature"]))
    se.verify_server_entry_signature(entry, PUBLIC)
    relayed = se.decode_server_entry(se.encode_server_entry_fields(entry))
    se.verify_server_entry_signature(relayed, PUBLIC)
    # Client-local fields are outside the signature.
    se.verify_server_entry_signature(entry.with_fields({"localSource": "REMOTE", "localTimestamp": None}), PUBLIC)
    se.verify_server_entry_signature(entry.with_derived_tag(), PUBLIC)


def test_explicit_tag_is_signed_derived_tag_is_not():
    entry = se.ServerEntry(canonicaljson.loads(SIGNED["json_with_signature"]))
    tagged = entry.with_fields({"tag": "explicit"})
    with pytest.raises(SignatureError):
        se.verify_server_entry_signature(tagged, PUBLIC)
    re_signed = se.sign_server_entry(tagged, PRIVATE)
    se.verify_server_entry_signature(re_signed, PUBLIC)
    assert re_signed.with_derived_tag() is re_signed  # explicit tags are never replaced


@pytest.mark.parametrize("change", [
    {"region": "CA"}, {"x-futureField": "a<b>&d"}, {"sshPort": 23}, {"newField": 1},
])
def test_tampering_breaks_signature(change):
    entry = se.ServerEntry(canonicaljson.loads(SIGNED["json_with_signature"]))
    with pytest.raises(SignatureError, match="invalid signature"):
        se.verify_server_entry_signature(entry.with_fields(change), PUBLIC)


def test_signature_failures_are_specific():
    fields = canonicaljson.loads(SIGNED["json_with_signature"])
    other_public = se.ed25519_keypair_from_seed(bytes(32))[1]
    with pytest.raises(SignatureError, match="public key ID"):
        se.verify_server_entry_signature(fields, other_public)
    cases = [{k: v for k, v in fields.items() if k != "signature"}, {**fields, "signature": "!!"},
             {**fields, "signature": fields["signature"][:-8]}, {**fields, "signature": 5}]
    for bad in cases:
        with pytest.raises(SignatureError):
            se.verify_server_entry_signature(bad, PUBLIC)
    for key in ("", "notbase64!", base64.b64encode(b"x" * 31).decode()):
        with pytest.raises(LocalProtocolError):
            se.verify_server_entry_signature(fields, key)
    with pytest.raises(LocalProtocolError):
        se.sign_server_entry(fields, PUBLIC)  # 32 bytes is not the Go private form
    mismatched = base64.b64encode(base64.b64decode(PRIVATE)[:32] + bytes(32)).decode()
    with pytest.raises(LocalProtocolError):
        se.sign_server_entry(fields, mismatched)


# ----------------------------------------------------------------------- fuzzing

@given(st.text(max_size=200) | st.binary(max_size=200))
def test_fuzz_decode_raw_lines(line):
    try:
        se.decode_server_entry(line)
    except ServerEntryError:
        pass


@given(st.binary(max_size=300))
def test_fuzz_decode_hex_of_arbitrary_payload(payload):
    try:
        se.decode_server_entry((b"0 0 0 0 " + payload).hex())
    except ServerEntryError:
        pass


_known_names = st.sampled_from([name for name, _ in se.GO_FIELD_ORDER])
_any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(_known_names | st.text(max_size=8), _any_json, max_size=8),
       st.sampled_from(["1.2.3.4", "::1", "bad", None]))
def test_fuzz_decode_structured_json(fields, ip):
    if ip is not None:
        fields["ipAddress"] = ip
    try:
        entry = se.decode_server_entry(_hex("0 0 0 0 " + json.dumps(fields)))
    except ServerEntryError:
        return
    assert se.decode_server_entry(se.encode_server_entry_fields(entry)) == entry


@given(st.text(max_size=400))
def test_fuzz_decode_server_list_never_raises(text):
    entries, errors = se.decode_server_list(text)
    assert all(isinstance(e, ServerEntryError) for e in errors)


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=10)
_no_space = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=" "), max_size=8)
_valid_fields = st.fixed_dictionaries(
    {"ipAddress": st.ip_addresses().map(str)},
    optional={
        "sshPort": st.integers(1, 65535), "sshObfuscatedPort": st.integers(1, 65535),
        "sshUsername": _text, "sshObfuscatedKey": _text, "region": _text,
        "capabilities": st.lists(_text, max_size=4), "configurationVersion": st.integers(0, 2 ** 40),
        "disableOSSHPrefix": st.booleans(), "webServerSecret": _no_space, "webServerCertificate": _no_space,
    },
)


@given(_valid_fields)
def test_fuzz_struct_form_round_trip(fields):
    entry = se.ServerEntry(fields)
    decoded = se.decode_server_entry(se.encode_server_entry(entry))
    non_empty = {k: v for k, v in entry.to_dict().items() if v}  # Go omits empty values
    assert decoded.to_dict() == non_empty


@given(_valid_fields, st.binary(min_size=32, max_size=32))
def test_fuzz_sign_verify(fields, seed):
    private, public = se.ed25519_keypair_from_seed(seed)
    signed = se.sign_server_entry(se.ServerEntry(fields), private)
    se.verify_server_entry_signature(se.decode_server_entry(se.encode_server_entry_fields(signed)), public)

