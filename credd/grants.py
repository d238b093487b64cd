"""Grants: access the owner lends to a session or a sandbox uid, and what it allows.

A grant (`protocol.Grant`, the record) names entries by pattern, says how they
may be used (its mode), and lasts until it expires or is revoked. This module
holds the rules that read it, with no I/O: validating a new grant, matching
names and commands, deciding whether one grant narrows another, and `Policy`,
what a connection bound to grants may do. docs/grants.md is the user's view.

Patterns are exact names or globs whose only wildcard is `*`, which matches any
run of characters, `/` included: `stripe/*` covers every entry under `stripe/`,
however deep, which is what a person means by "stripe's keys". No other
character is special, so a pattern says plainly what it covers.

Modes are ordered: `use` (run commands with the values; never receive one) <
`read` (receive covered values) < `write` (also change covered entries). The
owner, bound to no grant, is above them all. Stdlib, msgspec and
credd.protocol only: the agent, the CLI and the TUI all import it.
"""

from __future__ import annotations

import re
import secrets
import shlex
import time
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Literal

from credd.errors import BadRequest
from credd.protocol import EntryMeta, Grant, GrantMode, tag_of

__all__ = [
    "OWNER_POLICY",
    "USES",
    "Grant",
    "Mode",
    "Policy",
    "ended",
    "make_grant",
    "narrowing",
    "new_id",
    "pattern_within",
    "spent",
]

Mode = Literal["use", "read", "write", "owner"]
RANK: dict[str, int] = {"use": 0, "read": 1, "write": 2, "owner": 3}
MODES: tuple[GrantMode, ...] = ("use", "read", "write")

DEFAULT_TTL = 8 * 3600.0
MAX_TTL = 30 * 86400.0
MAX_PATTERNS = 64
MAX_PATTERN = 300
MAX_COMMANDS = 32
MAX_LABEL = 128
ANY_REST = "**"  # as the last word of a command pattern: any further arguments

# What a bound connection may ask, by request tag; anything else is the owner's.
#: `policy` is the agent's rotation periods by kind: no name, no value (`credd ls` asks it).
METADATA = frozenset({"hello", "status", "describe", "list", "trash", "history", "policy"})
#: Grant requests a bound connection may make: each can only narrow what it has.
NARROWING = frozenset({"grant_create", "grant_list", "grant_revoke", "session_open",
                       "session_close"})
VALUES = frozenset({"get", "get_many", "reveal"})
RUN = frozenset({"run", "inject"})  # the agent uses the values for the caller
WRITES = frozenset({"set", "delete", "undelete", "purge", "move", "restore"})
#: Requests that use a grant: counted against `uses`, and confirmed when it says `confirm`.
USES = VALUES | RUN
ALLOWED: dict[str, frozenset[str]] = {
    "use": METADATA | NARROWING | RUN,
    "read": METADATA | NARROWING | RUN | VALUES,
    "write": METADATA | NARROWING | RUN | VALUES | WRITES,
}

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # base32, lower case


