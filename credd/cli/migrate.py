"""`credd migrate SRC DST`: copy entries between the local vault and mounts.

The agent copies, store to store, one batch per request (`protocol.Migrate`): no value
crosses the socket, and this command only asks for the next batch, moves the progress
bar (stderr, on a terminal) and reports what happened to each entry, never a value.
Exit 0 when every entry is at its destination (copied, or already there, and its source
deleted if asked), 1 when some are not (a conflict, a skip, a run stopped by a server
going down); running the same command again is safe and finishes the job.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from credd.client import Client
    from credd.protocol import Migrated, MigrateItem

#: How each outcome reads in the report, done and in a dry run; and its --json key.
_SHOWN = {"copied": ("copied", "would copy", "copied"),
          "overwritten": ("overwrote", "would overwrite", "overwritten"),
          "same": ("already there", "already there", "already_there"),
          "conflict": ("conflict", "conflict", "conflicts"),
          "skipped": ("skipped", "would skip", "skipped")}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "migrate", help="copy entries between the local vault and mounts (e.g. "
                        "`credd migrate local/ team/moved/`), inside the agent",
        description="Copy the entries under SRC to DST, with their fields, notes and "
                    "metadata (current values only: history stays at the source). An entry "
                    "already at DST is left alone; a different one is a conflict, skipped "
                    "unless --overwrite. Safe to run again.",
        epilog="exit codes: 0 every entry is at DST, 1 some are not (conflicts, skipped, "
               "stopped: see the report), others as for every command (credd --help)")
    p.add_argument("src", metavar="SRC",
                   help="FOLDER/ for the entries under it; NAME for that entry and the "
                        "entries under NAME/")
    p.add_argument("dst", metavar="DST", help="what SRC becomes: team/moved/ (or NAME)")
    p.add_argument("--dry-run", action="store_true",
                   help="say what would happen; change nothing")
    p.add_argument("--overwrite", action="store_true",
                   help="replace destination entries that differ (default: list them as "
                        "conflicts and leave them)")
    p.add_argument("--delete-source", action="store_true",
                   help="send each source entry to its trash once its copy is confirmed "
                        "(refused for read-only mounts)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object: copied, overwritten, already_there, conflicts, "
                        "skipped (each [{name, to, reason}]) and deleted [names]")
    p.set_defaults(func=cmd_migrate)


def cmd_migrate(ns: argparse.Namespace) -> int:
    from credd.cli.output import client, progress
    items: list[MigrateItem] = []
    with client() as c:
        batches = _batches(c, ns)
        first = next(batches)
        with progress(len(first.items) + first.remaining, _label(ns)) as bar:
            last = first
            for last in _chain(first, batches):
                items += last.items
                bar(len(items), len(items) + last.remaining)
    if ns.json:
        _print_json(ns, items, last)
    else:
        _print_report(ns, items, last)
    return 1 if _unfinished(ns, items) or last.stopped else 0


def _batches(c: Client, ns: argparse.Namespace) -> Iterator[Migrated]:
    cursor = None
    while True:
        reply = c.migrate(ns.src, ns.dst, cursor=cursor, dry_run=ns.dry_run,
                          overwrite=ns.overwrite, delete_source=ns.delete_source)
        yield reply
        if reply.stopped or reply.next is None:
            return
        cursor = reply.next


def _chain(first: Migrated, rest: Iterator[Migrated]) -> Iterator[Migrated]:
    yield first
    yield from rest


def _label(ns: argparse.Namespace) -> str:
    return "checking" if ns.dry_run else "migrating"


def _unfinished(ns: argparse.Namespace, items: list[MigrateItem]) -> list[MigrateItem]:
    """The entries not (or not yet) at their destination as asked."""
    return [i for i in items if i.outcome in ("conflict", "skipped")
            or (ns.delete_source and not i.deleted) or (i.reason and i.outcome != "same")]


def _print_report(ns: argparse.Namespace, items: list[MigrateItem], last: Migrated) -> None:
    """One line per entry something happened to (stdout); the summary on stderr."""
    column = 1 if ns.dry_run else 0
    width = max([len(_SHOWN[i.outcome][column]) for i in items] or [0])
    for item in items:
        if item.outcome == "same" and not item.deleted and not item.reason:
            continue
        line = f"{_SHOWN[item.outcome][column]:<{width}}  {item.name} -> {item.to}"
        if item.deleted:
            line += " (source would go to the trash)" if ns.dry_run else " (source in the trash)"
        sys.stdout.write(line + (f": {item.reason}" if item.reason else "") + "\n")
    sys.stderr.write(_summary(ns, items, last) + "\n")


def _summary(ns: argparse.Namespace, items: list[MigrateItem], last: Migrated) -> str:
    counts = {outcome: sum(i.outcome == outcome for i in items) for outcome in _SHOWN}
    column = 1 if ns.dry_run else 0
    parts = [f"{n:,} {_SHOWN[outcome][column]}" for outcome, n in counts.items() if n]
    lines = [f"credd migrate {ns.src} -> {ns.dst}: " + (", ".join(parts) or "nothing to copy")
             + (" (dry run: nothing was changed)" if ns.dry_run else "")]
    if ns.delete_source:
        deleted = sum(i.deleted for i in items)
        lines.append(f"  {deleted:,} source entr{'y' if deleted == 1 else 'ies'} "
                     f"{'would go' if ns.dry_run else 'sent'} to the trash")
    if last.versions_left and (counts["copied"] or counts["overwritten"]):
        lines.append("  current values only: older versions stay in the source's history")
    if counts["conflict"] and not ns.overwrite:
        lines.append("  conflicts were left as they are: --overwrite replaces them")
    if last.stopped:
        lines.append(f"  stopped: {last.stopped}\n  run the same command again to finish "
                     "(what is already there is skipped)")
    return "\n".join(lines)


def _print_json(ns: argparse.Namespace, items: list[MigrateItem], last: Migrated) -> None:
    from credd.cli.output import print_json
    out: dict[str, Any] = {"src": ns.src, "dst": ns.dst, "dry_run": ns.dry_run}
    for outcome, (_, _, key) in _SHOWN.items():
        out[key] = [{"name": i.name, "to": i.to, "reason": i.reason}
                    for i in items if i.outcome == outcome]
    out["deleted"] = [i.name for i in items if i.deleted]
    out["stopped"] = last.stopped
    out["current_values_only"] = last.versions_left
    print_json(out)
