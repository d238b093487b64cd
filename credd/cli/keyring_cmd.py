"""`credd keyring enroll | unlock | remove`: unlock per session where the OS can vouch.

`enroll` adds a `keyring` key slot to the vault: a random 32-byte key that
wraps the vault's data key, kept in the OS keyring (macOS Keychain, Secret
Service, Windows Credential Locker) through the `keyring` library. Whoever
can read that keyring entry can unlock the vault, which is exactly the trust
a login keyring already gets. Adding or removing the slot needs the
passphrase or the recovery key (`credd slots` says why). So a keyring that keeps it in clear on disk
(keyrings.alt's PlaintextKeyring) is only used when chosen explicitly, and
credd's own keyring backend never is: the vault cannot hold its own key.

`keyring_key()` is the seam `credd unlock --keyring` uses.
"""

from __future__ import annotations

import base64
import binascii
import sys
from typing import TYPE_CHECKING, Any

from credd.cli.output import add_unlock_window_args, client, format_duration, report_capped
from credd.cli.slots import add_proof_arg, read_proof
from credd.errors import BadPassphrase, Denied, NotFound

if TYPE_CHECKING:
    import argparse

    from keyring.backend import KeyringBackend

SERVICE = "credd"
SLOT_LABEL = "keyring"
KEY_BYTES = 32
NO_KEYRING_HINT = ("unlock with your passphrase instead (`credd unlock`, or "
                   "`credd unlock --passphrase-stdin` from another secret store); "
                   "see docs/service.md")


def register(sub: Any) -> None:
    p = sub.add_parser("keyring", help="unlock with a key kept in the OS keyring "
                                       "(Keychain, Secret Service, Credential Locker)")
    actions = p.add_subparsers(dest="keyring_action", metavar="ACTION", required=True)
    a = actions.add_parser("enroll", help="add a key slot whose key the OS keyring keeps "
                                          "(the vault must be unlocked; asks for the "
                                          "passphrase or the recovery key)")
    add_proof_arg(a)
    a.set_defaults(func=cmd_enroll)
    a = actions.add_parser("unlock", help="unlock the vault with the key from the OS keyring "
                                          "(starts an agent if none answers)")
    add_unlock_window_args(a)
    a.set_defaults(func=cmd_unlock)
    a = actions.add_parser("remove", help="delete the key slot and the key in the OS keyring "
                                          "(asks for the passphrase or the recovery key)")
    add_proof_arg(a)
    a.set_defaults(func=cmd_remove)


# ---------------------------------------------------------------- the OS keyring

def backend() -> KeyringBackend:
    """The OS keyring to keep the key in; NotFound, saying what to do, when there is none.

    Without an explicit choice (PYTHON_KEYRING_BACKEND or keyringrc.cfg), every
    viable backend is considered by priority, as keyring itself does, skipping
    the ones credd must not use.
    """
    import keyring
    from keyring.backend import by_priority, get_all_keyring
    from keyring.backends import chainer

    chosen = keyring.get_keyring()
    explicit = keyring.core.load_env() is not None or keyring.core.load_config() is not None
    if explicit:
        candidates = chosen.backends if isinstance(chosen, chainer.ChainerBackend) else [chosen]
    else:
        candidates = sorted(get_all_keyring(), key=by_priority, reverse=True)
    for candidate in candidates:
        if not isinstance(candidate, chainer.ChainerBackend) and _usable(candidate, explicit):
            return candidate
    raise NotFound(f"no usable OS keyring (the keyring library offers {describe(chosen)}; "
                   f"a headless Linux session has no Secret Service): {NO_KEYRING_HINT}")


def _usable(candidate: KeyringBackend, explicit: bool) -> bool:
    module = type(candidate).__module__
    if module.startswith(("keyring.backends.fail", "keyring.backends.null", "credd")):
        return False
    return explicit or not _plaintext(candidate)


def _plaintext(candidate: KeyringBackend) -> bool:
    return "plaintext" in type(candidate).__name__.lower()


