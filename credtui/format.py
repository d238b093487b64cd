"""Turning times into short words and short words into times (no Textual).

Ages are coarse on purpose ("today", "3d"): the list stays stable from one
second to the next, and snapshots do not depend on the clock.
"""

from __future__ import annotations

import calendar
import re
import time

from credd.errors import BadRequest
from credd.protocol import EntryMeta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdwy])\s*$")


def age(seconds: float) -> str:
    """A coarse age: today, 3d, 5w, 2y."""
    days = max(0, int(seconds // 86400))
    if days == 0:
        return "today"
    if days < 14:
        return f"{days}d"
    if days < 730:
        return f"{days // 7}w"
    return f"{days // 365}y"


def duration(seconds: float) -> str:
    """A duration the way a person writes it: 90d, 12h, 45m."""
    for unit in ("y", "w", "d", "h", "m"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{int(seconds)}s"


def countdown(seconds: float) -> str:
    """Time left before a lock: minutes (rounded up) above a minute, else seconds."""
    if seconds >= 60:
        return f"{-int(-seconds // 60)}m"
    return f"{max(0, int(seconds))}s"


def parse_duration(text: str) -> float | None:
    """'90d' → seconds; '' → None (no rotation)."""
    if not text.strip():
        return None
    match = _DURATION.match(text.lower())
    if not match:
        raise BadRequest("rotation period must look like 90d, 12w, 1y or 36h")
    return float(match[1]) * _UNITS[match[2]]


def parse_date(text: str) -> float | None:
    """'2027-01-31' (UTC midnight) → unix time; '' → None (never expires)."""
    if not text.strip():
        return None
    try:
        return float(calendar.timegm(time.strptime(text.strip(), "%Y-%m-%d")))
    except ValueError:
        raise BadRequest("expiry must be a date like 2027-01-31") from None


def date(when: float) -> str:
    try:
        return time.strftime("%Y-%m-%d", time.gmtime(when))
    except (OverflowError, ValueError, OSError):  # a time the platform cannot show
        return "?"


def rotation_state(meta: EntryMeta, now: float) -> str:
    """'' when fine; 'expired', 'due' (rotation overdue) or 'soon' (expires within 14 days)."""
    if meta.expires is not None and meta.expires <= now:
        return "expired"
    if meta.rotate_after and meta.updated + meta.rotate_after <= now:
        return "due"
    if meta.expires is not None and meta.expires - now < 14 * 86400:
        return "soon"
    return ""
