"""A busy agent is not a missing one. With its listen queue full (the real agent, stopped
with SIGSTOP, and as many connections as the kernel queues), a client waits for the connect
up to its timeout and then says the agent is busy, instead of failing at once with "cannot
reach the agent ... start one", which is wrong advice while the agent is alive."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest

from credd.client import Client
from credd.errors import AgentBusy


def _fill_the_queue(path: str) -> list[socket.socket]:
    """Connections until the kernel refuses one with EAGAIN: the queue is full."""
    held: list[socket.socket] = []
    while len(held) < 5000:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(path)
        except BlockingIOError:
            sock.close()
            return held
        held.append(sock)
    raise AssertionError("the agent's listen queue never filled")


def test_a_client_waits_for_a_busy_agent_then_says_it_is_busy(unlocked_agent):
    os.kill(unlocked_agent.pid, signal.SIGSTOP)
    held: list[socket.socket] = []
    try:
        held = _fill_the_queue(unlocked_agent.socket)
        started = time.monotonic()
        with pytest.raises(AgentBusy) as busy:
            Client(unlocked_agent.socket, timeout=0.5).status()
        waited = time.monotonic() - started
        assert 0.45 <= waited < 5, waited  # it waited its timeout, not a moment less
        said = f"{busy.value.message} {busy.value.next_step()}"
        assert "is busy" in said and "start one" not in said, said
        assert busy.value.exit_code == 4
        started = time.monotonic()
        with pytest.raises(AgentBusy):  # no time to wait: said at once, never a hang
            Client(unlocked_agent.socket, timeout=0).status()
        assert time.monotonic() - started < 0.4

        threading.Timer(0.3, os.kill, (unlocked_agent.pid, signal.SIGCONT)).start()
        started = time.monotonic()
        with Client(unlocked_agent.socket, timeout=20) as c:  # waits for room, then served
            assert c.status().state == "unlocked"
        assert time.monotonic() - started >= 0.25
    finally:
        os.kill(unlocked_agent.pid, signal.SIGCONT)
        for sock in held:
            sock.close()