def new_id(prefix: str) -> str:
    """`prefix` + 10 random base32 characters (50 bits): grant `g_`, session `s_`, request `r_`."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))


# ---------------------------------------------------------------- patterns

def _glob(pattern: str) -> str:
    """The regular expression of a pattern: `*` is any run of characters, the rest literal."""
    return ".*".join(re.escape(part) for part in pattern.split("*"))


def _compile(patterns: Sequence[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{_glob(p)})" for p in patterns), re.S)


def pattern_within(inner: str, outer: str) -> bool:
    """Whether every name `inner` matches, `outer` matches too (sound, not complete:
    a False may be a containment too subtle to prove, never the reverse).

    `inner`'s stars become a character no pattern may hold, which only `outer`'s
    stars can match: whatever `inner`'s stars stand for, `outer`'s then absorb it.
    """
    return re.fullmatch(_glob(outer), inner.replace("*", "\0"), re.S) is not None


def _check_text(what: str, text: object, limit: int) -> str:
    if not isinstance(text, str):
        raise BadRequest(f"{what} must be text")
    text = unicodedata.normalize("NFC", text)
    if not text or text != text.strip() or len(text) > limit:
        raise BadRequest(f"{what} {text[:limit]!r} must be 1-{limit} characters without "
                         "surrounding space")
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in text):
        raise BadRequest(f"{what} {text!r} cannot contain control or format characters")
    return text


def _check_pattern(pattern: object) -> str:
    text = _check_text("a name pattern", pattern, MAX_PATTERN)
    if any(not segment for segment in text.split("/")):
        raise BadRequest(f"name pattern {text!r} has an empty segment (leading, trailing or "
                         "doubled '/')")
    return text


# ---------------------------------------------------------------- commands

def _words(pattern: str) -> tuple[str, ...]:
    try:
        words = tuple(shlex.split(pattern))
    except ValueError as exc:
        raise BadRequest(f"command pattern {pattern!r}: {exc}") from None
    if not words or ANY_REST in words[:-1]:
        raise BadRequest(f"command pattern {pattern!r}: give the program and its arguments; "
                         f"{ANY_REST!r} may only end it (any further arguments)")
    return words


def _command_matches(words: tuple[str, ...], argv: Sequence[str]) -> bool:
    head = words[:-1] if words[-1] == ANY_REST else words
    if len(argv) < len(head) or (head is words and len(argv) != len(words)):
        return False
    return all(re.fullmatch(_glob(w), a, re.S) for w, a in zip(head, argv))


def _command_within(inner: tuple[str, ...], outer: tuple[str, ...]) -> bool:
    """Whether every argv `inner` admits, `outer` admits too (sound, like pattern_within)."""
    inner_open, outer_open = inner[-1] == ANY_REST, outer[-1] == ANY_REST
    ihead = inner[:-1] if inner_open else inner
    ohead = outer[:-1] if outer_open else outer
    fits = len(ihead) >= len(ohead) if outer_open else (
        not inner_open and len(ihead) == len(ohead))
    return fits and all(pattern_within(i, o) for i, o in zip(ihead, ohead))


# ---------------------------------------------------------------- a new grant

def make_grant(names: Sequence[str], mode: str, ttl: float | None = None, *, label: str = "",
               uses: int | None = None, commands: Sequence[str] = (), confirm: bool = False,
               inject: bool = False, uid: int | None = None, parent: str | None = None,
               created_by: str = "",
               owner_uid: int | None = None, now: float | None = None) -> Grant:
    """A new grant from what a client asked, or BadRequest naming the first rule broken."""
    if not names or len(names) > MAX_PATTERNS:
        raise BadRequest(f"a grant names 1-{MAX_PATTERNS} entries or patterns (--names)")
    if mode not in MODES:
        raise BadRequest(f"mode {mode!r} must be one of {', '.join(MODES)}")
    ttl = DEFAULT_TTL if ttl is None else ttl
    if not (0 < ttl <= MAX_TTL):  # also NaN
        raise BadRequest("a grant lasts more than 0 seconds and at most 30 days (--ttl)")
    if uses is not None and not 1 <= uses <= 1 << 31:
        raise BadRequest("--uses must be a positive number")
    if len(commands) > MAX_COMMANDS:
        raise BadRequest(f"at most {MAX_COMMANDS} command patterns")
    pinned = tuple(_check_text("a command pattern", c, 1024) for c in commands)
    for pattern in pinned:
        _words(pattern)
    if uid is not None:
        _check_sandbox(uid, mode, pinned, owner_uid)
    now = time.time() if now is None else now
    return Grant(id=new_id("g_"), names=tuple(dict.fromkeys(map(_check_pattern, names))),
                 mode=mode, created=now, expires=now + ttl,
                 label=_check_text("a label", label, MAX_LABEL) if label else "",
                 uses=uses, commands=pinned, confirm=confirm, inject=inject, uid=uid,
                 parent=parent,
                 created_by=created_by[:MAX_LABEL])


def _check_sandbox(uid: int, mode: str, commands: Sequence[str], owner_uid: int | None) -> None:
    """A sandbox grant: another uid, and for `use`, commands pinned by absolute path (the
    agent runs them as the owner, outside the sandbox)."""
    if not 0 <= uid < 1 << 32:
        raise BadRequest(f"--uid {uid} is not a uid")
    if uid == owner_uid:
        raise BadRequest("--uid names another user (a sandbox); the owner already has the "
                         "agent's own socket")
    if mode == "use" and not commands:
        raise BadRequest("a `use` grant for another uid must pin its commands (--command): "
                         "the agent runs them as you, outside the sandbox")
    for pattern in commands:
        if not _words(pattern)[0].startswith("/"):
            raise BadRequest(f"command pattern {pattern!r}: a sandbox's commands name their "
                             "program by absolute path")


# ---------------------------------------------------------------- a grant's life

def ended(grant: Grant, now: float) -> str:
    """Why `grant` has ended ("" while it is in force): revoked, expired, or used up (a
    grant of N uses allows nothing more after them, like one that expired)."""
    if grant.revoked is not None:
        return f"grant {grant.id} was revoked"
    if now >= grant.expires:
        return f"grant {grant.id} expired"
    if spent(grant):
        return f"grant {grant.id} has used all its {grant.uses} uses"
    return ""


def spent(grant: Grant) -> bool:
    return grant.uses is not None and grant.used >= grant.uses


def narrowing(outers: Sequence[Grant], inner: Grant) -> str:
    """Why `inner` is not within each of `outers` ("" when it narrows all of them): its names,
    mode, expiry, uses, commands and confirmation may only be as strict or stricter."""
    for outer in outers:
        why = _narrows(outer, inner)
        if why:
            return f"it would widen grant `{outer.id}`: {why}"
    return ""


def _narrows(outer: Grant, inner: Grant) -> str:
    wide = [n for n in inner.names if not any(pattern_within(n, o) for o in outer.names)]
    if wide:
        return f"`{' '.join(wide)}` is not within `{' '.join(outer.names)}`"
    if RANK[inner.mode] > RANK[outer.mode]:
        return f"mode {inner.mode} is above {outer.mode}"
    if inner.expires > outer.expires:
        return "it would outlive it"
    if outer.uses is not None and (inner.uses is None or inner.uses > outer.uses - outer.used):
        return f"at most {outer.uses - outer.used} uses are left"
    if outer.commands and not inner.commands:
        return "its commands are pinned (--command)"
    outer_words = [_words(c) for c in outer.commands]
    if outer.commands and not all(any(_command_within(_words(c), o) for o in outer_words)
                                  for c in inner.commands):
        return "a command is not within its pinned commands"
    if outer.confirm and not inner.confirm:
        return "its uses need confirmation (--confirm)"
    if inner.inject and not outer.inject:
        return "it may not write values into files (--inject)"
    return ""


# ---------------------------------------------------------------- what a binding may do

class Policy:
    """What a connection may do: everything (the owner: no grants), or what every one of
    its grants allows (a session's grant and those of the sessions it runs inside)."""

    __slots__ = ("_commands", "_names", "_prefixes", "grants", "mode")

    def __init__(self, grants: Sequence[Grant] = ()) -> None:
        self.grants = tuple(grants)
        self.mode: Mode = min((g.mode for g in self.grants), key=RANK.__getitem__,
                              default="owner")
        self._names = [_compile(g.names) for g in self.grants]
        self._commands = [[_words(c) for c in g.commands] for g in self.grants if g.commands]
        # where covered names start, for select(): the literal heads of the narrowest grant
        fewest = min(self.grants, key=lambda g: len(g.names), default=None)
        self._prefixes = sorted({n.split("*")[0] for n in fewest.names}) if fewest else []

    @property
    def owner(self) -> bool:
        return not self.grants

    def covers(self, name: str) -> bool:
        """Whether `name` is visible: not covered behaves exactly as not existing."""
        if not self.grants:
            return True
        name = unicodedata.normalize("NFC", name)  # as the store will read it
        return all(rx.fullmatch(name) for rx in self._names)

    def allows(self, request: type | str) -> bool:
        """Whether a request of this type (a protocol class or its tag) may be asked."""
        if not self.grants:
            return True
        return (request if isinstance(request, str) else tag_of(request)) in ALLOWED[self.mode]

    def permits(self, argv: Sequence[str]) -> bool:
        """Whether `run` may start `argv`: every grant that pins commands admits it."""
        return all(any(_command_matches(w, argv) for w in pinned) for pinned in self._commands)

    def select(self, entries: Sequence[EntryMeta]) -> Sequence[EntryMeta]:
        """The covered ones of `entries` (sorted by name, as stores give them), in order;
        only the runs that start with a covered prefix are read."""
        if not self.grants:
            return entries
        if "" in self._prefixes:
            return [m for m in entries if self.covers(m.name)]
        spans: list[tuple[int, int]] = []
        for prefix in self._prefixes:
            cut = len(prefix)
            lo = bisect_left(entries, prefix, key=lambda m: m.name[:cut])
            hi = bisect_right(entries, prefix, lo=lo, key=lambda m: m.name[:cut])
            if spans and lo < spans[-1][1]:
                spans[-1] = (spans[-1][0], max(hi, spans[-1][1]))
            else:
                spans.append((lo, hi))
        return [m for lo, hi in spans for m in entries[lo:hi] if self.covers(m.name)]

    def refusal(self, request: type | str) -> str:
        """Why a request this policy does not allow is refused, and what to do instead."""
        tag = request if isinstance(request, str) else tag_of(request)
        grant = self.grants[0].id if self.grants else ""
        if tag in VALUES:
            return (f"this connection's grant {grant} ({self.mode} mode) never hands out values: "
                    "run the command with `credd run` and the agent starts it with them, its "
                    "output masked")
        if tag in WRITES:
            return (f"this connection's grant {grant} ({self.mode} mode) does not allow "
                    f"changing entries ({tag}); only a `write` grant does")
        return (f"this connection's grant {grant} does not allow {tag}: only the owner can, "
                "outside any `credd session` or grant socket")


#: The owner's policy: no grant, so everything.
OWNER_POLICY = Policy()
