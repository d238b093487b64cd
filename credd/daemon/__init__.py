"""The credd agent: `credd serve` runs `serve(Config(...))` in the foreground.

Order matters: the process is hardened before anything else, then the socket
is bound (or inherited from systemd), then the vault is opened (locked), and
only then does the agent say it is ready.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from .state import Config

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
    from credd.paths import ensure_private_dir

    from .activation import inherited_listener, notify
    from .listener import Listener
    from .server import Server
    from .state import AgentState

    ensure_private_dir(config.state_dir)
    inherited = inherited_listener()
    listener = Listener.inherit(inherited) if inherited else Listener.bind(config.socket)
    config.socket = listener.path or config.socket
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
        listener.close()
    log.info("stopped")
    return 0
