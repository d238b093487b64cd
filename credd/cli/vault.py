"""`credd init | unlock | lock | passwd | status | check | rekey`: the vault's life cycle.

Every command goes through the agent, which alone opens the vault file.
Passphrases come from a no-echo prompt or, with --passphrase-stdin, from
stdin (its first line: `output.stdin_line`); never from an argument. A
command checks what it can before it asks for a secret: `init` finds an
existing vault, `unlock` an unlocked one, before anyone types a passphrase.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, TypedDict

from credd.cli import console, output
from credd.cli.output import STDIN_LINE, arg_type, client, read_secret, stdin_line
from credd.errors import BadRequest, Exists, IntegrityError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from credd.client import Client
    from credd.protocol import StatusReply, Unlock


def parse_kib(text: str) -> int:
    """A memory size in KiB from `64MiB`, `64M`, `65536K`, `1G` or a bare number of MiB."""
    s = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = {"k": 1, "m": 1024, "g": 1024 * 1024}.get(s[-1:])
    number = s[:-1] if scale else s
    if not number.isdigit() or int(number) <= 0:
        raise BadRequest(f"invalid memory size {text!r}: use e.g. 64MiB, 256M or 1G")
    return int(number) * (scale or 1024)


def plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from credd.rules import MIN_PASSPHRASE, SHORT_FLAG
    stdin_help = f"read the passphrase from stdin instead of a prompt ({STDIN_LINE})"

    p = sub.add_parser("init", help="create a new vault (prints its recovery key once; "
                                    "starts an agent if none answers)")
    p.add_argument("--passphrase-stdin", action="store_true", help=stdin_help)
    p.add_argument(SHORT_FLAG, dest="short", action="store_true",
                   help=f"accept a passphrase under {MIN_PASSPHRASE} characters")
    p.add_argument("--kdf-memory", type=arg_type(parse_kib), metavar="SIZE",
                   help="Argon2id memory, e.g. 64MiB (default: the vault's default)")
    p.add_argument("--kdf-iterations", type=int, metavar="N", help="Argon2id iterations")
    p.add_argument("--kdf-lanes", type=int, metavar="N", help="Argon2id lanes")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("unlock", help="unlock the vault in the agent")
    source = add_secret_args(p, "unlock with")
    source.add_argument("--keyring", action="store_true",
                        help="unlock with the key kept in the OS keyring "
                             "(after `credd keyring enroll`)")
    output.add_unlock_window_args(p)
    p.add_argument("--force", action="store_true",
                   help="unlock again even if unlocked: check the passphrase and start a new "
                        "window (so do --timeout and --max-lifetime)")
    p.set_defaults(func=cmd_unlock)

    p = sub.add_parser("lock", help="lock the vault now")
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser("passwd", help="change the vault passphrase")
    p.add_argument("--passphrase-stdin", action="store_true",
                   help="read two lines from stdin: the old passphrase on the first, the new "
                        "one on the second (each line ends at its newline)")
    p.add_argument(SHORT_FLAG, dest="short", action="store_true",
                   help=f"accept a new passphrase under {MIN_PASSPHRASE} characters")
    p.set_defaults(func=cmd_passwd)

    p = sub.add_parser("status", help="show the agent and vault state "
                                      "(exit 0 unlocked, 3 locked, 4 no agent, 5 no vault)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("check", help="verify every entry of the vault (exit 8 if damaged)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("rekey", help="re-encrypt every entry under a new data key "
                                     "(asks for the passphrase; prints the new recovery key)")
    from credd.cli.slots import add_proof_arg
    add_proof_arg(p)
    p.set_defaults(func=cmd_rekey)


def add_secret_args(parser: argparse.ArgumentParser, verb: str
                    ) -> argparse._MutuallyExclusiveGroup:
    """--passphrase-stdin, --recovery, --recovery-stdin: which of the vault's secrets, and
    from where (`read_vault_secret`); the group, for more choices."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--passphrase-stdin", action="store_true",
                        help=f"read the passphrase from stdin instead of a prompt ({STDIN_LINE})")
    source.add_argument("--recovery", action="store_true",
                        help=f"{verb} the recovery key (prompted, or from stdin with "
                             "--recovery-stdin)")
    source.add_argument("--recovery-stdin", action="store_true",
                        help=f"read the recovery key from stdin ({STDIN_LINE})")
    return source


