"""Coarse times for narrow places: ages in the list, the lock countdown (no Textual).

Ages are coarse on purpose ("today", "3d"): the list stays stable from one
second to the next, and snapshots do not depend on the clock. Durations,
dates and the due state are entry rules: they live in credd.rules.
"""

from __future__ import annotations


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


def countdown(seconds: float) -> str:
    """Time left before a lock: minutes (rounded up) above a minute, else seconds."""
    if seconds >= 60:
        return f"{-int(-seconds // 60)}m"
    return f"{max(0, int(seconds))}s"


def fingerprint(shown: str) -> str:
    """A value's fingerprint as the detail pane shows it (as the agent sent it: the
    snapshot tests replace this, since every vault has its own)."""
    return shown
