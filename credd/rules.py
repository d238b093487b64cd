"""Rules about entries, in one home: kinds, durations, dates, when an entry is due, and
how long a new passphrase must be.

The agent (`ls --due`, `due`), the CLI (`set --rotate-after/--expires`, `show`, `ls`,
`due`) and the TUI (the edit form, the list's marks) all import this module, so the
same text means the same instant and the same entry is due everywhere.

The rotation rule. An entry's `rotate_after` is its own period; None means its kind's
default (`DEFAULT_ROTATION`, changed by config.toml's [rotation] table, which the agent
reads and hands to clients as `Periods`), and NEVER means no rotation at all. The clock
runs from the last time the VALUE changed (`value_changed`, set by the vault; an edit of
tags or fields does not restart it), falling back to `updated` for records that predate it.

The date rule. A bare date `YYYY-MM-DD` means the END of that day in the
user's local time zone: an entry that "expires 2027-01-31" is still valid
all through January 31, and expired from the local midnight that starts
February 1 (that midnight is the instant stored). A date and time
(`2027-01-31T12:00:00Z`, `2027-01-31T12:00+01:00`, RFC 3339) is that instant;
without an offset (`2027-01-31 12:00`) it is local time. Dates print in local
time, and what `format_date` prints parses back to the same instant, so an
edit form can show a date and save it unchanged.

Standard library only, and cheap to import: no `re`, `typing`, `enum` or
`datetime` at import time (the CLI's `show` and `ls` load it; `credd get`
never does). BadRequest is imported only to report bad input.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy still reads the block below
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Literal, TypeGuard

    from credd.errors import BadRequest
    from credd.protocol import DueReason, EntryMeta

    State = Literal["expired", "rotation_due", "expiring_soon", "ok"]
    Periods = Mapping[str, float]
else:
    State = Periods = str  # so `from credd.rules import State` works at run time too

# ---------------------------------------------------------------- kinds

#: The entry types credd knows, with what each is for (any other lowercase word is allowed);
#: short enough that `kind  what it is for` fits the TUI's picker on one line.
KINDS: dict[str, str] = {
    "api_key": "a key a program sends to an API",
    "access_token": "a bearer token, often short-lived",
    "password": "a password a person types to sign in",
    "connection_string": "a URL or DSN with credentials in it",
    "secret": "any other secret value",
    "certificate": "a certificate (PEM)",
    "private_key": "a private key (PEM)",
    "ssh_key": "an SSH private key",
    "note": "free text kept secret",
}
#: What an entry is when nobody says.
DEFAULT_KIND = "secret"


def is_kind(text: object) -> TypeGuard[str]:
    """An entry type: a lowercase ASCII word of at most 32 letters, digits and `_`."""
    return (isinstance(text, str) and 0 < len(text) <= 32 and text.isascii()
            and "a" <= text[0] <= "z" and all(c.islower() or c.isdigit() or c == "_"
                                              for c in text))


def kind_lines() -> list[tuple[str, str]]:
    """(kind, `kind  what it is for` in aligned columns), for help text and pickers."""
    width = max(map(len, KINDS)) + 2
    return [(kind, f"{kind:<{width}}{about}") for kind, about in KINDS.items()]


# ---------------------------------------------------------------- durations

DAY = 86400
#: Units of a duration, largest first; a year is 365 days (rotation periods, not calendars).
UNITS = {"y": 365 * DAY, "w": 7 * DAY, "d": DAY, "h": 3600, "m": 60, "s": 1}
DURATION_FORMS = ("a number and a unit (s, m, h, d, w, y), or several: "
                  "90d, 12w, 1y, 36h, 1h30m, 45m, 30s")
#: 9999-12-31T23:59:59Z: the last time every platform can show, and a bound on durations too.
MAX_TIME = 253402300799


def parse_duration(text: str) -> float:
    """Seconds in `90d`, `12w`, `1y`, `36h`, `1h30m`, `1.5h` or a bare number of seconds.

    Case and surrounding spaces do not matter; zero, negative and unit-less
    compounds (`1h30`) are refused with the forms that are accepted.
    """
    total = _seconds(text.strip().lower())
    if total is None or not 0 < total <= MAX_TIME:
        raise _bad(f"invalid duration {text.strip()[:40]!r}: use {DURATION_FORMS}")
    return total


def _seconds(s: str) -> float | None:
    """The sum of the number-and-unit terms in `s`, or None when it is not one."""
    total, number = 0.0, ""
    for ch in s:
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in UNITS and _is_number(number):
            total += float(number) * UNITS[ch]
            number = ""
        else:
            return None
    if number:
        if total or not _is_number(number):  # "1h30": a unit is missing
            return None
        total = float(number)
    return total


def _is_number(digits: str) -> bool:
    return digits.isascii() and digits.count(".") <= 1 and digits not in ("", ".")


def format_duration(seconds: float) -> str:
    """The shortest text that `parse_duration` reads back as exactly `seconds`:
    90d, 36h, 1y, 90m (not 1h30m), 1h1s, 1.5s; ties go to fewer parts."""
    seconds = max(0.0, float(seconds))
    whole = int(seconds)
    if whole == seconds:
        return _shortest(whole, tuple(UNITS.items())) or "0s"
    exact = _decimal(seconds) + "s"  # float(repr(x)) == x: this one always reads back
    minutes = whole - whole % 60
    split = _shortest(minutes, tuple(UNITS.items())[:-1]) + _decimal(seconds - minutes) + "s"
    return split if len(split) < len(exact) and _seconds(split) == seconds else exact


def _shortest(n: int, units: tuple[tuple[str, int], ...]) -> str:
    """Whole seconds in the fewest characters: at each unit, take as many as fit, or none."""
    if not n:
        return ""
    (unit, size), rest = units[0], units[1:]
    if not rest:
        return f"{n}{unit}"
    count, remainder = divmod(n, size)
    skip = _shortest(n, rest)
    if not count:
        return skip
    return min(f"{count}{unit}" + _shortest(remainder, rest), skip, key=_length)


def _length(text: str) -> tuple[int, int]:
    return len(text), sum(ch.isalpha() for ch in text)


def _decimal(x: float) -> str:
    """repr(x) without an exponent (`5e-05` → `0.00005`), so `parse_duration` reads it."""
    text = repr(x)
    if "e" not in text:
        return text
    mantissa, _, exponent = text.partition("e")
    point = len(mantissa.partition(".")[0]) + int(exponent)  # negative: only tiny x get here
    return "0." + "0" * -point + mantissa.replace(".", "")


# ---------------------------------------------------------------- rotation periods

#: Rotation periods of the kinds that have one when an entry names none (config.toml's
#: [rotation] changes them); ssh_key and certificate go by their expiry instead.
DEFAULT_ROTATION: dict[str, float] = {"password": 90 * DAY, "api_key": 180 * DAY,
                                      "access_token": 180 * DAY}
#: A `rotate_after` this long or longer means never (an entry opting out of its kind's
#: default): no arithmetic on it ever reaches a date a platform can show.
NEVER = float(MAX_TIME)
PERIOD_FORMS = f"{DURATION_FORMS}; never; or default (the entry type's period)"
#: The length `credd generate` and `set --generate` make: a stored password shorter than
#: this is reported by `credd due`.
GENERATED_LENGTH = 24


def parse_period(text: str) -> float:
    """A rotation period as `set --rotate-after` takes it: a duration, `never` (NEVER) or
    `default` (0: follow the entry type's period)."""
    word = text.strip().lower()
    if word in ("never", "none", "off"):
        return NEVER
    if word == "default":
        return 0.0
    total = _seconds(word)
    if total is None or not 0 < total <= MAX_TIME:
        raise _bad(f"invalid rotation period {text.strip()[:40]!r}: use {PERIOD_FORMS}")
    return total


def format_period(period: float) -> str:
    return "never" if period >= NEVER else format_duration(period)


def rotation_period(meta: EntryMeta, periods: Periods = DEFAULT_ROTATION) -> float | None:
    """Seconds between rotations of this entry (None: never): its own, else its kind's."""
    period = meta.rotate_after or periods.get(meta.kind)
    return None if period is None or period >= NEVER else period


def changed_at(meta: EntryMeta) -> float:
    """When the entry's value last changed (the rotation clock's start)."""
    return meta.value_changed or meta.updated


def rotation_due_at(meta: EntryMeta, periods: Periods = DEFAULT_ROTATION) -> float | None:
    period = rotation_period(meta, periods)
    return None if period is None else changed_at(meta) + period


# ---------------------------------------------------------------- dates

DATE_FORMS = ("YYYY-MM-DD (valid through the end of that day, local time), "
              "or a time such as 2027-01-31T12:00:00Z or 2027-01-31 12:00 (local)")


def parse_date(text: str) -> float:
    """Unix time of a date (the end of that local day) or of a date and time (see above)."""
    when = _instant(text.strip().upper())  # RFC 3339 allows a lower-case t and z
    if when is None:
        raise _bad(f"invalid date {text.strip()[:40]!r}: use {DATE_FORMS}")
    if not 0 <= when <= MAX_TIME:
        raise _bad(f"date {text.strip()[:40]!r} is not between 1970-01-01 and 9999-12-30")
    return when


def _instant(s: str) -> float | None:
    if not _looks_like_date(s):
        return None
    from datetime import date, datetime, timedelta
    try:
        if len(s) == 10:
            after = date.fromisoformat(s) + timedelta(days=1)
            return datetime(after.year, after.month, after.day).timestamp()
        return datetime.fromisoformat(s).timestamp()
    except OverflowError:  # 9999-12-31 ends in the year 10000
        return float("inf")
    except ValueError:
        return None


def _looks_like_date(s: str) -> bool:
    """`YYYY-MM-DD`, alone or followed by a time after `T` or a space (fromisoformat alone
    would also take `20270131`, week dates and a bare hour)."""
    head, sep, clock = s[:10], s[10:11], s[11:]
    shape = head[4:5] == head[7:8] == "-" and (head[:4] + head[5:7] + head[8:]).isdigit()
    return (shape and head.isascii()
            and (not sep or (sep in "T " and clock[2:3] == ":" and clock[:2].isdigit())))


def format_date(when: float) -> str:
    """A date as `parse_date` reads it back: `2027-01-31` for the local midnight that ends
    that day, else the local `2027-01-31 12:00` (`:SS` when not zero; the offset when the
    local time happens twice, at the end of summer time)."""
    try:
        if when == int(when) and time.localtime(when)[3:6] == (0, 0, 0):
            return time.strftime("%Y-%m-%d", time.localtime(when - 1))
        local = time.localtime(when)
        text = time.strftime("%Y-%m-%d %H:%M:%S" if local.tm_sec else "%Y-%m-%d %H:%M", local)
        return text if _instant(text) == int(when) else text + _offset(local.tm_gmtoff)
    except (OverflowError, ValueError, OSError):  # a time the platform cannot show
        return "?"


def _offset(seconds: int) -> str:
    sign, seconds = ("-", -seconds) if seconds < 0 else ("+", seconds)
    return f"{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def format_time(when: float | None) -> str:
    """A moment (written, deleted, logged) in local time to the minute; `-` for none."""
    if not when:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(when))
    except (OverflowError, ValueError, OSError):  # a time the platform cannot show
        return "?"