class VaultSecret(TypedDict, total=False):
    """One of the vault's secrets, as the keyword `unlock` and `restore_backup` take."""

    passphrase: str
    recovery_key: str


def read_vault_secret(ns: argparse.Namespace, prompt: str) -> VaultSecret:
    """The secret `add_secret_args` asked for."""
    if ns.recovery or ns.recovery_stdin:
        return {"recovery_key": read_secret("recovery key: ", from_stdin=ns.recovery_stdin,
                                            flag="--recovery-stdin")}
    return {"passphrase": read_secret(prompt, from_stdin=ns.passphrase_stdin)}


def cmd_init(ns: argparse.Namespace) -> int:
    from credd.rules import MIN_PASSPHRASE
    status = _reached()  # before any prompt: nobody types a passphrase for nothing
    if status.state != "no_vault":
        raise Exists(f"a vault already exists at {status.vault}: `credd unlock` opens it "
                     f"(to start afresh, move that file away first)")
    passphrase = read_secret(f"new vault passphrase (at least {MIN_PASSPHRASE} characters): ",
                             from_stdin=ns.passphrase_stdin, confirm=True,
                             check=_length_rule(ns.short))
    with client(timeout=None) as c:
        recovery = c.init(passphrase, kdf_memory_kib=ns.kdf_memory,
                          kdf_iterations=ns.kdf_iterations, kdf_lanes=ns.kdf_lanes,
                          allow_short=ns.short)
        status = c.status()
    sys.stderr.write(f"vault created at {status.vault}\n")
    print_recovery_key(recovery)
    if status.state != "unlocked":
        sys.stderr.write("next: `credd unlock`\n")
    return 0


def _reached() -> StatusReply:
    """The agent's status, starting an agent first when none answers (as gpg-agent does):
    `init` and `unlock` are the first commands a person types."""
    from credd import spawn
    agent = spawn.ensure_agent()
    if agent.started:
        sys.stderr.write(f"credd: started an agent (pid {agent.pid}; `credd stop` stops it)\n")
    with client() as c:
        return c.status()


def _length_rule(allow_short: bool) -> Callable[[str], None]:
    """The agent's passphrase rule (credd.rules), checked here too before the prompt asks a
    second time."""
    from credd.rules import check_passphrase
    return lambda passphrase: check_passphrase(passphrase, allow_short=allow_short)


def print_recovery_key(recovery: str) -> None:
    """The key on stdout (so it can be piped to a safe place), the warning on stderr."""
    sys.stderr.write("Recovery key (shown only this once; store it offline, it unlocks the "
                     "vault if you forget the passphrase):\n")
    sys.stderr.flush()
    sys.stdout.write(recovery + "\n")
    sys.stdout.flush()


def cmd_unlock(ns: argparse.Namespace) -> int:
    """An unlocked vault is left as it is, and says so (rbw, gpg-agent): no prompt, no KDF.
    --force, --timeout or --max-lifetime unlock it again: the passphrase is checked anew and
    the new window starts, so only someone who knows it can extend an unlock."""
    from credd import protocol
    status = _reached()
    if status.state == "unlocked" and not (ns.force or ns.timeout or ns.max_lifetime):
        left = (status.idle_left or 0.0, status.lifetime_left or 0.0)
        print(f"already unlocked: locks in {_window(*left)} (`credd unlock --force` checks "
              f"the passphrase again and starts a new window)")
        return _report_damage(status)
    if ns.keyring:
        from credd.cli.keyring_cmd import cmd_unlock as unlock_with_keyring
        return unlock_with_keyring(ns)
    request = protocol.Unlock(**read_vault_secret(ns, "vault passphrase: "))
    from credd.cli.lifecycle import due_line
    with client(timeout=None) as c:
        status = _send_unlock(c, request, ns)
        due = "" if status.damage else due_line(c)
    output.report_capped(ns, status)
    print(f"unlocked: locks after {_window(status.idle_timeout, status.max_lifetime)}")
    if due:
        print(due)
    return _report_damage(status)


