"""`credd scan`: where stored secrets leaked (files, git history, staged changes, git objects).

Exits 0 when nothing is found and 1 when something is (as grep does), so a
pre-commit hook or CI step is one line; other errors keep their codes (2
usage, 3 locked, 4 no agent, 5 no such path). Hits go to stdout, the summary
and the progress bar (on a terminal only) to stderr. No output ever holds a
value or a piece of one: a hit names the entry, its field, the form and the
place.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from credd.errors import BadRequest

if TYPE_CHECKING:
    from credd.scan import Counts, Hit, Scanner

EXIT_FOUND = 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "scan", help="find stored secrets (and their base64, hex, URL, JSON forms) in files "
                     "or git history; exit 1 if any is found",
        epilog="exit codes: 0 nothing found, 1 a stored secret was found, others as for "
               "every command (credd --help)")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="files and directories to scan (default: .); with --git or --staged, "
                        "the repository")
    p.add_argument("--git", action="store_true",
                   help="scan the history of the current branch (every commit's added lines "
                        "and message) instead of files")
    p.add_argument("--all-refs", action="store_true",
                   help="with --git: the history of every branch, tag and remote ref")
    p.add_argument("--objects", action="store_true",
                   help="with --git: every object in the repository's store, reachable or not "
                        "(quicker; reports object ids and blob paths, not commits)")
    p.add_argument("--staged", action="store_true",
                   help="scan the staged changes (a pre-commit hook: exits 1 on a hit)")
    p.add_argument("--binary", action="store_true",
                   help="also scan binary files (a NUL byte in the first 8 KiB)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object: hits [{name, field, form, file, line, commit, "
                        "object}] and counts")
    p.set_defaults(func=cmd_scan)


def cmd_scan(ns: argparse.Namespace) -> int:
    from credd.cli.output import client
    from credd.redact import stored_secrets
    from credd.scan import Needles, Scanner
    _check(ns)
    with client() as c:
        secrets = stored_secrets(c)
    # compiled on threads while the files are listed or git starts; the first search waits
    scanner = Scanner(Needles(secrets, background=True), binary=ns.binary)
    del secrets
    hits = list(_scan(scanner, ns))
    if ns.json:
        _print_json(hits, scanner.counts)
    else:
        for hit in hits:
            sys.stdout.write(format_hit(hit) + "\n")
        sys.stderr.write(summary(hits, scanner.counts, ns) + "\n")
    return EXIT_FOUND if hits else 0


def _check(ns: argparse.Namespace) -> None:
    if (ns.all_refs or ns.objects) and not ns.git:
        raise BadRequest("--all-refs and --objects go with --git")
    if ns.staged and ns.git:
        raise BadRequest("--staged and --git scan different things: give one of them")


def _scan(scanner: Scanner, ns: argparse.Namespace) -> Iterator[Hit]:
    from credd.scan import count_commits, count_objects
    if not (ns.git or ns.staged):
        files = scanner.walk(ns.paths or ["."])
        with _bar(lambda: sum(f.size for f in files), "scanning", _megabytes) as advance:
            yield from scanner.files(files, advance)
        return
    for repo in ns.paths or ["."]:
        if ns.staged:
            yield from scanner.staged(repo)
        elif ns.objects:
            with _bar(functools.partial(count_objects, repo), "objects") as advance:
                yield from scanner.objects(repo, advance)
        else:
            with _bar(functools.partial(count_commits, repo, ns.all_refs), "commits") as advance:
                yield from scanner.history(repo, all_refs=ns.all_refs, advance=advance)


class _bar:
    """A progress bar on stderr (a terminal only) counting up by `advance(n)`; its total
    is asked for only when it shows (counting commits or objects is one more git run)."""

    def __init__(self, total: Callable[[], int], label: str,
                 show: Callable[[int], str] = str) -> None:
        from credd.cli.output import progress
        self.bar = progress(0, label, show=show)
        self.total = total
        self.done = 0

    def __enter__(self) -> Callable[[int], None] | None:
        if not self.bar.visible:
            return None
        self.bar.total = self.total()
        self.bar.__enter__()
        return self.advance

    def advance(self, n: int) -> None:
        self.done += n
        self.bar(self.done)

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        if exc_type is None and self.bar.visible:  # skipped binary files count as done
            self.bar(self.bar.total)
        self.bar.__exit__(exc_type, *exc_info)


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def format_hit(hit: Hit) -> str:
    """`FILE:LINE: ENTRY[/FIELD] (FORM)`, led by the commit or object it is in."""
    what = hit.name if hit.field is None else f"{hit.name}/{hit.field}"
    place = hit.file or ("(commit message)" if hit.commit and not hit.object else "")
    if hit.file and hit.line is not None:
        place += f":{hit.line}"
    lead = hit.object or hit.commit
    if lead:
        place = f"{lead[:12]} {place}".rstrip()
    return f"{place}: {what} ({hit.form})"


def summary(hits: list[Hit], counts: Counts, ns: argparse.Namespace) -> str:
    """One line on stderr: what was found, what was covered, what was left out and why."""
    if ns.objects:
        covered = _count(counts.objects, "object")
    elif ns.git:
        covered = _count(counts.commits, "commit")
    else:
        covered = "the staged changes" if ns.staged else _count(counts.files, "file")
    entries = len({(h.name, h.field) for h in hits})
    found = (f"found {_count(len(hits), 'leak')} of {_count(entries, 'stored secret')}"
             if hits else "no stored secret found")
    notes = [f"{found} in {covered} ({_megabytes(counts.bytes)})",
             f"{_count(counts.values, 'value')} searched for in "
             f"{_count(counts.patterns, 'pattern')}"]
    if counts.too_short:
        notes.append(f"{counts.too_short:,} shorter than 4 bytes not searched for")
    if counts.binary_skipped:
        notes.append(f"{counts.binary_skipped:,} binary skipped (--binary scans them)")
    if counts.unreadable:
        notes.append(f"{counts.unreadable:,} files or directories could not be read")
    return "credd scan: " + "; ".join(notes)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'s' * (n != 1)}"


def _print_json(hits: list[Hit], counts: Counts) -> None:
    from msgspec.structs import asdict

    from credd.cli.output import print_json
    print_json({"hits": hits, "counts": {"hits": len(hits), **asdict(counts)}})
