"""Code a real agent runs before it starts: a `sitecustomize` on its PYTHONPATH.

Some of the agent's paths no request can reach: an unexpected exception (the fuzzers
prove requests cannot cause one), a failing `prctl`, and some facts no reply carries
(how often the vault decrypted). A test gives the agent a small module here that
observes from within or injects that one fault; everything else is the real agent on
the real socket.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from tests.conftest import Agent


def agent_running(make_agent, credd_env: dict[str, str], tmp_path: Path, code: str,
                  *args: str, start: bool = True, **env: str) -> Agent:
    """An agent (`credd serve *args`) whose interpreter first runs `code`."""
    site = tmp_path / "sitecustomize"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(textwrap.dedent(code))
    path = f"{site}{os.pathsep}{credd_env.get('PYTHONPATH', '')}"
    return make_agent(*args, start=start, env=dict(credd_env, PYTHONPATH=path, **env))
