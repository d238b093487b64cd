"""`credd serve` flags and `credd stop`."""

from __future__ import annotations

import os


def test_stop_stops_the_agent(agent, run_credd):
    out = run_credd("stop")
    assert out.returncode == 0 and f"pid {agent.pid}" in out.stdout, out.stderr
    assert agent.proc.wait(5) == 0 and not os.path.exists(agent.socket)
    out = run_credd("stop")
    assert out.returncode == 4 and "no credd agent" in out.stderr.lower() + out.stdout.lower()


def test_serve_rejects_bad_durations(run_credd):
    for args in (["--idle-timeout", "soon"], ["--max-lifetime", "-5m"],
                 ["--max-connections", "0"]):
        out = run_credd("serve", *args, timeout=20)
        assert out.returncode == 2, (args, out.stderr)


def test_serve_paths_from_flags(make_agent, tmp_path, raw):
    from tests.daemon.conftest import status
    sock = os.path.join(os.path.dirname(os.environ["CREDD_SOCK"]), "other.sock")
    vault = str(tmp_path / "elsewhere" / "v.db")
    agent = make_agent("--socket", sock, "--vault", vault, start=False)
    agent.socket = sock
    agent.start()
    s = status(raw(sock))
    assert (s.socket, s.vault, s.idle_timeout) == (sock, vault, 900.0)
