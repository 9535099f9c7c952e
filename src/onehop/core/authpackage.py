"""Psiphon's authenticated data package (remote server lists, OSL payloads, upgrades).

A package is a JSON object ``{"data": ..., "signingPublicKeyDigest": ..., "signature":
...}``: ``data`` is the payload text, ``signature`` is base64 RSASSA-PKCS1-v1_5/SHA-256
over the UTF-8 bytes of ``data``, and ``signingPublicKeyDigest`` is base64 SHA-256 of
the *base64 text* of the signer's DER SubjectPublicKeyInfo key. On the wire the JSON is
zlib-compressed (server lists) or gzip-compressed (upgrades).

Reading is bounded: decompression stops at ``max_size`` bytes of output, so a
decompression bomb fails cleanly. Failures of the package are
:class:`~onehop.errors.RemoteProtocolError` (malformed) or
:class:`~onehop.errors.SignatureError` (wrong key or bad signature); unusable keys
handed in by the caller are :class:`~onehop.errors.LocalProtocolError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from typing import Literal
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from onehop.core import canonicaljson
from onehop.errors import LocalProtocolError, PackageReason, RemoteProtocolError, SignatureError, UsageReason

DEFAULT_MAX_SIZE = 64 * 1024 * 1024  # decompressed bytes
PACKAGE_MEMBERS = frozenset({"data", "signature", "signingPublicKeyDigest"})
Compression = Literal["zlib", "gzip", "auto", "none"]

_ZLIB_WBITS = 15
_GZIP_WBITS = 31
_GZIP_MAGIC = b"\x1f\x8b"


# ----------------------------------------------------------------------- keys

def public_key_digest(public_key_b64: str) -> str:
    """base64(SHA-256(ASCII of the base64 public key text)), as in the package."""
    return base64.b64encode(hashlib.sha256(public_key_b64.encode("ascii")).digest()).decode("ascii")


def load_private_key(key: str | bytes | rsa.RSAPrivateKey) -> rsa.RSAPrivateKey:
    """PEM (PKCS#1 or PKCS#8), DER bytes, or base64 DER text (Go's generator output).

    Loading and validating an RSA-4096 key costs about 0.3 s here: callers that sign many
    packages load the key once and pass the loaded key to ``make_package``.
    """
    if isinstance(key, rsa.RSAPrivateKey):
        return key
    if isinstance(key, str):
        key = key.encode("ascii") if key.lstrip().startswith("-----BEGIN") else _b64_or_local(key)
    try:
        if key.lstrip().startswith(b"-----BEGIN"):
            loaded = serialization.load_pem_private_key(key, password=None)
        else:
            loaded = serialization.load_der_private_key(key, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise LocalProtocolError(UsageReason.INVALID_KEY, f"cannot load RSA private key: {exc}") from None
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise LocalProtocolError(UsageReason.INVALID_KEY, "signing key is not RSA")
    return loaded


def _b64_or_local(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise LocalProtocolError(UsageReason.INVALID_KEY, "key is neither PEM nor base64 DER") from None


def _load_public_key(public_key_b64: str) -> rsa.RSAPublicKey:
    try:
        loaded = serialization.load_der_public_key(_b64_or_local(public_key_b64))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise LocalProtocolError(UsageReason.INVALID_KEY, f"cannot load RSA public key: {exc}") from None
    if not isinstance(loaded, rsa.RSAPublicKey):
        raise LocalProtocolError(UsageReason.INVALID_KEY, "unexpected signing public key type")
    return loaded


def public_key_b64_from_private(private_key: str | bytes) -> str:
    """The base64 DER SubjectPublicKeyInfo that client configs carry for this key."""
    der = load_private_key(private_key).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def generate_rsa_keypair(key_size: int = 4096, public_exponent: int = 65537) -> tuple[str, str]:
    """A new signing key pair: (PEM PKCS#1 private key, base64 DER public key).

    The one place in ``onehop.core`` that draws randomness itself: key material comes
    from cryptography's (OpenSSL's) generator. Call it from operator tooling only.
    """
    key = rsa.generate_private_key(public_exponent=public_exponent, key_size=key_size)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode("ascii")
    return pem, public_key_b64_from_private(pem)


# ----------------------------------------------------------------------- writing

def make_package(data: str, private_key: str | bytes | rsa.RSAPrivateKey, public_key_b64: str, *,
                 streamable: bool = True) -> bytes:
    """Sign ``data`` and return the package JSON exactly as Go's json.Marshal writes it.

    With ``streamable`` (default) data that Psiphon's streaming reader cannot handle
    (characters escaped as anything other than ``\\n``) is refused.
    """
    key = load_private_key(private_key)
    signature = key.sign(data.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    data_json = canonicaljson.encode_string(data)
    if streamable and "\\" in data_json.replace("\\n", ""):
        raise LocalProtocolError(PackageReason.UNSTREAMABLE_DATA,
                                 "data needs JSON escapes Psiphon's streaming reader rejects")
    return ('{"data":' + data_json
            + ',"signingPublicKeyDigest":"' + public_key_digest(public_key_b64)
            + '","signature":"' + base64.b64encode(signature).decode("ascii") + '"}').encode("utf-8")


def compress_zlib(package_json: bytes) -> bytes:
    return zlib.compress(package_json)


def compress_gzip(package_json: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=_GZIP_WBITS)
    return compressor.compress(package_json) + compressor.flush()


# ----------------------------------------------------------------------- reading

def _detect(blob: bytes) -> Compression:
    if blob.startswith(_GZIP_MAGIC):
        return "gzip"
    if len(blob) >= 2 and blob[0] & 0x0F == 8 and (blob[0] << 8 | blob[1]) % 31 == 0:
        return "zlib"
    return "none"


def _inflate_member(blob: bytes, wbits: int, budget: int) -> tuple[bytes, bytes]:
    """Inflate one stream; return (output, input left after it). Output <= budget."""
    d = zlib.decompressobj(wbits)
    out = bytearray()
    pending = blob
    try:
        while not d.eof:
            chunk = d.decompress(pending, budget + 1 - len(out))
            out += chunk
            if len(out) > budget:
                raise RemoteProtocolError(PackageReason.TOO_LARGE, f"decompressed package exceeds {budget} bytes")
            pending = d.unconsumed_tail
            if not chunk and not pending:
                break
    except zlib.error as exc:
        raise RemoteProtocolError(PackageReason.CORRUPT_COMPRESSION, str(exc)) from None
    if not d.eof:
        raise RemoteProtocolError(PackageReason.TRUNCATED, "compressed package is truncated")
    return bytes(out), d.unused_data


def decompress(blob: bytes, compression: Compression = "zlib", max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """Bounded decompression; ``auto`` sniffs gzip/zlib headers and falls back to none."""
    if compression == "auto":
        compression = _detect(blob)
    if compression == "none":
        if len(blob) > max_size:
            raise RemoteProtocolError(PackageReason.TOO_LARGE, f"package exceeds {max_size} bytes")
        return bytes(blob)
    if compression not in ("zlib", "gzip"):
        raise LocalProtocolError(UsageReason.BAD_ARGUMENT, f"unknown compression {compression!r}")
    if not blob:
        raise RemoteProtocolError(PackageReason.TRUNCATED, "compressed package is empty")
    wbits = _ZLIB_WBITS if compression == "zlib" else _GZIP_WBITS
    out, rest = _inflate_member(blob, wbits, max_size)
    while compression == "gzip" and rest:  # gzip allows concatenated members
        more, rest = _inflate_member(rest, wbits, max_size - len(out))
        out += more
    if rest:
        raise RemoteProtocolError(PackageReason.TRAILING_DATA, f"{len(rest)} bytes after the compressed package")
    return out


def decompress_chunks(chunks: Iterable[bytes], compression: Compression = "zlib",
                      max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """:func:`decompress` fed piece by piece (a file read in chunks), so the compressed
    package is never held whole; the output stays bounded by ``max_size``."""
    if compression not in ("zlib", "gzip"):
        raise LocalProtocolError(UsageReason.BAD_ARGUMENT,
                                 f"streamed compression must be zlib or gzip, not {compression!r}")
    wbits = _ZLIB_WBITS if compression == "zlib" else _GZIP_WBITS
    d, out, seen = zlib.decompressobj(wbits), bytearray(), False
    try:
        for pending in chunks:
            seen = seen or bool(pending)
            while pending:
                if d.eof:
                    if compression != "gzip":
                        raise RemoteProtocolError(PackageReason.TRAILING_DATA, "bytes after the compressed package")
                    d = zlib.decompressobj(wbits)  # gzip allows concatenated members
                out += d.decompress(pending, max_size + 1 - len(out))
                if len(out) > max_size:
                    raise RemoteProtocolError(PackageReason.TOO_LARGE, f"decompressed package exceeds {max_size} bytes")
                pending = d.unconsumed_tail or (d.unused_data if d.eof else b"")
    except zlib.error as exc:
        raise RemoteProtocolError(PackageReason.CORRUPT_COMPRESSION, str(exc)) from None
    if not seen:
        raise RemoteProtocolError(PackageReason.TRUNCATED, "compressed package is empty")
    if not d.eof:
        raise RemoteProtocolError(PackageReason.TRUNCATED, "compressed package is truncated")
    return bytes(out)


def _parse_package(package_json: bytes) -> dict[str, str]:
    try:
        package = canonicaljson.loads(package_json)
    except RemoteProtocolError as exc:
        raise RemoteProtocolError(PackageReason.INVALID_PACKAGE, f"package is not JSON: {exc.detail}") from None
    if not isinstance(package, dict):
        raise RemoteProtocolError(PackageReason.INVALID_PACKAGE, "package is not a JSON object")
    if set(package) != PACKAGE_MEMBERS:
        raise RemoteProtocolError(PackageReason.INVALID_PACKAGE,
                                  f"package members must be exactly {sorted(PACKAGE_MEMBERS)}")
    for name in PACKAGE_MEMBERS:
        if not isinstance(package[name], str):
            raise RemoteProtocolError(PackageReason.INVALID_PACKAGE, f"package member {name!r} is not a string")
    return package


def _decode_b64_member(package: dict[str, str], name: str) -> bytes:
    try:
        return base64.b64decode(package[name], validate=True)
    except (binascii.Error, ValueError):
        raise RemoteProtocolError(PackageReason.INVALID_PACKAGE, f"package member {name!r} is not base64") from None


def verify_package_json(package_json: bytes, public_key_b64: str) -> str:
    """Verify an uncompressed package; return its ``data``."""
    public_key = _load_public_key(public_key_b64)
    package = _parse_package(package_json)
    digest = _decode_b64_member(package, "signingPublicKeyDigest")
    signature = _decode_b64_member(package, "signature")
    # The digest is compared before any RSA work, as Psiphon does.
    if digest != hashlib.sha256(public_key_b64.encode("ascii")).digest():
        raise SignatureError("unexpected signing public key digest")
    try:
        public_key.verify(signature, package["data"].encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise SignatureError("RSA verification error: signature does not match data") from None
    return package["data"]


def read_package_chunks(chunks: Iterable[bytes], public_key_b64: str, compression: Compression = "zlib",
                        max_size: int = DEFAULT_MAX_SIZE) -> str:
    """:func:`read_package` for a package that arrives in pieces (read from a file)."""
    return verify_package_json(decompress_chunks(chunks, compression, max_size), public_key_b64)


def read_package(blob: bytes, public_key_b64: str, compression: Compression = "zlib",
                 max_size: int = DEFAULT_MAX_SIZE) -> str:
    """Decompress (bounded), parse and verify a package; return the authenticated data."""
    return verify_package_json(decompress(blob, compression, max_size), public_key_b64)
