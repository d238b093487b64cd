"""binding.py's walk over real processes: who runs inside a registered session root."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from credd.daemon import binding as b
from credd.daemon.binding import OWNER, Binding, Sessions, Unidentified
from credd.grants import make_grant

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")


def _grant(names=("a/*",)):
    return make_grant(list(names), "use", 3600)


def _tree(depth: int) -> tuple[subprocess.Popen, list[int]]:
    """A chain of `depth` shells under a root, each the parent of the next; the pids, root
    first (read back from the leaf's ancestry)."""
    script = 'f() { if [ "$1" -gt 0 ]; then f $(($1 - 1)) & wait; else echo $$ $BASHPID; ' \
             'exec sleep 60; fi; }; f ' + str(depth)
    root = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, text=True)
    leaf = int(root.stdout.readline().split()[1])
    chain, pid = [], leaf
    while pid != root.pid:
        chain.append(pid)
        pid = b.parent_and_start(pid)[0]
    return root, [root.pid, *reversed(chain)]


@pytest.fixture
def tree():
    made: list[tuple[subprocess.Popen, list[int]]] = []

    def make(depth: int = 2) -> list[int]:
        root, pids = _tree(depth)
        made.append((root, pids))
        return pids
    yield make
    for root, pids in made:
        for pid in reversed(pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        root.wait()


def test_no_session_reads_nothing(monkeypatch):
    monkeypatch.setattr(b, "parent_and_start", lambda pid: (_ for _ in ()).throw(OSError()))
    assert Sessions().binding_for(os.getpid()) is OWNER
    assert Sessions().binding_for(None) is OWNER


def test_the_walk_stops_below_the_oldest_root(tree, monkeypatch):
    """A process older than every root is in no session, nor are its ancestors: the walk
    reads no further (this test process started long before the tree)."""
    root, _middle, leaf = tree(2)
    sessions = Sessions()
    sessions.add(root, Binding(grant=_grant()))
    read = []
    real = b.parent_and_start
    monkeypatch.setattr(b, "parent_and_start", lambda pid: read.append(pid) or real(pid))
    assert sessions.binding_for(os.getpid()) is OWNER and read == [os.getpid()]
    read.clear()
    assert sessions.binding_for(leaf).grant is not None and read[-1] in (root, os.getpid())


def test_descendants_are_bound_others_are_not(tree):
    root, middle, leaf = tree(2)
    sessions = Sessions()
    grant = _grant()
    sid = sessions.add(root, Binding(grant=grant))
    for pid in (root, middle, leaf):
        bound = sessions.binding_for(pid)
        assert (bound.grant, bound.session, bound.via) == (grant, sid, "session")
    assert sessions.binding_for(os.getpid()) is OWNER  # the root's parent is not inside
    sessions.remove(sid)
    assert sessions.binding_for(leaf) is OWNER and len(sessions) == 0


def test_nested_sessions_bind_by_all(tree):
    root, middle, leaf = tree(2)
    sessions = Sessions()
    outer, inner = _grant(["a/*"]), _grant(["a/b/*"])
    sessions.add(root, Binding(grant=outer))
    sid = sessions.add(middle, Binding(grant=inner))
    bound = sessions.binding_for(leaf)
    assert bound.grant == inner and bound.session == sid and bound.outer == (outer,)
    assert bound.policy.covers("a/b/c") and not bound.policy.covers("a/x")
    assert sessions.binding_for(root).grant == outer


def test_a_reused_pid_is_not_the_root(tree):
    root, _middle, leaf = tree(2)
    sessions = Sessions()
    sessions.add(root, Binding(grant=_grant()))
    _parent, start = b.parent_and_start(root)
    # the same pid with another start time: what a reused pid looks like
    key = next(iter(sessions._roots))
    sessions._roots[(root, start + 1)] = sessions._roots.pop(key)
    assert sessions.binding_for(leaf) is OWNER


def test_gone_peer_is_unidentified_while_sessions_exist(tree):
    root, *_ = tree(1)
    sessions = Sessions()
    sessions.add(root, Binding(grant=_grant()))
    dead = subprocess.Popen(["true"])
    dead.wait()
    with pytest.raises(Unidentified):
        sessions.binding_for(dead.pid)
    with pytest.raises(Unidentified):
        sessions.binding_for(None)


def test_add_a_gone_process_fails(tree):
    dead = subprocess.Popen(["true"])
    dead.wait()
    with pytest.raises((ProcessLookupError, FileNotFoundError)):
        Sessions().add(dead.pid, Binding(grant=_grant()))


def test_deep_tree(tree):
    pids = tree(60)
    sessions = Sessions()
    sessions.add(pids[0], Binding(grant=_grant()))
    assert sessions.binding_for(pids[-1]).grant is not None
    # the best of a few: one walk can lose the CPU on a loaded machine (87 ms seen at load 7)
    best = min(_timed(lambda: sessions.binding_for(pids[-1])) for _ in range(5))
    assert best < 0.05  # generous here; bench/grants_bench.py measures


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


ORPHANED = r"""
import os, subprocess, sys
from credd import subreaper
from credd.daemon.binding import Binding, Sessions, Unidentified
from credd.grants import make_grant

subreaper.become_subreaper()  # as the agent is: a dead root's orphans come to us
root = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; exec sleep 60"],
                        stdout=subprocess.PIPE, text=True)
orphan = int(root.stdout.readline())
sessions = Sessions(os.getpid())
sessions.add(root.pid, Binding(grant=make_grant(["a/*"], "use", 3600)))
assert sessions.binding_for(orphan).grant is not None
root.kill()
root.wait()  # the root is gone, its session still registered: the orphan is now ours
try:
    sessions.binding_for(orphan)
    print("owner")
except Unidentified:
    print("refused")
print(sessions.binding_for(os.getppid()).owner)  # a process outside the agent's tree
os.kill(orphan, 9)
"""


def test_a_dead_roots_orphan_below_the_agent_is_refused():
    """A run's subreaper killed from inside: its orphans come to the agent (a subreaper);
    the walk, stopped at the first ancestor older than every root, still sees the agent
    there and refuses them rather than take them for the owner."""
    r = subprocess.run([sys.executable, "-c", ORPHANED], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["refused", "True"]
