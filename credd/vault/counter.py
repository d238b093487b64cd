"""The rollback counter: the newest vault generation seen, kept outside the vault file.

It is written after every commit, so it must be cheap: the record is
overwritten in place (one `pwrite` of a fixed-width line), not written to a
temporary file and renamed over the old one, which on ext4 costs ~0.4 ms
(rename-over starts writeback). No fsync: after a crash the counter may lag
one write behind, never run ahead.

The line is `<20-digit generation> <CRC-32 of the digits, hex>`. A reader that
sees a torn or damaged record, or no file, gets 0: fewer rollbacks detected,
never a false alarm (zero-padding means a mix of two records cannot read
larger than either). The first format, bare digits, is still read.
"""

from __future__ import annotations

import os
import zlib

_MAX_RECORD = 64


def remembered(path: str | None) -> int:
    """The generation recorded at `path`; 0 when there is none or it cannot be trusted."""
    if path is None:
        return 0
    try:
        with open(path, "rb") as f:
            line = f.read(_MAX_RECORD).split(b"\n", 1)[0]
    except OSError:
        return 0
    digits, _, check = line.partition(b" ")
    if not digits.isdigit():  # bytes: ASCII digits only
        return 0
    if check and check != b"%08x" % zlib.crc32(digits):
        return 0
    return int(digits)


def remember(path: str | None, generation: int) -> None:
    """Record `generation` at `path` (created 0600); errors are swallowed.

    The write is already committed when this runs, so failing now would
    misreport it; the counter only lags (fewer rollbacks detected).
    """
    if path is None:
        return
    digits = b"%020d" % generation
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.pwrite(fd, digits + b" %08x\n" % zlib.crc32(digits), 0)
        finally:
            os.close(fd)
    except OSError:
        pass