# ---------------------------------------------------------------- due

EXPIRED: State = "expired"
ROTATION_DUE: State = "rotation_due"
EXPIRING_SOON: State = "expiring_soon"
OK: State = "ok"
#: The states that need doing something now: `credd ls --due` and the TUI's `u` list them.
DUE: frozenset[State] = frozenset({EXPIRED, ROTATION_DUE})
#: An entry that expires within this many seconds is `expiring_soon`.
EXPIRING_SOON_WINDOW = 14 * DAY
#: One short word per state, for a narrow column (`credd ls`, the TUI list).
LABELS: dict[State, str] = {EXPIRED: "expired", ROTATION_DUE: "rotate",
                            EXPIRING_SOON: "expiring", OK: ""}


def entry_state(meta: EntryMeta, now: float, periods: Periods = DEFAULT_ROTATION) -> State:
    """Whether an entry needs attention at `now`, with these default periods by kind.
    Expiry wins over rotation: an expired secret is useless, an old one still works.
    Cheap: the agent's `List(due=True)` and the TUI's list call it for every entry."""
    expires = meta.expires
    if expires is not None and expires <= now:
        return EXPIRED
    due = rotation_due_at(meta, periods)
    if due is not None and due <= now:
        return ROTATION_DUE
    if expires is not None and expires - now < EXPIRING_SOON_WINDOW:
        return EXPIRING_SOON
    return OK


