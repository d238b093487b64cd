"""Certificates in what is stored: their expiry becomes the entry's, subject and issuer are shown.

When a `set` (or the end of a rotation) writes a value or field holding PEM certificates
(`-----BEGIN CERTIFICATE-----`), the agent reads them with `cryptography` (which it has
loaded anyway; `credd get` never comes here) and writes, in the same request:

- `expires`: the earliest `notAfter` of every certificate found (a chain is as good as its
  first certificate to expire), unless the request gives an expiry itself;
- two plain fields, `cert_subject` and `cert_issuer`, of that certificate (RFC 4514).

A block that does not parse is passed over (its text is stored as given); nothing of a
certificate is logged. Certificates are public: the fields are plain, not secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import msgspec

from credd.protocol import Field, Set

MARKER = "-----BEGIN CERTIFICATE-----"
FIELDS = ("cert_subject", "cert_issuer")


class CertFacts(NamedTuple):
    not_after: float                 # unix time
    subject: str
    issuer: str


def earliest(texts: Iterable[str]) -> CertFacts | None:
    """The facts of the first certificate to expire among those in `texts`."""
    found = [facts for text in texts if MARKER in text for facts in _read(text)]
    return min(found, default=None)


def _read(text: str) -> list[CertFacts]:
    from cryptography import x509
    try:
        certs = x509.load_pem_x509_certificates(text.encode("utf-8", "surrogatepass"))
    except ValueError:
        return []
    return [CertFacts(c.not_valid_after_utc.timestamp(), c.subject.rfc4514_string(),
                      c.issuer.rfc4514_string()) for c in certs]


def holds_certificate(value: str) -> bool:
    return MARKER in value


def annotated(request: Set) -> Set:
    """`request` with the expiry and fields its certificates give (itself when none)."""
    fields = request.fields or []
    facts = earliest([request.value or "", *(f.value for f in fields)])
    if facts is None:
        return request
    kept = [f for f in fields if f.name not in FIELDS]
    return msgspec.structs.replace(
        request, expires=facts.not_after if request.expires is None else request.expires,
        fields=[*kept, Field(name=FIELDS[0], value=facts.subject, secret=False),
                Field(name=FIELDS[1], value=facts.issuer, secret=False)])
