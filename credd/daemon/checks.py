"""The last result of each entry's check (`credd verify`), kept by the agent for `show`,
the TUI and `due`.

Checks run in the client, like `credd run` (docs/lifecycle.md says why); the client then
reports the outcome (`record_verification`). The agent keeps the last one per entry in
`checks.json` in its state directory (0600, replaced atomically): keyed by the name's HMAC
under the vault's audit key (as in the audit trail), so the file names no entry, and
holding the outcome, exit status, time and duration only: never a check's output, which
may show more than its author meant to keep.

A renamed entry starts without a result (its HMAC is new); `purge` does not scrub the
old one, which then matches no name. Reads and writes happen on the writer thread.
"""

from __future__ import annotations

import os

import msgspec

from credd.files import write_private
from credd.protocol import Verification

from .audit import name_hmac

FILE_NAME = "checks.json"
_decoder = msgspec.json.Decoder(dict[str, Verification])


class CheckBook:
    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, FILE_NAME)

    def read(self) -> dict[str, Verification]:
        """Every result kept, by name HMAC ({} without a file, or an unreadable one)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}
        with os.fdopen(fd, "rb") as f:
            try:
                return _decoder.decode(f.read())
            except msgspec.DecodeError:
                return {}  # damaged: the next result starts it afresh

    def results(self, key: bytes, names: list[str]) -> dict[str, Verification]:
        """The results kept for these names, by name."""
        kept = self.read()
        if not kept:
            return {}
        found = ((name, kept.get(name_hmac(key, name))) for name in names)
        return {name: result for name, result in found if result is not None}

    def record(self, key: bytes, name: str, result: Verification) -> None:
        kept = self.read()
        kept[name_hmac(key, name)] = result
        write_private(self.path, msgspec.json.encode(kept), force=True)