def explain(meta: EntryMeta, now: float, periods: Periods = DEFAULT_ROTATION
            ) -> tuple[State, str]:
    """The entry's state and why, in words for a person ('' when ok)."""
    state, expires, period = entry_state(meta, now, periods), meta.expires, None
    if state == ROTATION_DUE and (period := rotation_period(meta, periods)):
        return state, (f"rotation due since {format_time(changed_at(meta) + period)} "
                       f"(every {format_duration(period)})")
    if state != OK and expires is not None:
        what = "expired" if state == EXPIRED else "expires soon"
        return state, f"{what} (valid {_until(expires)})"
    return state, ""


def rotation_text(meta: EntryMeta, periods: Periods = DEFAULT_ROTATION) -> str:
    """`every 90d (the password default), next 2027-01-31 12:00`, `never`, or '' (none)."""
    period = rotation_period(meta, periods)
    if period is None:
        return "never" if meta.rotate_after and meta.rotate_after >= NEVER else ""
    whose = "" if meta.rotate_after else f" (the {meta.kind} default)"
    return f"every {format_duration(period)}{whose}, next {format_time(changed_at(meta) + period)}"


# ---------------------------------------------------------------- the due report

#: Why `credd due` lists an entry, in the order it lists them, with what each means.
REASONS: dict[str, str] = {
    "compromised": "marked compromised (`credd incident`) until its value changes",
    "expired": "expired",
    "rotation_due": "due for rotation",
    "expiring": "expiring soon",
    "pending": "a rotation not finished",
    "check_failed": "its check failed",
    "duplicate": "the same value as another entry",
    "short": f"a password shorter than {GENERATED_LENGTH} characters",
    "unused": "not used for a long time",
}
#: One short word per reason, for a narrow column (the TUI's list).
REASON_LABELS: dict[str, str] = {
    "compromised": "compromised", "expired": "expired", "rotation_due": "rotate",
    "expiring": "expiring",
    "pending": "pending", "check_failed": "failing", "duplicate": "reused",
    "short": "short", "unused": "unused",
}
#: `credd due`'s defaults: what is due within this window, and unused for this long.
DUE_WITHIN = EXPIRING_SOON_WINDOW
UNUSED_AFTER = 180 * DAY


