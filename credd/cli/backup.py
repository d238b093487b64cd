"""`credd backup` and `credd restore-backup`: a copy of the encrypted vault, and putting one
back (docs/lifecycle.md, "Backup and restore"; the file work is credd/vault/backup.py).

`backup` reads the vault file itself, read-only, while the agent keeps serving, and
writes the copy beside its target (0600, born O_EXCL) before giving it its name; the
copy is checked before that: its structure here, every row by the agent with the
vault's key when the vault is unlocked (the copy goes to the agent as a descriptor).
`restore-backup` hands the copy to the agent, which alone replaces the vault file.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

from credd.cli import output
from credd.cli.output import client
from credd.errors import AgentUnavailable, BadRequest, IntegrityError, LockedError, NoVault

if TYPE_CHECKING:
    import argparse

    from credd.protocol import BackupReport, StatusReply
    from credd.vault.backup import CopyInfo

#: Names `credd backup DIR` gives its copies, and the only files `--keep` removes.
PREFIX, SUFFIX = "vault-", ".db"


def register(sub: Any) -> None:
    from credd.cli.vault import add_secret_args

    p = sub.add_parser("backup", help="write a checked copy of the encrypted vault while the "
                                      "agent keeps serving")
    p.add_argument("target", nargs="?", metavar="FILE|DIR",
                   help="the copy's file, or a directory for a copy named by its time "
                        "(default: backups/ beside the vault)")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.add_argument("--keep", type=int, metavar="N",
                   help="in a directory, then remove all but the newest N copies")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore-backup", help="replace the vault with a backup (asks first; "
                                              "the current file is kept aside)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_secret_args(p, "prove it with")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_restore)


# ---------------------------------------------------------------- backup

def cmd_backup(ns: argparse.Namespace) -> int:
    from credd import paths
    from credd.files import private_temp, publish
    from credd.vault import backup

    if ns.keep is not None and ns.keep < 1:
        raise BadRequest("--keep wants a number of copies, at least 1")
    status = _agent_status()
    vault = status.vault if status else os.path.abspath(paths.vault_path())
    if not os.path.exists(vault):
        raise NoVault(f"no vault at {vault}: nothing to back up")
    target, directory = _target(ns.target, vault)
    if ns.keep is not None and directory is None:
        raise BadRequest("--keep applies to a directory of copies (credd backup DIR)")
    with private_temp(target) as (tmp, fd):
        backup.snapshot(vault, tmp)
        os.fsync(fd)
        info = _structure(tmp, "the copy")
        if backup.file_vault_id(vault) != info.vault_id:
            raise IntegrityError(f"the copy does not carry the vault id of {vault}: nothing "
                                 "was written")
        checked = _checked_by_agent(status, fd)
        publish(tmp, target, replace=ns.force)
    removed = _prune(directory, ns.keep) if directory and ns.keep else []
    _report_backup(ns, target, info, checked, removed)
    return 0


def _agent_status() -> StatusReply | None:
    """The agent's status (its vault is the one to copy), or None when none answers."""
    try:
        with client(timeout=10.0) as c:
            status: StatusReply = c.status()
    except AgentUnavailable:
        return None
    return status


def _target(given: str | None, vault: str) -> tuple[str, str | None]:
    """(the copy's path, the directory of timed copies it goes into, if it is one)."""
    from credd.paths import ensure_private_dir

    if given is None:
        directory = ensure_private_dir(os.path.join(os.path.dirname(vault), "backups"))
    elif os.path.isdir(given) or given.endswith(os.sep):
        directory = given if os.path.isdir(given) else ensure_private_dir(given)
    else:
        return os.path.abspath(given), None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return os.path.abspath(os.path.join(directory, f"{PREFIX}{stamp}{SUFFIX}")), directory


def _structure(copy: str, name: str) -> CopyInfo:
    """What a finished copy says of itself, checked: SQLite's own check, credd's marker,
    a format this credd reads, a header."""
    from credd.vault import backup

    conn = backup.connect_readonly(copy, immutable=True)
    try:
        return backup.inspect(conn, name)
    finally:
        conn.close()


