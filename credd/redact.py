"""Redaction of stored secrets in logs: `credd redact` and `RedactingFilter` for `logging`.

Beside each value itself, its encoded forms are concealed too (credd.forms:
base64, base64url, hex, URL and JSON escaping; with `deep=True`, `credd
redact --deep`, also its base64 inside a longer encoded string). Matching is
that of `credd.mask`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, NamedTuple

from credd.forms import form_patterns, forms
from credd.mask import Masker
from credd.refs import field_shadowed

if TYPE_CHECKING:
    from credd.client import Client

_BATCH = 2000  # references per get_many, well inside one frame


def encoded_forms(value: str, *, deep: bool = False) -> set[bytes]:
    """The value and the encodings it is likely to appear in."""
    return set(forms(value, deep=deep))


def redactor(values: Iterable[str], *, deep: bool = False, background: bool = False) -> Masker:
    """A masker for the values and their encoded forms (compiled on a thread with
    `background=True`: the first `feed` waits for it)."""
    return Masker(form_patterns(values, deep=deep, background=background))


class StoredSecret(NamedTuple):
    """A stored secret value and where it lives (`field` None: the entry's own value)."""

    name: str
    field: str | None
    value: str

    def __repr__(self) -> str:
        where = self.name if self.field is None else f"{self.name}/{self.field}"
        return f"StoredSecret({where!r}, <hidden>)"


def stored_secrets(client: Client) -> list[StoredSecret]:
    """Every secret value in the vault (primary values and secret fields), with its place.

    One get_many per batch of references (the agent audits each reveal); an
    entry with a field that another entry's name shadows (`NAME/FIELD` is an entry
    too: see credd.refs) is revealed on its own instead.
    """
    metas = client.list()
    names = {m.name for m in metas}
    places: dict[str, tuple[str, str | None]] = {}
    ambiguous = []
    for m in metas:
        if any(field_shadowed(m.name, f, names) for f in m.secret_fields):
            ambiguous.append(m.name)
            continue
        if m.has_value:
            places[m.name] = (m.name, None)
        places.update({f"{m.name}/{f}": (m.name, f) for f in m.secret_fields})
    refs = list(places)
    found = []
    for i in range(0, len(refs), _BATCH):
        found += [StoredSecret(*places[ref], value)
                  for ref, value in client.get_many(refs[i:i + _BATCH]).items()]
    for name in ambiguous:
        revealed = client.reveal(name)
        found.append(StoredSecret(name, None, revealed.value))
        found += [StoredSecret(name, f, v) for f, v in revealed.secret_fields.items()]
    return [s for s in found if s.value]


def stored_values(client: Client) -> list[str]:
    """Every secret value in the vault (see stored_secrets)."""
    return [s.value for s in stored_secrets(client)]


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

    def __init__(self, secrets: Iterable[str] | None = None, *, client: Client | None = None,
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