def describe(candidate: KeyringBackend) -> str:
    kind = type(candidate)
    return f"{kind.__module__}.{kind.__qualname__}"


def account(vault: str) -> str:
    """The keyring user name for a vault: one key per vault file."""
    return f"vault:{vault}"


def _current_vault() -> str:
    with client() as c:
        return str(c.status().vault)


def keyring_key(vault: str | None = None) -> bytes:
    """The key of the vault's `keyring` slot, from the OS keyring (`vault`: the agent's)."""
    from keyring.errors import KeyringError

    vault = vault or _current_vault()
    kr = backend()
    try:
        stored = kr.get_password(SERVICE, account(vault))
    except KeyringError as exc:
        raise NotFound(f"the OS keyring ({describe(kr)}) could not be read "
                       f"({type(exc).__name__}): {NO_KEYRING_HINT}") from None
    if stored is None:
        raise NotFound(f"the OS keyring ({describe(kr)}) holds no credd key for {vault}: "
                       f"unlock with your passphrase, then run `credd keyring enroll`")
    try:
        key = base64.urlsafe_b64decode(stored.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise BadPassphrase(f"the credd key in the OS keyring for {vault} is damaged: run "
                            f"`credd keyring remove`, unlock with your passphrase and enroll again")
    return key


# ---------------------------------------------------------------- commands

def cmd_enroll(ns: argparse.Namespace) -> int:
    import secrets

    from keyring.errors import KeyringError

    kr = backend()
    proof = read_proof(ns)
    key = secrets.token_bytes(KEY_BYTES)
    with client(timeout=None) as c:
        vault = c.status().vault
        c.add_key_slot(key, label=SLOT_LABEL, proof=proof)  # first: a failure changes nothing
        try:
            kr.set_password(SERVICE, account(vault), base64.urlsafe_b64encode(key).decode())
        except KeyringError as exc:
            c.remove_key_slot(SLOT_LABEL, proof=proof)
            raise Denied(f"the OS keyring ({describe(kr)}) refused to store the key "
                         f"({type(exc).__name__}); nothing was enrolled") from None
    if _plaintext(kr):
        sys.stderr.write(f"credd: warning: {describe(kr)} keeps the key unencrypted on disk; "
                         f"anyone who can read your files can unlock the vault\n")
    print(f"enrolled: `credd keyring unlock` unlocks {vault} with the key in {describe(kr)}")
    return 0


def cmd_unlock(ns: argparse.Namespace) -> int:
    """`credd keyring unlock`, and `credd unlock --keyring`."""
    from credd import spawn
    from credd.cli.lifecycle import due_line
    spawn.ensure_agent()  # like `credd unlock`: start one on demand
    with client(timeout=None) as c:
        key = keyring_key(c.status().vault)
        status = c.unlock(key=key, idle_timeout=ns.timeout, max_lifetime=ns.max_lifetime)
        due = due_line(c)
    report_capped(ns, status)
    print(f"unlocked with the OS keyring: locks after {format_duration(status.idle_timeout)} "
          f"idle, {format_duration(status.max_lifetime)} at most")
    if due:
        print(due)
    return 0


def cmd_remove(ns: argparse.Namespace) -> int:
    from keyring.errors import KeyringError, PasswordDeleteError

    proof = read_proof(ns)
    with client(timeout=None) as c:
        vault = c.status().vault
        try:
            c.remove_key_slot(SLOT_LABEL, proof=proof)
            print(f"removed the keyring slot of {vault}")
        except NotFound:
            print(f"{vault} has no keyring slot")
    kr = backend()
    try:
        kr.delete_password(SERVICE, account(vault))
        print(f"deleted the key from {describe(kr)}")
    except PasswordDeleteError:
        print(f"{describe(kr)} held no credd key for {vault}")
    except KeyringError as exc:
        raise Denied(f"the OS keyring ({describe(kr)}) could not delete the key "
                     f"({type(exc).__name__})") from None
    return 0