def _window(idle: float, lifetime: float) -> str:
    return f"{output.format_duration(idle)} idle, {output.format_duration(lifetime)} at most"


def _report_damage(status: StatusReply) -> int:
    """An unlock that found the file damaged or rolled back says so now (exit 8), not the
    next read: the vault stays unlocked so that `credd check` can say what is wrong."""
    if not status.damage:
        return 0
    return console.report_error(IntegrityError(
        f"unlocked, but every read will fail: {'; '.join(status.damage)}. `credd check` "
        f"lists the damage; a vault restored from a copy on purpose: docs/vault.md, Rollback"))


def _send_unlock(c: Client, request: Unlock, ns: argparse.Namespace) -> StatusReply:
    """Send the unlock; typed at a terminal, it waits out the throttle (and says so) instead
    of being refused: a program's wrong guesses must not lock the owner out."""
    from msgspec.structs import replace
    # stdin a terminal: read_secret prompted for it (an agent without `wait` would refuse it)
    interactive = sys.stdin.isatty() and "unlock_wait" in c.hello().capabilities
    if interactive:
        wait = c.status().retry_after
        if wait:
            sys.stderr.write(f"credd: unlocks are throttled after failed attempts; trying "
                             f"yours in {output.format_duration(math.ceil(wait))}\n")
    return c.call(replace(request, idle_timeout=ns.timeout, max_lifetime=ns.max_lifetime,
                          wait=interactive))


def cmd_lock(ns: argparse.Namespace) -> int:
    with client() as c:
        c.lock()
    print("locked")
    return 0


def cmd_passwd(ns: argparse.Namespace) -> int:
    check = _length_rule(ns.short)
    if ns.passphrase_stdin and not sys.stdin.isatty():  # a terminal gets the prompts
        old, new = stdin_line(), stdin_line()
        if not (old and new):
            raise BadRequest("--passphrase-stdin reads two lines: the old passphrase, then "
                             "the new one; nothing was changed")
        check(new)
    else:
        old = read_secret("current passphrase: ", from_stdin=False)
        new = read_secret("new passphrase: ", from_stdin=False, confirm=True, check=check)
    with client(timeout=None) as c:
        c.change_passphrase(old, new, allow_short=ns.short)
    print("passphrase changed")
    return 0


def cmd_status(ns: argparse.Namespace) -> int:
    from credd.cli.fast import to_json
    with client() as c:
        status = output.as_data(c.status())
    print(to_json(status) if ns.json else console.format_status(status))
    return console.status_exit_code(status["state"])


def cmd_check(ns: argparse.Namespace) -> int:
    with client(timeout=None) as c:
        report = c.check()
    if ns.json:
        output.print_json(report)
    else:
        for problem in report.problems:
            print(f"problem: {problem}")
        found = plural(len(report.problems), "problem", "problems")
        print(f"checked {plural(report.checked, 'entry', 'entries')}: "
              f"{found if report.problems else 'ok'}")
    if report.problems:
        if not ns.json:
            console.report_error(IntegrityError(
                "the vault failed its check: restore it from a backup, or `credd purge` "
                "the damaged entries"))
        return IntegrityError.exit_code
    return 0


def cmd_rekey(ns: argparse.Namespace) -> int:
    from credd.cli.slots import read_proof
    proof = read_proof(ns)  # the passphrase (or the recovery key, unlocked with the passphrase)
    # The protocol has no progress events, so the bar can only show start and end.
    with client(timeout=None) as c:
        total = c.status().entries or 0
        started = time.monotonic()
        with output.progress(total, "re-encrypting") as bar:
            recovery = c.rekey(proof=proof)
            bar(total)
    sys.stderr.write(f"re-encrypted {plural(total, 'entry', 'entries')} under a new data key "
                     f"in {time.monotonic() - started:.1f}s; the old recovery key and any "
                     f"keyring slot no longer work (`credd keyring enroll` adds it again)\n")
    print_recovery_key(recovery)
    return 0
