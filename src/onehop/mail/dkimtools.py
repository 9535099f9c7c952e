"""DKIM with dkimpy: signing our replies and (optionally) verifying requests.

Signing is pure (the key is a parameter): rsa-sha256, relaxed/relaxed, over From, To,
Subject, Date, Message-ID, the MIME headers and the threading headers. Verifying needs
DNS (blocking: run it in a thread); ``dnsfunc`` replaces the lookup in tests. A request
passes only with a valid signature whose ``d=`` is the From domain or a parent of it
(relaxed alignment, as DMARC): any signature at all would let a forger sign with their
own domain. dkimpy logs message headers at debug level, so it gets a silent logger.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..errors import ConfigError, ConfigProblem
from .dkimkey import DkimKey

SIGNED_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"mime-version",
                  b"content-type", b"content-transfer-encoding", b"content-language",
                  b"in-reply-to", b"references", b"auto-submitted")
MAX_SIGNATURES_CHECKED = 5
MIN_KEY_BITS = 1024

_QUIET = logging.getLogger("onehop.mail.dkimpy")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
_QUIET.disabled = True


def load_dkim_key(path: str, selector: str, domain: str, flag: str = "--dkim-key") -> DkimKey:
    """Read an RSA private key (PEM, PKCS#1 or PKCS#8); ConfigError naming ``flag``."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError([ConfigProblem(flag, f"cannot read {path}: {exc.strerror}")]) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError([ConfigProblem(flag, f"not an unencrypted PEM private key ({exc})")]) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError([ConfigProblem(flag, "must be an RSA key (rsa-sha256)")])
    if key.key_size < MIN_KEY_BITS:
        raise ConfigError([ConfigProblem(flag, f"{key.key_size}-bit key: at least {MIN_KEY_BITS} "
                                               "(2048 recommended)")])
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    return DkimKey(selector, domain.lower(), pem)


def public_key_record(key: DkimKey) -> bytes:
    """The DNS TXT record to publish at ``<selector>._domainkey.<domain>``."""
    private = serialization.load_pem_private_key(key.private_key_pem, password=None)
    der = private.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def sign(message: bytes, key: DkimKey) -> bytes:
    """``message`` with a DKIM-Signature header in front."""
    signer = dkim.DKIM(message, logger=_QUIET, signature_algorithm=b"rsa-sha256", linesep=b"\r\n")
    header = signer.sign(key.selector.encode("ascii"), key.domain.encode("ascii"), key.private_key_pem,
                         canonicalize=(b"relaxed", b"relaxed"), include_headers=list(SIGNED_HEADERS))
    return header + message


def verify_aligned(message: bytes, from_domain: str,
                   dnsfunc: Callable | None = None, timeout: float = 5.0) -> bool:
    """True if one of the first few signatures verifies and its d= aligns with From."""
    try:
        verifier = dkim.DKIM(message, logger=_QUIET, timeout=timeout)
        count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    except Exception:  # dkimpy's parser on hostile input: no signature we can use
        return False
    kwargs = {"dnsfunc": dnsfunc} if dnsfunc is not None else {}
    for idx in range(min(count, MAX_SIGNATURES_CHECKED)):
        try:
            ok = verifier.verify(idx=idx, **kwargs)
        except Exception:  # DKIMException, DNS errors, malformed tags: this one fails
            continue
        domain = (verifier.domain or b"").decode("ascii", "replace").lower()
        if ok and aligned(domain, from_domain):
            return True
    return False


def aligned(signing_domain: str, from_domain: str) -> bool:
    d, f = signing_domain.strip(".").lower(), from_domain.strip(".").lower()
    return bool(d) and "." in d and (f == d or f.endswith("." + d))
