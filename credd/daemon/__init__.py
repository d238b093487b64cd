"""The credd agent: `credd serve` runs `serve(Config(...))` in the foreground.

Order matters: the process is hardened before anything else, then the vault's
lock file is taken (one agent per vault, even before the vault exists), then
the socket is bound (or inherited from systemd), then the vault is opened
(locked), and only then does the agent say it is ready.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

from .state import Config

if TYPE_CHECKING:
    from .listener import Listener

__all__ = ["Config", "serve"]

log = logging.getLogger("credd.agent")


def serve(config: Config) -> int:
    """Run the agent until stop/SIGTERM/SIGINT/SIGHUP; returns the exit code (0)."""
    from .hardening import harden
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="credd[%(process)d] %(levelname)s: %(message)s")
    harden(allow_insecure=config.allow_insecure_memory)
    return asyncio.run(_main(config))


async def _main(config: Config) -> int:
    from credd.lockfile import lock_vault
    from credd.paths import ensure_private_dir

    from .activation import inherited_listener
    from .listener import Listener

    ensure_private_dir(config.state_dir)
    inherited = inherited_listener()
    if inherited is not None:
        config.socket = inherited.getsockname()
    vault_lock = lock_vault(config.vault, config.socket)  # before the vault is opened or made
    listener = None
    try:
        listener = Listener.inherit(inherited) if inherited else Listener.bind(config.socket)
        await _serve(config, listener)
    finally:
        # the vault is closed by now; the socket goes last, so that once it stops
        # answering (what `credd stop` waits for) a new agent can take both locks
        os.close(vault_lock)
        if listener is not None:
            listener.close()
    log.info("stopped")
    return 0


async def _serve(config: Config, listener: Listener) -> None:
    """Open the vault (locked) and answer clients until asked to stop; close the vault."""
    from .activation import notify
    from .server import Server
    from .state import AgentState

    state = AgentState(config)
    try:
        state.open_vault()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, state.lock, "signal")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, state.stopping.set)
        notify("READY=1")
        log.info("serving %s on %s", config.vault, config.socket)
        await Server(state, listener).run()
        notify("STOPPING=1")
    finally:
        await state.close()
