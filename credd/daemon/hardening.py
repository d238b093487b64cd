"""Process hardening, applied before the agent reads any secret.

Python cannot promise to wipe memory, so the boundary is the process: no other
process of the same user may ptrace it or read its memory through /proc
(PR_SET_DUMPABLE=0 on Linux, PT_DENY_ATTACH on macOS), it never writes a core
file (RLIMIT_CORE=0), and everything it creates is private (umask 077).
`mlockall(MCL_FUTURE)` is deliberately never used: with a 64 MiB Argon2 it makes
unlocks fail under a small RLIMIT_MEMLOCK, and swap is better handled by an
encrypted swap partition than by a process that cannot allocate.
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import sys

from credd.errors import CreddError

log = logging.getLogger("credd.agent")

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
PT_DENY_ATTACH = 31


class HardeningError(CreddError):
    """The process could not be hardened (pass --allow-insecure-memory to run anyway)."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _deny_debuggers() -> None:
    if sys.platform.startswith("linux"):
        libc = _libc()
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
        if libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0:
            raise OSError(0, "the process is still dumpable after prctl")
    elif sys.platform == "darwin":
        libc = _libc()
        if libc.ptrace(PT_DENY_ATTACH, 0, None, 0) != 0:
            raise OSError(ctypes.get_errno(), "ptrace(PT_DENY_ATTACH) failed")
    else:
        raise OSError(0, f"no way to deny debuggers on {sys.platform}")


def _no_core_files() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def harden(*, allow_insecure: bool = False) -> list[str]:
    """Harden this process; returns the warnings it had to accept.

    A failure refuses the start unless `allow_insecure`, in which case it is
    logged as a warning and returned.
    """
    os.umask(0o077)
    warnings = []
    for step in (_deny_debuggers, _no_core_files):
        try:
            step()
        except (OSError, ValueError, AttributeError) as exc:
            message = f"process hardening failed: {exc}"
            if not allow_insecure:
                raise HardeningError(
                    f"{message}; refusing to hold secrets in an unprotected process "
                    "(pass --allow-insecure-memory to run anyway)") from None
            log.warning("%s (continuing: --allow-insecure-memory)", message)
            warnings.append(message)
    return warnings
