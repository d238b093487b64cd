"""A full disk under a live agent: writes (`set`, `passwd`, `rekey`) and reveals (the audit
line) fail with `no_space`, saying nothing changed; nothing is lost; the lock's seal says why
it was skipped; and the same agent writes again once there is room. The vault and the state
directory live on a small tmpfs of their own (root: `mount -t tmpfs`)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator

import pytest

from credd import protocol as p
from tests.conftest import SENTINEL, TEST_PASSPHRASE
from tests.daemon.conftest import init_unlock
from tests.tools import skip_missing


@pytest.fixture
def small_disk(tmp_path) -> Iterator[str]:
    """A 4 MiB tmpfs, mode 0700, unmounted at teardown (a skip only where mounting is
    impossible: a failure under CREDD_CI=1)."""
    mount = tmp_path / "disk"
    mount.mkdir(mode=0o700)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if done.returncode:
        skip_missing("mount -t tmpfs", f"a small file system to fill: {done.stderr.strip()}")
    try:
        yield str(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: str) -> str:
    """Take every free page of the file system; the filler's path."""
    filler = os.path.join(directory, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def _full_last_page(path: str) -> None:
    """Pad a file to a whole page, so that its next append needs a page the disk lacks."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"\n" * (-os.fstat(fd).st_size % 4096))
    finally:
        os.close(fd)


def _no_space(reply: p.Response) -> None:
    assert isinstance(reply, p.Error) and reply.code == "no_space", reply
    assert "no space left on the device holding the" in reply.message


def test_a_full_disk_is_no_space_and_the_same_agent_writes_once_freed(
        small_disk, make_agent, credd_env, raw, run_credd):
    vault = os.path.join(small_disk, "vault", "vault.db")
    state = os.path.join(small_disk, "state")
    env = {**credd_env, "CREDD_VAULT": vault, "CREDD_STATE_DIR": state}
    agent = make_agent(env=env)
    c = raw(agent)
    init_unlock(c)
    for i in range(20):
        c.call(p.Set(name=f"e{i:02d}", value=f"{SENTINEL}-{i}"))
    filler = _fill(small_disk)
    with pytest.raises(OSError) as full, open(filler, "ab", buffering=0) as f:
        f.write(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC

    big = "x" * 200_000  # more pages than the WAL has left over
    for request in (p.Set(name="big", value=big),
                    p.ChangePassphrase(old=TEST_PASSPHRASE, new="a new passphrase"),
                    p.Rekey(proof=TEST_PASSPHRASE)):
        _no_space(c.call(request))
    out = run_credd("set", "big", "--value-stdin", input=big, env=env)
    assert out.returncode == 1 and "nothing was changed" in out.stderr, out.stderr
    assert "internal error" not in out.stderr and "bug" not in out.stderr

    _full_last_page(os.path.join(state, "audit.jsonl"))
    _no_space(c.call(p.Get(name="e03")))  # its audit line cannot be written: not revealed
    assert isinstance(c.call(p.Lock()), p.Ok)  # the seal cannot be written either
    assert "the metadata seal was skipped: no space left" in agent.log()

    os.unlink(filler)
    assert c.call(p.Unlock(passphrase=TEST_PASSPHRASE)).state == "unlocked"
    assert c.call(p.Get(name="e03")).value == f"{SENTINEL}-3"  # nothing was lost
    assert isinstance(c.call(p.Set(name="big", value=big)), p.EntryReply)  # the same agent
    assert isinstance(c.call(p.ChangePassphrase(old=TEST_PASSPHRASE, new="a new passphrase")),
                      p.Ok)
    assert c.call(p.Status()).pid == agent.pid
    agent.stop()
    again = make_agent(env=env)
    c = raw(again)
    assert c.call(p.Unlock(passphrase="a new passphrase")).state == "unlocked"
    names = [e.name for e in c.call(p.List()).entries]
    assert names == ["big"] + [f"e{i:02d}" for i in range(20)]
    assert c.call(p.Check()).problems == []
