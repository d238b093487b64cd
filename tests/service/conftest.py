"""Fixtures for the service tests: detached agents cleaned up, an env for systemd-analyze.

Agents started by `credd agent` are not our children (that is the point), so
they are tracked by pid and stopped at teardown. In a container whose init
does not reap orphans a stopped agent lingers as a zombie; that counts as gone.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.service.helpers import PYTHON, alive, wait_gone


@pytest.fixture
def detached(credd_env):
    """Records pids of detached agents; stops whatever still runs at teardown."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
            if not wait_gone(pid, 10):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def unit_env(credd_env, tmp_path):
    """The environment systemd-analyze needs: a runtime dir and a HOME with ~/.local/bin/credd.

    The shipped credd.service runs %h/.local/bin/credd (where pipx and pip --user
    put it), and `verify` checks that the executable exists.
    """
    env = dict(credd_env)
    bin_dir = os.path.join(env["HOME"], ".local", "bin")
    os.makedirs(bin_dir, exist_ok=True)
    os.symlink(os.path.join(os.path.dirname(PYTHON), "credd"), os.path.join(bin_dir, "credd"))
    return env
