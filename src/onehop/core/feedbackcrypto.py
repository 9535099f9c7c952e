"""Psiphon's feedback encryption: AES-128-CBC + HMAC-SHA256, both keys wrapped with RSA-OAEP.

A blob is a JSON object of five standard-base64 strings (the format of the operators'
FeedbackDecryptor and of psiphon-tunnel-core's ``encryptFeedback``):

* ``iv``: 16 random bytes; ``contentCiphertext``: AES-128-CBC(K_enc, iv, PKCS#7(plaintext))
* ``contentMac``: HMAC-SHA256(K_mac, iv || contentCiphertext); K_enc and K_mac are 16 bytes
* ``wrappedEncryptionKey`` / ``wrappedMacKey``: RSA-OAEP (SHA-1, MGF1-SHA-1, empty label)
  of K_enc / K_mac under the feedback public key (base64 DER SubjectPublicKeyInfo).

Pure: the symmetric keys and the IV come from the caller's ``random_bytes``; only the
OAEP padding seed is drawn by cryptography (OpenSSL), which offers no way to pass one.
Decryption is strict and bounded: a blob is parsed completely, the MAC key is unwrapped
and the MAC checked (in constant time) before the encryption key is unwrapped or any
ciphertext is decrypted. Every failure of the blob is a
:class:`~onehop.errors.RemoteProtocolError` whose ``reason`` is one of
``too_large``, ``invalid_blob``, ``foreign_key``, ``bad_mac``, ``bad_padding``; an
unusable key handed in by the caller is a :class:`~onehop.errors.LocalProtocolError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from onehop.errors import FeedbackReason, LocalProtocolError, RemoteProtocolError, UsageReason

KEY_SIZE = 16
IV_SIZE = 16
MAC_SIZE = 32
BLOCK_SIZE = 16
#: Blobs larger than this are refused before parsing (Psiphon's diagnostics are a few
#: hundred KiB at most; the operators' uploads bucket should never hold more).
DEFAULT_MAX_BLOB_SIZE = 8 * 1024 * 1024
BLOB_FIELDS = ("iv", "contentCiphertext", "wrappedEncryptionKey", "contentMac", "wrappedMacKey")

RandomBytes = Callable[[int], bytes]


@dataclass(frozen=True)
class FeedbackBlob:
    """A parsed (not yet authenticated) blob."""

    iv: bytes
    content_ciphertext: bytes
    wrapped_encryption_key: bytes
    content_mac: bytes
    wrapped_mac_key: bytes


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


# ----------------------------------------------------------------------- keys

def load_public_key(public_key_b64: str) -> rsa.RSAPublicKey:
    """The RSA key of a base64 DER SubjectPublicKeyInfo (FeedbackEncryptionPublicKey)."""
    try:
        der = base64.b64decode(public_key_b64.strip(), validate=True)
        key = serialization.load_der_public_key(der)
    except (binascii.Error, ValueError, UnsupportedAlgorithm) as exc:
        raise LocalProtocolError(UsageReason.INVALID_KEY, f"cannot load the feedback public key: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise LocalProtocolError(UsageReason.INVALID_KEY, "the feedback public key is not RSA")
    return key


def load_private_key(key: str | bytes) -> rsa.RSAPrivateKey:
    """PEM (PKCS#1 or PKCS#8), DER bytes, or base64 DER text."""
    if isinstance(key, str):
        key = key.encode("ascii", "replace")
    try:
        if key.lstrip().startswith(b"-----BEGIN"):
            loaded = serialization.load_pem_private_key(key, password=None)
        else:
            loaded = serialization.load_der_private_key(_b64_or_raw(key), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise LocalProtocolError(UsageReason.INVALID_KEY, f"cannot load the feedback private key: {exc}") from None
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise LocalProtocolError(UsageReason.INVALID_KEY, "the feedback private key is not RSA")
    return loaded


def _b64_or_raw(key: bytes) -> bytes:
    try:
        return base64.b64decode(b"".join(key.split()), validate=True)
    except (binascii.Error, ValueError):
        return key


def public_key_b64(private_key: rsa.RSAPrivateKey) -> str:
    der = private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


# ----------------------------------------------------------------------- encrypting

def encrypt(plaintext: bytes | str, public_key_b64: str, random_bytes: RandomBytes) -> bytes:
    """The blob JSON (UTF-8) for ``plaintext``, in Psiphon's field order."""
    if isinstance(plaintext, str):
        plaintext = plaintext.encode("utf-8")
    public_key = load_public_key(public_key_b64)
    enc_key, mac_key, iv = random_bytes(KEY_SIZE), random_bytes(KEY_SIZE), random_bytes(IV_SIZE)
    if not (len(enc_key) == len(mac_key) == KEY_SIZE and len(iv) == IV_SIZE):
        raise LocalProtocolError(UsageReason.BAD_ARGUMENT, "random_bytes returned the wrong number of bytes")
    padder = sym_padding.PKCS7(BLOCK_SIZE * 8).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    mac = hmac.new(mac_key, iv + ciphertext, hashlib.sha256).digest()
    fields = {
        "iv": iv, "contentCiphertext": ciphertext,
        "wrappedEncryptionKey": public_key.encrypt(enc_key, _oaep()),
        "contentMac": mac, "wrappedMacKey": public_key.encrypt(mac_key, _oaep()),
    }
    encoded = {name: base64.b64encode(value).decode("ascii") for name, value in fields.items()}
    return json.dumps(encoded, separators=(",", ":")).encode("ascii")


# ----------------------------------------------------------------------- parsing

def _invalid(detail: str) -> RemoteProtocolError:
    return RemoteProtocolError(FeedbackReason.INVALID_BLOB, detail)


def _load_json_object(blob: bytes | str, max_size: int) -> dict[str, Any]:
    if len(blob) > max_size:
        raise RemoteProtocolError(FeedbackReason.TOO_LARGE, f"feedback blob of {len(blob)} bytes exceeds {max_size}")
    try:
        text = blob.decode("utf-8") if isinstance(blob, (bytes, bytearray)) else blob
        value = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _invalid(f"not JSON: {str(exc)[:120]}") from None
    if not isinstance(value, dict):
        raise _invalid("not a JSON object")
    return value


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _member(value: dict[str, Any], name: str) -> bytes:
    field = value.get(name)
    if not isinstance(field, str):
        raise _invalid(f"member {name!r} is missing or not a string")
    try:
        return base64.b64decode(field, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"member {name!r} is not standard base64") from None


def parse_blob(blob: bytes | str, max_size: int = DEFAULT_MAX_BLOB_SIZE) -> FeedbackBlob:
    """Parse and size-check a blob (nothing is authenticated yet). Unknown members are
    ignored, as the operators' Python decryptor ignores them."""
    value = _load_json_object(blob, max_size)
    parts = {name: _member(value, name) for name in BLOB_FIELDS}
    if len(parts["iv"]) != IV_SIZE:
        raise _invalid(f"iv must be {IV_SIZE} bytes, not {len(parts['iv'])}")
    if len(parts["contentMac"]) != MAC_SIZE:
        raise _invalid(f"contentMac must be {MAC_SIZE} bytes, not {len(parts['contentMac'])}")
    ciphertext = parts["contentCiphertext"]
    if not ciphertext or len(ciphertext) % BLOCK_SIZE:
        raise _invalid(f"contentCiphertext length {len(ciphertext)} is not a positive multiple of 16")
    return FeedbackBlob(parts["iv"], ciphertext, parts["wrappedEncryptionKey"], parts["contentMac"],
                        parts["wrappedMacKey"])


# ----------------------------------------------------------------------- decrypting

def _unwrap(private_key: rsa.RSAPrivateKey, wrapped: bytes, which: str) -> bytes:
    if len(wrapped) != (private_key.key_size + 7) // 8:
        raise RemoteProtocolError(FeedbackReason.FOREIGN_KEY, f"wrapped {which} key does not fit this key "
                                  f"({len(wrapped)} bytes): encrypted for another feedback key?")
    try:
        key = private_key.decrypt(wrapped, _oaep())
    except ValueError:
        raise RemoteProtocolError(FeedbackReason.FOREIGN_KEY, f"cannot unwrap the {which} key: "
                                  "encrypted for another feedback key, or corrupted") from None
    if len(key) != KEY_SIZE:
        raise RemoteProtocolError(FeedbackReason.INVALID_BLOB,
                                  f"unwrapped {which} key is {len(key)} bytes, not {KEY_SIZE}")
    return key


def authenticate(parsed: FeedbackBlob, private_key: rsa.RSAPrivateKey) -> bytes:
    """Check the MAC; return the (still wrapped) encryption key's unwrapped value only after."""
    mac_key = _unwrap(private_key, parsed.wrapped_mac_key, "MAC")
    expected = hmac.new(mac_key, parsed.iv + parsed.content_ciphertext, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, parsed.content_mac):
        raise RemoteProtocolError(FeedbackReason.BAD_MAC, "content MAC does not match: the blob was altered")
    return _unwrap(private_key, parsed.wrapped_encryption_key, "encryption")


def decrypt(blob: bytes | str, private_key: rsa.RSAPrivateKey | str | bytes,
            max_size: int = DEFAULT_MAX_BLOB_SIZE) -> bytes:
    """The plaintext of an authentic blob; RemoteProtocolError otherwise (see module doc)."""
    key = private_key if isinstance(private_key, rsa.RSAPrivateKey) else load_private_key(private_key)
    parsed = parse_blob(blob, max_size)
    enc_key = authenticate(parsed, key)
    decryptor = Cipher(algorithms.AES(enc_key), modes.CBC(parsed.iv)).decryptor()
    padded = decryptor.update(parsed.content_ciphertext) + decryptor.finalize()
    return _unpad(padded)


def _unpad(padded: bytes) -> bytes:
    count = padded[-1]
    if not 1 <= count <= BLOCK_SIZE or padded[-count:] != bytes([count]) * count:
        raise RemoteProtocolError(FeedbackReason.BAD_PADDING, "invalid PKCS#7 padding after an authentic MAC")
    return padded[:-count]