def last_activity(meta: EntryMeta) -> tuple[float, bool]:
    """(when the entry was last used, whether that is known): without a recorded use, the
    value's change time stands in (the `unused` reason then says so)."""
    used = meta.last_used  # stamped by the agent from its reveals (daemon/last_used.py)
    return (used, True) if used else (changed_at(meta), False)


def date_reasons(meta: EntryMeta, now: float, within: float, unused: float,
                 periods: Periods = DEFAULT_ROTATION) -> list[tuple[str, float]]:
    """(reason, when) for what the entry's dates say: expired, expiring within `within`,
    rotation due within `within`, unused for `unused` (0: not asked). Cheap, like
    `entry_state`: from metadata only."""
    found = []
    expires = meta.expires
    if expires is not None:
        if expires <= now:
            found.append(("expired", expires))
        elif expires <= now + within:
            found.append(("expiring", expires))
    due = rotation_due_at(meta, periods)
    if due is not None and due <= now + within:
        found.append(("rotation_due", due))
    used, _ = last_activity(meta)
    if unused and used + unused <= now:
        found.append(("unused", used))
    return found


def is_short(kind: str, length: int) -> bool:
    """A password shorter than the generator makes (other kinds have no length rule)."""
    return kind == "password" and length < GENERATED_LENGTH


def reason_text(reason: DueReason, now: float) -> str:
    """One reason of the due report in words, times in local time."""
    kind, when = reason.reason, reason.when or 0.0
    what = f"field {reason.field}" if reason.field else "value"
    if kind in ("expired", "expiring"):
        soon = "" if kind == "expired" else f"in {_days(when - now)}, "
        return f"{REASONS[kind]} ({soon}valid {_until(when)})"
    if kind == "rotation_due":
        every = f" (every {format_duration(reason.period)})" if reason.period else ""
        return (f"rotation due {'since' if when <= now else 'on'} {format_time(when)}{every}")
    if kind == "unused":
        known = "" if reason.note != "changed" else " (no use recorded: the value's last change)"
        return f"not used since {format_time(when)}{known}"
    if kind == "duplicate":
        return f"{what} same as {', '.join(reason.names)}"
    if kind == "short":
        return f"{reason.length} characters (credd generates {GENERATED_LENGTH})"
    if kind == "compromised":
        return f"marked compromised {format_time(when)} (credd incident): rotate it"
    if kind == "pending":
        return f"a new value pending since {format_time(when)}: rotate --finish or --abandon"
    if kind == "check_failed":
        return f"check failed {format_time(when)}" + (f" ({reason.note})" if reason.note else "")
    return REASONS.get(kind, kind)


def _days(seconds: float) -> str:
    days = max(0, int(seconds // DAY))
    return "less than a day" if not days else f"{days} day{'s' if days != 1 else ''}"


def _until(expires: float) -> str:
    shown = format_date(expires)
    return f"through {shown}" if len(shown) == 10 else f"until {shown}"


# ---------------------------------------------------------------- passphrases

#: The fewest characters a new passphrase may have (`init`, `passwd`), unless the person
#: asked for a shorter one by name (`--insecure-short-passphrase`, protocol `allow_short`).
MIN_PASSPHRASE = 8
SHORT_FLAG = "--insecure-short-passphrase"


def check_passphrase(passphrase: str, *, allow_short: bool = False) -> None:
    """Refuse a new passphrase below MIN_PASSPHRASE: the agent for every client, the CLI
    before it asks for the passphrase a second time."""
    if len(passphrase) < MIN_PASSPHRASE and not allow_short:
        raise _bad(f"a passphrase needs at least {MIN_PASSPHRASE} characters (this one has "
                   f"{len(passphrase)}); nothing was changed (a shorter one only when asked "
                   f"for by name: `credd init {SHORT_FLAG}`)")


def _bad(message: str) -> BadRequest:
    from credd.errors import BadRequest  # only on bad input: importing rules stays free
    return BadRequest(message)
