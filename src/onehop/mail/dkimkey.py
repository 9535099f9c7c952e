"""The operator's DKIM signing key, as the options carry it and ``dkimtools`` signs with it.

A module of its own so that the options (read at every ``onehop`` start) and the signer
(which loads dkimpy and cryptography) share the type without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DkimKey:
    """The operator's signing key for replies (see dkimtools)."""

    selector: str
    domain: str
    private_key_pem: bytes  # PKCS#1 PEM, as dkimpy reads it

    def __repr__(self) -> str:  # never print the key
        return f"DkimKey(selector={self.selector!r}, domain={self.domain!r})"
