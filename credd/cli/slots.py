"""`credd slots [rm LABEL]`: what unlocks the vault, and the proof that changing it needs.

Every way in is a key slot: the passphrase, the recovery key, a key in the OS keyring
(`credd keyring enroll`), a key added by a tool. `credd slots` lists them (label, kind,
KDF, created, last used: never key material) and flags any that failed authentication,
so a slot nobody remembers adding stands out. Adding, replacing or removing a slot, and
`credd rekey`, need the passphrase or the recovery key (`read_proof`): a program that can
reach the unlocked agent, but knows neither, cannot install a way back in.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from credd.cli import output
from credd.errors import IntegrityError

if TYPE_CHECKING:
    import argparse

    from credd.protocol import SlotInfo

PROOF_PROMPT = "vault passphrase (or recovery key): "
PROOF_STDIN = ("read the passphrase (or the recovery key) from stdin instead of a prompt "
               f"({output.STDIN_LINE})")


def register(sub: Any) -> None:
    p = sub.add_parser("slots", help="list what unlocks the vault: passphrase, recovery key, "
                                     "keyring and other key slots")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)
    actions = p.add_subparsers(dest="slots_action", metavar="ACTION")
    a = actions.add_parser("rm", help="remove a key slot or the recovery slot (needs the "
                                      "passphrase or the recovery key)")
    a.add_argument("label", metavar="LABEL")
    add_proof_arg(a)
    a.set_defaults(func=cmd_rm)


def add_proof_arg(parser: Any) -> None:
    """`--passphrase-stdin`, for every command that changes what unlocks the vault."""
    parser.add_argument("--passphrase-stdin", action="store_true", help=PROOF_STDIN)


def read_proof(ns: argparse.Namespace) -> str:
    """The passphrase or the recovery key: the vault tells which, and checks it."""
    return output.read_secret(PROOF_PROMPT, from_stdin=ns.passphrase_stdin)


def cmd_list(ns: argparse.Namespace) -> int:
    with output.client() as c:
        listed = c.slots()
    if ns.json:
        output.print_json(listed)
    else:
        print(output.table([_row(s) for s in listed.slots],
                           ["LABEL", "KIND", "KDF", "CREATED", "LAST USED", ""]))
    if listed.problems:
        if not ns.json:
            for problem in listed.problems:
                sys.stderr.write(f"credd: {problem}\n")
            sys.stderr.write("  hint: remove a slot you do not know with `credd slots rm "
                             "LABEL`; `credd rekey` replaces every slot but the passphrase\n")
        return IntegrityError.exit_code
    return 0


def _row(slot: SlotInfo) -> list[str]:
    from credd.rules import format_time
    if slot.kdf == "argon2id":
        kdf = f"argon2id {slot.memory_kib // 1024} MiB, t={slot.iterations}, p={slot.lanes}"
    else:
        kdf = slot.kdf
    return [slot.label, slot.kind, kdf, format_time(slot.created),
            format_time(slot.used) if slot.used else "never",
            "FAILED AUTHENTICATION" if slot.problem else ""]


def cmd_rm(ns: argparse.Namespace) -> int:
    proof = read_proof(ns)
    with output.client(timeout=None) as c:
        c.remove_key_slot(ns.label, proof=proof)
    print(f"removed the key slot {ns.label!r}")
    return 0