def _checked_by_agent(status: StatusReply | None, fd: int) -> bool:
    """Every row of the copy checked by the agent with the vault's key; False when it
    cannot be (no agent, or the vault locked). IntegrityError when the check fails."""
    from credd import protocol as p

    if status is None or status.state != "unlocked":
        return False
    try:
        with client(timeout=None) as c:
            if "backup" not in c.hello().capabilities:  # an agent older than this credd
                return False
            report = c.hand_over(p.VerifyBackup(), [fd], p.BackupReport)
    except LockedError:  # locked since the status was read
        return False
    if report.problems:
        shown = "; ".join(report.problems[:5])
        raise IntegrityError(f"the copy failed the check with the vault's key ({shown}): "
                             "nothing was written; run `credd check`")
    return True


def _prune(directory: str, keep: int) -> list[str]:
    """Remove all but the newest `keep` copies credd named in `directory` (by their names,
    which sort by time); returns what was removed."""
    copies = sorted(name for name in os.listdir(directory)
                    if name.startswith(PREFIX) and name.endswith(SUFFIX))
    doomed = [os.path.join(directory, name) for name in copies[:-keep]]
    for path in doomed:
        os.unlink(path)
    return doomed


def _report_backup(ns: argparse.Namespace, target: str, info: CopyInfo, checked: bool,
                   removed: list[str]) -> None:
    size = os.path.getsize(target)
    if ns.json:
        output.print_json({"path": target, "vault_id": info.vault_id.hex(),
                           "generation": info.generation, "format": info.format,
                           "entries": info.entries, "versions": info.versions, "bytes": size,
                           "checked": "key" if checked else "structure", "removed": removed})
        return
    how = ("every entry checked with the vault's key" if checked else
           "its structure checked; unlock the vault to have every entry checked with its key")
    sys.stderr.write(f"credd: backed up {info.entries} entries and {info.versions} older "
                     f"versions ({size:,} bytes): {how}\n")
    for path in removed:
        sys.stderr.write(f"credd: removed the older copy {path}\n")
    print(target)


# ---------------------------------------------------------------- restore

def cmd_restore(ns: argparse.Namespace) -> int:
    from credd import protocol as p
    from credd import spawn
    from credd.cli.vault import read_vault_secret

    if not ns.yes and not sys.stdin.isatty():
        raise BadRequest("restore-backup replaces the vault: confirm with --yes")
    fd, info = _consolidated(ns.file)
    try:
        spawn.ensure_agent()  # as `credd unlock` does: only the agent replaces the vault
        with client(timeout=None) as c:
            if not (ns.yes or _confirmed(ns.file, info, c.status())):
                print("nothing was restored")
                return 1
            secret = read_vault_secret(ns, "the backup's passphrase: ")
            report = c.hand_over(p.RestoreBackup(**secret), [fd], p.BackupReport)
    finally:
        os.close(fd)
    _report_restore(ns, report)
    return 0


def _consolidated(path: str) -> tuple[int, CopyInfo]:
    """The backup at `path` as one self-contained file (a copy with a -wal beside it, too),
    open in an unnamed temporary file, and what it says of itself."""
    import tempfile

    from credd.vault import backup

    if not os.path.isfile(path):
        raise BadRequest(f"{path} is not a file")
    fd, tmp = tempfile.mkstemp(prefix="credd-restore-")
    try:
        try:
            backup.snapshot(path, tmp)
            return fd, _structure(tmp, path)
        finally:
            os.unlink(tmp)  # the descriptor is all the agent gets, and nothing is left over
    except BaseException:
        os.close(fd)
        raise


def _confirmed(path: str, info: CopyInfo, status: StatusReply) -> bool:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(path)))
    sys.stderr.write(
        f"This replaces the vault {status.vault} with the backup {path}\n"
        f"  (written {when}: {info.entries} entries, {info.versions} older versions, "
        f"vault {info.vault_id.hex()[:12]}…).\n"
        f"The current file is kept beside it as {os.path.basename(status.vault)}.replaced-TIME;"
        f" the vault is then locked until you unlock it.\n")
    return input("Replace the vault? [y/N] ").strip().lower() in ("y", "yes")


def _report_restore(ns: argparse.Namespace, report: BackupReport) -> None:
    if ns.json:
        output.print_json(report)
        return
    kept = f"; the file it replaced is kept as {report.replaced}" if report.replaced else ""
    sys.stderr.write(f"credd: restored {report.entries} entries and {report.versions} older "
                     f"versions{kept}\n"
                     "next: `credd unlock` (with the passphrase the backup was made with)\n")
