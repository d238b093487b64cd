""""Did you mean": the name a person probably meant, for a not-found error.

The agent computes it because only the agent knows the names; handlers.py
calls `closest` with the entries of the very store the request was answered
from, so a name the caller may not see is never suggested as long as that
store shows only what the caller may see (a grant's scope must narrow the
store before this is called, never after).

A miss must stay cheap (helpers such as the keyring backend miss on purpose,
and this runs on the agent's event loop), so only the WINDOW names nearest in
name order are compared: a typo past the first characters keeps a name among
its neighbours. On the 2-core machine a miss costs ~1.1 ms whatever the size of
the vault (names alike enough to be compared in full cost ~9 us each; 1,024 of
them took ~11 ms, all of a 100,000-entry vault ~300 ms); an entry with one
character dropped anywhere in its name was guessed 135 times in 200 in a
100,000-entry vault, every time in a vault of 100.
"""

from __future__ import annotations

import bisect
import difflib
import operator
from collections.abc import Iterable, Sequence

from credd.protocol import EntryMeta

WINDOW = 128
#: difflib's ratio a candidate needs: 0.8 keeps `githb/token` → `github/token` and drops
#: look-alikes that only share a structure (`aws/abcdefg/tokn` → `aws/bcgt/token`).
CUTOFF = 0.8
_NAME = operator.attrgetter("name")


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like `word`, if one is close enough (never `word` itself)."""
    slack = max(2, len(word) // 4)  # difflib's ratio needs similar lengths anyway
    alike = [c for c in candidates if c != word and abs(len(c) - len(word)) <= slack]
    found = difflib.get_close_matches(word, alike, n=1, cutoff=CUTOFF)
    return found[0] if found else None


def near_names(entries: Sequence[EntryMeta], name: str) -> list[str]:
    """The names of the WINDOW entries around where `name` sorts (`entries` is sorted)."""
    if len(entries) <= WINDOW:
        return [e.name for e in entries]
    at = bisect.bisect_left(entries, name, key=_NAME)
    start = min(max(0, at - WINDOW // 2), len(entries) - WINDOW)
    return [e.name for e in entries[start:start + WINDOW]]
