"""Signing many authenticated packages with one network key, loading the key once.

``onehop.core.authpackage.make_package`` loads (and, in cryptography, fully validates)
the RSA private key on every call: about 0.3 s for a 4096-bit key, which made signing
200 remote lists take a minute. :class:`PackageSigner` loads the key once and writes
the same bytes as ``make_package`` (a test compares them, and the Psiphon vectors pin
the format). It can go once the core accepts a loaded key.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..core import canonicaljson
from ..core.authpackage import public_key_digest
from ..errors import LocalProtocolError, PackageReason, UsageReason
from .keys import KeyPair


class PackageSigner:
    """``sign(data)`` == ``make_package(data, private_key, public_key)``, key loaded once."""

    def __init__(self, pair: KeyPair) -> None:
        try:
            key = serialization.load_pem_private_key(pair.private_key.encode("ascii"), password=None)
        except (ValueError, TypeError) as exc:
            raise LocalProtocolError(UsageReason.INVALID_KEY, f"cannot load RSA private key: {exc}") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise LocalProtocolError(UsageReason.INVALID_KEY, "signing key is not RSA")
        self._key = key
        self._digest = public_key_digest(pair.public_key)

    def sign(self, data: str) -> bytes:
        signature = self._key.sign(data.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        data_json = canonicaljson.encode_string(data)
        if "\\" in data_json.replace("\\n", ""):
            raise LocalProtocolError(PackageReason.UNSTREAMABLE_DATA,
                                     "data needs JSON escapes Psiphon's streaming reader rejects")
        return ('{"data":' + data_json + ',"signingPublicKeyDigest":"' + self._digest
                + '","signature":"' + base64.b64encode(signature).decode("ascii") + '"}').encode("utf-8")
