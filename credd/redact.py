"""Redaction of stored secrets in logs: `credd redact` and `RedactingFilter` for `logging`.

Beside each value itself, its common encodings are concealed too: base64
of the value (standard and URL-safe alphabets; padding may follow) and URL
encoding (`quote` and `quote_plus`). With `deep=True` (`credd redact
--deep`) also the value's base64 *inside a longer encoded string*, such as
`Authorization: Basic base64(user:secret)`: the stable middle of its base64
at each of the three byte alignments. That triples the patterns, and so the
set-up time for large vaults. Matching is that of `credd.mask`.
"""

from __future__ import annotations

import logging
import re
from binascii import b2a_base64
from collections.abc import Iterable
from typing import IO

from credd.mask import MIN_LENGTH, Masker, Patterns
from credd.refs import field_lookup, shadowed

_BATCH = 2000  # references per get_many, well inside one frame
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def encoded_forms(value: str, *, deep: bool = False) -> set[bytes]:
    """The value and the encodings it is likely to appear in."""
    raw = value.encode()
    forms = {raw}
    if not _UNRESERVED.fullmatch(value):  # otherwise URL encoding leaves it as it is
        from urllib.parse import quote, quote_plus
        forms |= {quote(value, safe="").encode(), quote(value).encode(),
                  quote_plus(value).encode()}
    # URL-safe base64 is standard base64 with -_ for +/ (what base64.urlsafe_b64encode does)
    text = b2a_base64(raw, newline=False).rstrip(b"=")
    forms.add(text)
    forms.add(text.translate(_URLSAFE))
    for shift in range(3) if deep else ():
        # inside a longer encoded string the characters that also carry bits of
        # the unknown neighbours differ; the middle is the same at each alignment
        text = b2a_base64(b"\0" * shift + raw, newline=False)
        middle = text[(shift * 4 + 2) // 3: len(text) - 4]
        forms.add(middle)
        forms.add(middle.translate(_URLSAFE))
    shortest = max(MIN_LENGTH, min(len(raw), 8))
    return {f for f in forms if len(f) >= shortest}


def redactor(values: Iterable[str], *, deep: bool = False, background: bool = False) -> Masker:
    """A masker for the values and their encoded forms (compiled on a thread with
    `background=True`: the first `feed` waits for it)."""
    forms: set[bytes] = set()
    add = forms.add
    for value in values:
        raw = value.encode()
        if len(raw) < MIN_LENGTH:
            continue
        if deep or len(raw) < 8 or not _UNRESERVED.fullmatch(value):
            forms |= encoded_forms(value, deep=deep)
            continue
        # the usual token: what encoded_forms gives, without its checks (each form is long
        # enough, and URL encoding leaves the value as it is)
        add(raw)
        text = b2a_base64(raw, newline=False).rstrip(b"=")
        add(text)
        add(text.translate(_URLSAFE))
    return Masker(Patterns(forms, background=background))


def stored_values(client) -> list[str]:
    """Every secret value in the vault (primary values and secret fields).

    One get_many per batch of references; an entry whose own name would be read
    as a field of another entry (see credd.refs) is revealed on its own instead.
    """
    metas = client.list()
    fields_of = field_lookup(metas)
    refs, ambiguous = [], []
    for m in metas:
        if shadowed(m.name, fields_of):
            ambiguous.append(m.name)
            continue
        if m.has_value:
            refs.append(m.name)
        refs.extend(f"{m.name}/{f}" for f in m.secret_fields)
    values: list[str] = []
    for i in range(0, len(refs), _BATCH):
        values.extend(client.get_many(refs[i:i + _BATCH]).values())
    for name in ambiguous:
        revealed = client.reveal(name)
        values.append(revealed.value)
        values.extend(revealed.secret_fields.values())
    return [v for v in values if v]


def redact_stream(src: IO[bytes], dst: IO[bytes], masker: Masker, chunk: int = 1 << 20) -> None:
    """Copy src to dst with every secret concealed, in bounded memory.

    Each read returns what is there (up to `chunk`) and its masked part is
    written at once, so `tail -f log | credd redact` shows lines as they come.
    """
    read = getattr(src, "read1", src.read)
    while data := read(chunk):
        out = masker.feed(data)
        if out:
            dst.write(out)
            dst.flush()
    dst.write(masker.flush())
    dst.flush()


class RedactingFilter(logging.Filter):
    """A logging filter that conceals secrets in messages, arguments and tracebacks.

        logging.getLogger().addFilter(credd.RedactingFilter())          # every stored secret
        handler.addFilter(credd.RedactingFilter(["s3cr3t-value"]))      # just these

    Without `secrets` it loads every stored value from the agent once
    (CREDD_SOCK); call `refresh()` after secrets change.
    """

    def __init__(self, secrets: Iterable[str] | None = None, *, client=None,
                 deep: bool = False) -> None:
        super().__init__()
        self._fixed = None if secrets is None else list(secrets)
        self._client, self._deep = client, deep
        self.refresh()

    def __repr__(self) -> str:
        return f"RedactingFilter(<{self._masker.max_hold + 1}-byte longest secret>)"

    def refresh(self) -> None:
        values = self._fixed
        if values is None:
            from credd.client import Client
            client = self._client or Client(client_name="credd-redact")
            values = stored_values(client)
        self._masker = redactor(values, deep=self._deep)

    def _clean(self, text: str) -> str:
        return self._masker.mask(text.encode("utf-8", "surrogatepass")).decode(
            "utf-8", "surrogatepass")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self._clean(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._clean(record.exc_text)
            record.exc_info = None  # the formatter would render the original again
        if record.stack_info:
            record.stack_info = self._clean(record.stack_info)
        return True
