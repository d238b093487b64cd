"""`run` and `inject` over raw frames: the descriptors after `ready`, the reply last."""

from __future__ import annotations

import os
import socket

import pytest

from credd import protocol as p
from tests.daemon.conftest import init_unlock

VALUE = "run-request-value-0123456789"


@pytest.fixture
def conn(agent, raw):
    c = raw(agent)
    init_unlock(c)
    assert isinstance(c.call(p.Set(name="a", value=VALUE)), p.EntryReply)
    return c


def _send_fds(conn, fds: list[int]) -> None:
    socket.send_fds(conn.sock, [b"x"], fds)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_run_gets_the_descriptors_masks_and_ends_with_run_exit(conn):
    assert isinstance(conn.call(p.Run(argv=["sh", "-c", 'echo "v=$X"; exit 3'],
                                      env={"PATH": os.defpath}, secrets={"X": "credd://a"})),
                      p.Ready)
    out_r, out_w = os.pipe()
    with open(os.devnull, "rb") as stdin:
        _send_fds(conn, [stdin.fileno(), out_w, out_w])
    os.close(out_w)
    assert conn.recv() == p.RunExit(code=3, signal=0)
    output = _read_all(out_r)
    os.close(out_r)
    assert output.startswith(b"v=") and VALUE.encode() not in output
    assert conn.closed_within(5)


def test_run_refusals_come_before_ready_and_leave_the_connection_usable(conn):
    assert conn.call(p.Run(argv=[])).code == "bad_request"
    assert conn.call(p.Run(argv=["no-such-program-xyz"], env={"PATH": os.defpath})).code \
        == "not_found"
    missing = conn.call(p.Run(argv=["true"], env={"PATH": os.defpath},
                              secrets={"X": "credd://nope"}))
    assert missing.code == "not_found" and missing.names == ["credd://nope"]
    assert isinstance(conn.call(p.Status()), p.StatusReply)


def test_run_without_its_descriptors_is_refused(conn):
    assert isinstance(conn.call(p.Run(argv=["true"], env={"PATH": os.defpath})), p.Ready)
    conn.sock.sendall(b"x")  # the byte, but no SCM_RIGHTS
    assert conn.recv().code == "bad_request"


def test_inject_renders_into_the_file_sent(conn, tmp_path):
    target = tmp_path / "out.conf"
    assert isinstance(conn.call(p.Inject(template="key={{ credd://a }}\n")), p.Ready)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        _send_fds(conn, [fd])
    finally:
        os.close(fd)
    assert isinstance(conn.recv(), p.Ok)
    assert target.read_text() == f"key={VALUE}\n"


def test_inject_writes_only_into_a_regular_file(conn):
    assert isinstance(conn.call(p.Inject(template="key={{ credd://a }}\n")), p.Ready)
    r, w = os.pipe()
    try:
        _send_fds(conn, [w])
        assert conn.recv().code == "bad_request"
    finally:
        os.close(r)
        os.close(w)
