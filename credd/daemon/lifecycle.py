"""What the agent keeps for the entries' lifecycle, and the due report (docs/lifecycle.md).

`Lifecycle` is the one owner: the rotation periods from config.toml (reloaded when the
file changes), the book of check results, and the fingerprints of this unlock (dropped
at lock). `report` builds `credd due`'s answer and `entry_reasons` what it says of one
entry; the rules they apply (what is expired, due, unused, short) are `credd.rules`'.

`report` runs on a reader thread: with `values`, it fingerprints every value it can
read cheaply (the local vault and local mounts, never a remote one), which decrypts each
entry once (see fingerprints.py for the cost and how it is kept).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from credd import config, rules
from credd import protocol as p
from credd.store import EntryStore

from .checks import CheckBook
from .fingerprints import Digests, Fingerprints, derive_key
from .router import Router


class Lifecycle:
    def __init__(self, config_path: str, state_dir: str) -> None:
        self.rotation = config.Watched(config_path, config.rotation,
                                       dict(rules.DEFAULT_ROTATION), "rotation periods")
        self.checks = CheckBook(state_dir)
        self._prints: tuple[bytes, Fingerprints] | None = None

    def periods(self) -> dict[str, float]:
        """The rotation periods by kind in force (config.toml's, else the defaults)."""
        return self.rotation.current()

    def fingerprints(self, audit_key: bytes) -> Fingerprints:
        """This unlock's fingerprints (a rekey's new audit key starts new ones)."""
        if self._prints is None or self._prints[0] != audit_key:
            self._prints = audit_key, Fingerprints(derive_key(audit_key))
        return self._prints[1]

    def forget(self) -> None:
        """At lock: the fingerprints go with every other decrypted thing."""
        self._prints = None


def entry_reasons(meta: p.EntryMeta, now: float, within: float, unused: float,
                  periods: rules.Periods, check: p.Verification | None,
                  digests: Digests | None) -> list[p.DueReason]:
    """Every reason but `duplicate` (which needs all values) to list this entry."""
    found = []
    if meta.compromised is not None:
        found.append(p.DueReason(reason="compromised", when=meta.compromised))
    for reason, when in rules.date_reasons(meta, now, within, unused, periods):
        period = rules.rotation_period(meta, periods) if reason == "rotation_due" else None
        note = "changed" if reason == "unused" and not rules.last_activity(meta)[1] else ""
        found.append(p.DueReason(reason=reason, when=when, period=period, note=note))
    if meta.pending is not None:
        found.append(p.DueReason(reason="pending", when=meta.pending))
    if check is not None and check.outcome != "ok":
        status = "" if check.exit_status is None else f", exit {check.exit_status}"
        found.append(p.DueReason(reason="check_failed", when=check.time,
                                 note=check.outcome + status))
    if digests is not None and digests.value is not None \
            and rules.is_short(meta.kind, digests.length):
        found.append(p.DueReason(reason="short", length=digests.length))
    return found


def report(store: EntryStore, prints: Fingerprints | None,
           results: Callable[[list[str]], dict[str, p.Verification]], periods: rules.Periods,
           request: p.Due, now: float,
           used: Callable[[Sequence[p.EntryMeta]], Sequence[p.EntryMeta]] = list
           ) -> p.DueReport:
    """`credd due`: every live entry with its reasons (on a reader thread); `used` gives
    the entries with their last-used times (the agent's LastUsed)."""
    metas = used(store.entries())
    checks = results([m.name for m in metas])
    digests, unread = _digests(store, prints, metas) if prints is not None else ({}, set())
    reasons = {m.name: entry_reasons(m, now, request.within, request.unused, periods,
                                     checks.get(m.name), digests.get(m.name)) for m in metas}
    for name, duplicate in _duplicates(digests):
        reasons[name].append(duplicate)
    order = list(rules.REASONS)
    entries = [p.DueEntry(name=m.name, kind=m.kind,
                          reasons=sorted(reasons[m.name], key=lambda r: order.index(r.reason)))
               for m in metas if reasons[m.name]]
    compared = sum((d.value is not None) + len(d.fields) for d in digests.values())
    return p.DueReport(entries=entries, now=now, checked=len(metas), values=compared,
                       unread=sorted(unread))


def sharing(store: EntryStore, prints: Fingerprints, name: str
            ) -> tuple[list[p.DueReason], list[str]]:
    """`incident`: the `duplicate` reasons `due` gives `name` (its secrets other entries
    hold too), and the remote mounts whose values were not compared (on a reader thread)."""
    digests, unread = _digests(store, prints, store.entries())
    return [reason for holder, reason in _duplicates(digests) if holder == name], sorted(unread)


def _digests(store: EntryStore, prints: Fingerprints, metas: Sequence[p.EntryMeta]
             ) -> tuple[dict[str, Digests], set[str]]:
    """The digests of every value read cheaply, and the remote mounts left unread."""
    digests: dict[str, Digests] = {}
    unread: set[str] = set()
    for meta in metas:
        if isinstance(store, Router) and store.remote(meta.name):
            unread.add(meta.mount)
        elif meta.has_value or meta.secret_fields:
            digests[meta.name] = prints.of(store, meta)
    return digests, unread


def _duplicates(digests: dict[str, Digests]) -> list[tuple[str, p.DueReason]]:
    """(entry, reason) for each secret whose value another secret also holds."""
    holders: dict[bytes, list[tuple[str, str]]] = {}
    for name, found in digests.items():
        secrets = ([("", found.value)] if found.value is not None else [])
        for field, digest in [*secrets, *found.fields.items()]:
            if field not in found.ignored:
                holders.setdefault(digest, []).append((name, field))
    reasons = []
    for group in holders.values():
        for name, field in group if len(group) > 1 else ():
            others = [f"{n}/{f}" if f else n for n, f in group if (n, f) != (name, field)]
            reasons.append((name, p.DueReason(reason="duplicate", field=field, names=others)))
    return reasons
