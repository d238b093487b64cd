"""Where credd keeps things, and the permission checks every one of them gets.

Standard library only: this module is on the `credd get` fast path, so the
platformdirs import (~15 ms) is deferred to the cases that need it.

    socket   $CREDD_SOCK, else $XDG_RUNTIME_DIR/credd/agent.sock (platformdirs'
             user runtime dir elsewhere, /tmp/credd-<uid>/ when there is none)
    vault    $CREDD_VAULT, else <user data dir>/credd/vault.db
    state    $CREDD_STATE_DIR, else <user state dir>/credd (audit log, rollback counter)
    config   $CREDD_CONFIG, else $XDG_CONFIG_HOME/credd/config.toml (the mount table)
"""

from __future__ import annotations

import os
import stat
import sys

from credd.errors import BadRequest, InsecurePath

#: sun_path is 108 bytes on Linux and 104 on macOS, including the NUL.
SUN_PATH_MAX = 104 if sys.platform == "darwin" else 108


def runtime_dir() -> str:
    """The per-user directory that holds the agent socket (not created here)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and sys.platform.startswith("linux"):
        return os.path.join(xdg, "credd")
    if sys.platform == "darwin" or not xdg:
        if sys.platform == "darwin":
            import platformdirs
            return os.path.join(platformdirs.user_runtime_dir(), "credd")
        return os.path.join("/tmp", f"credd-{os.getuid()}")
    return os.path.join(xdg, "credd")


def socket_path() -> str:
    """The agent socket this process should use."""
    return os.environ.get("CREDD_SOCK") or os.path.join(runtime_dir(), "agent.sock")


def default_socket_path() -> str:
    """The socket path with no CREDD_SOCK override (for service hints)."""
    return os.path.join(runtime_dir(), "agent.sock")


def vault_path() -> str:
    """The vault file this process should use."""
    override = os.environ.get("CREDD_VAULT")
    if override:
        return override
    import platformdirs
    return os.path.join(platformdirs.user_data_dir("credd", appauthor=False), "vault.db")


def state_dir() -> str:
    """Where the agent keeps its audit log and the vault's rollback counter."""
    override = os.environ.get("CREDD_STATE_DIR")
    if override:
        return override
    import platformdirs
    return platformdirs.user_state_dir("credd", appauthor=False)


def config_path() -> str:
    """credd's settings file (the mount table): read by the agent, edited by `credd mount`."""
    override = os.environ.get("CREDD_CONFIG")
    if override:
        return override
    import platformdirs
    return os.path.join(platformdirs.user_config_dir("credd", appauthor=False), "config.toml")


def check_socket_path(path: str) -> None:
    """Refuse a socket path that cannot fit in sockaddr_un."""
    if len(os.fsencode(path)) >= SUN_PATH_MAX:
        raise BadRequest(
            f"socket path is too long for a Unix socket ({len(os.fsencode(path))} bytes, "
            f"at most {SUN_PATH_MAX - 1}): {path}; set CREDD_SOCK to a shorter path"
        )


def _loose(st: os.stat_result) -> bool:
    return bool(st.st_mode & 0o077) or st.st_uid != os.geteuid()


def check_private_dir(path: str) -> None:
    """Raise InsecurePath unless `path` is a directory we own with no group/other bits."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise InsecurePath(f"{path} is not a directory; move it away and try again")
    if st.st_uid != os.geteuid():
        raise InsecurePath(f"{path} is owned by uid {st.st_uid}, not by you (uid {os.geteuid()}); "
                           f"remove it or set a different path")
    if st.st_mode & 0o077:
        raise InsecurePath(f"{path} is accessible by other users (mode "
                           f"{stat.S_IMODE(st.st_mode):04o}); fix it with: chmod 700 {path}")


def check_private_file(path: str) -> None:
    """Raise InsecurePath unless `path` is a regular file we own with mode 0600 or stricter."""
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise InsecurePath(f"{path} is not a regular file")
    if st.st_uid != os.geteuid():
        raise InsecurePath(f"{path} is owned by uid {st.st_uid}, not by you (uid {os.geteuid()})")
    if st.st_mode & 0o077:
        raise InsecurePath(f"{path} is accessible by other users (mode "
                           f"{stat.S_IMODE(st.st_mode):04o}); fix it with: chmod 600 {path}")


def ensure_private_dir(path: str) -> str:
    """Create `path` (and parents) as 0700 if missing, then check it is private."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=False)
    except FileExistsError:
        pass
    check_private_dir(path)
    return path
