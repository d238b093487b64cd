"""Attack 3: random interleavings of the lock lifecycle across connections, with SIGUSR1.

One real agent serves every Hypothesis example; a small model (locked or not, the
passphrase, each entry's value) predicts every reply of the sequential steps. Bursts
send several requests on different connections before reading any reply, so the agent
interleaves them itself; their replies are checked against what any order allows, and
the model is resynchronised from `status`. Invariants, after every reply:

- while the model is locked, no reply carries a secret value or an entry name;
- a reply is either the predicted one or a typed `error`;
- the number of secret-revealing replies equals the number of audit reveal lines.
"""

from __future__ import annotations

import signal
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credd import protocol as p
from tests.conftest import SENTINEL, TEST_PASSPHRASE
from tests.security.conftest import REVEALING, Raw, reveal_lines, status, wait_for

NAMES = ("svc/alpha", "svc/beta", "gamma")
PASSPHRASES = (TEST_PASSPHRASE, TEST_PASSPHRASE + " 2")
CONNS = 3
MAX_FAILURES = 3  # bad unlocks per example: the throttle window stays under 2 s
SHORT_IDLE = 0.3  # the idle timeout of `unlock_short`; `wait` sleeps past it

conn_i = st.integers(0, CONNS - 1)
name_i = st.sampled_from(NAMES)
simple_op = st.one_of(
    st.tuples(st.just("unlock"), conn_i),
    st.tuples(st.just("unlock_short"), conn_i),
    st.tuples(st.just("wait"),),
    st.tuples(st.just("unlock_bad"), conn_i),
    st.tuples(st.just("lock"), conn_i),
    st.tuples(st.just("get"), conn_i, name_i),
    st.tuples(st.just("get_many"), conn_i, st.lists(name_i, min_size=1, max_size=3, unique=True)),
    st.tuples(st.just("reveal"), conn_i, name_i),
    st.tuples(st.just("set"), conn_i, name_i),
    st.tuples(st.just("delete"), conn_i, name_i),
    st.tuples(st.just("passwd"), conn_i, st.booleans()),
    st.tuples(st.just("list"), conn_i),
    st.tuples(st.just("status"), conn_i),
    st.tuples(st.just("sigusr1")),
)
burst_part = st.one_of(
    st.tuples(st.just("unlock")), st.tuples(st.just("lock")), st.tuples(st.just("get"), name_i),
    st.tuples(st.just("reveal"), name_i), st.tuples(st.just("set"), name_i),
    st.tuples(st.just("list"),), st.tuples(st.just("sigusr1")),
)
op = st.one_of(simple_op, st.tuples(st.just("burst"),
                                    st.lists(burst_part, min_size=2, max_size=CONNS)))


def _cap_failures(ops: list) -> list:
    """Keep at most MAX_FAILURES wrong-passphrase steps (each one grows the throttle)."""
    out, failures = [], 0
    for o in ops:
        bad = o[0] == "unlock_bad" or (o[0] == "passwd" and not o[2])
        if bad:
            failures += 1
            if failures > MAX_FAILURES:
                continue
        out.append(o)
    return out


class Model:
    def __init__(self) -> None:
        self.locked = False
        self.short = False  # unlocked with SHORT_IDLE: it may lock by itself at any moment
        self.passphrase = PASSPHRASES[0]
        self.values: dict[str, str] = {}
        # a burst `set` answered `locked` may still have been committed (see
        # test_races.py): until the next read, either value is possible
        self.maybe: dict[str, set[str]] = {}
        self.counter = 0
        self.revealed = 0  # secret-revealing replies received

    def fresh_value(self, name: str) -> str:
        self.counter += 1
        return f"{SENTINEL}-{name}-{self.counter}"

    def possible(self, name: str) -> set[str | None]:
        """What a read of `name` may find (None: no such entry)."""
        return self.maybe.get(name) or {self.values.get(name)}

    def expect(self, name: str, got: str | None) -> None:
        """`got` was read for `name` (None: not found): it must be a possible value."""
        allowed = self.maybe.pop(name, None) or {self.values.get(name)}
        assert got in allowed, (name, got, allowed)
        if got is None:
            self.values.pop(name, None)
        else:
            self.values[name] = got

    def other_passphrase(self) -> str:
        return PASSPHRASES[1] if self.passphrase == PASSPHRASES[0] else PASSPHRASES[0]


def _no_secrets(body: bytes, what: str) -> None:
    assert SENTINEL.encode() not in body, f"secret bytes in a reply while locked ({what})"
    for name in NAMES:
        assert name.encode() not in body, f"entry name in a reply while locked ({what})"


def _error(reply, *codes: str):
    assert isinstance(reply, p.Error) and reply.code in codes, (codes, reply)


class Driver:
    def __init__(self, agent, conns: list[Raw], model: Model) -> None:
        self.agent, self.conns, self.m = agent, conns, model

    # ---------------------------------------------------------------- requests

    def request(self, o: tuple) -> p._Message | None:
        m, kind = self.m, o[0]
        if kind == "unlock":
            return p.Unlock(passphrase=m.passphrase)
        if kind == "unlock_short":
            return p.Unlock(passphrase=m.passphrase, idle_timeout=SHORT_IDLE)
        if kind == "unlock_bad":
            return p.Unlock(passphrase="wrong " + m.passphrase)
        if kind == "lock":
            return p.Lock()
        if kind == "get":
            return p.Get(name=o[-1])
        if kind == "get_many":
            return p.GetMany(refs=[f"credd://{n}" for n in o[2]])
        if kind == "reveal":
            return p.Reveal(name=o[-1])
        if kind == "set":
            return p.Set(name=o[-1], value=m.fresh_value(o[-1]))
        if kind == "delete":
            return p.Delete(name=o[2])
        if kind == "passwd":
            old = m.passphrase if o[2] else "wrong " + m.passphrase
            return p.ChangePassphrase(old=old, new=m.other_passphrase())
        if kind == "list":
            return p.List()
        if kind == "status":
            return p.Status()
        return None

    def exchange(self, conn: Raw, req) -> tuple[bytes, p.Response]:
        conn.send(req)
        body = conn.recv_body()
        assert body is not None, f"the agent closed the connection on {req!r}"
        return body, p.decode_response(body)

    # ---------------------------------------------------------------- sequential steps

    def step(self, o: tuple) -> None:
        m, kind = self.m, o[0]
        if kind == "sigusr1":
            self.agent.signal(signal.SIGUSR1)
            wait_for(lambda: status(self.conns[0]).state == "locked", 3)
            m.locked = True
            return
        if kind == "wait":  # a clock jump past a short idle timeout, with no request
            time.sleep(SHORT_IDLE + 0.1)
            m.locked = m.locked or m.short
        else:
            req = self.request(o)
            was_locked = m.locked
            body, reply = self.exchange(self.conns[o[1]], req)
            if was_locked:
                _no_secrets(body, repr(req))
            if not self.expired(kind, req, reply, was_locked):
                self.predict(kind, o, req, reply, was_locked)
        s = status(self.conns[0])
        if m.short and not m.locked and s.state == "locked":
            m.locked = True  # the short idle timeout ran out between two steps
        assert s.state == ("locked" if m.locked else "unlocked"), (o, s)

    def expired(self, kind: str, req, reply, locked: bool) -> bool:
        """A short session that locked by itself just before (or during) this request."""
        m = self.m
        if not (m.short and not locked and isinstance(reply, p.Error) and reply.code == "locked"
                and kind not in ("unlock", "unlock_short", "unlock_bad", "lock", "status")):
            return False
        m.locked = True
        if kind == "set":  # see test_races.py: a write racing a lock may yet be committed
            m.maybe[req.name] = m.possible(req.name) | {req.value}
        elif kind == "delete":
            m.maybe[req.name] = m.possible(req.name) | {None}
        return True

    def predict(self, kind: str, o: tuple, req, reply, locked: bool) -> None:
        m = self.m
        if kind in ("unlock", "unlock_short"):
            if isinstance(reply, p.Error):
                # an old short session timing out during the KDF counts as a racing lock
                _error(reply, "rate_limited", *(("locked",) if m.short and not locked else ()))
                m.locked = m.locked or reply.code == "locked"
            else:
                assert isinstance(reply, p.StatusReply) and reply.state == "unlocked", reply
                assert reply.idle_timeout == (SHORT_IDLE if kind == "unlock_short" else 900)
                m.locked, m.short = False, kind == "unlock_short"
        elif kind == "unlock_bad":
            _error(reply, "bad_passphrase", "rate_limited")
        elif kind == "lock":
            assert isinstance(reply, p.Ok), reply
            m.locked = True
        elif kind == "status":
            if m.short and not locked and reply.state == "locked":
                m.locked = True  # expired by itself
            else:
                assert reply.state == ("locked" if locked else "unlocked"), reply
        elif locked:
            _error(reply, "locked")
        elif kind in ("get", "reveal"):
            name = o[-1]
            if isinstance(reply, p.Error):
                _error(reply, "not_found")
                m.expect(name, None)
            else:
                assert isinstance(reply, p.Secret if kind == "get" else p.Revealed), reply
                m.expect(name, reply.value)
                m.revealed += 1
        elif kind == "get_many":
            if isinstance(reply, p.Error):
                _error(reply, "not_found")
                assert SENTINEL not in reply.message
                assert reply.names and all(None in m.possible(r[len("credd://"):])
                                           for r in reply.names), reply
                for ref in reply.names:
                    m.expect(ref[len("credd://"):], None)
            else:
                assert isinstance(reply, p.Secrets), reply
                assert sorted(reply.values) == sorted(f"credd://{n}" for n in o[2])
                for n in o[2]:
                    m.expect(n, reply.values[f"credd://{n}"])
                m.revealed += len(o[2])  # one audit line per distinct name
        elif kind == "set":
            assert isinstance(reply, p.EntryReply), reply
            m.values[o[-1]] = req.value
            m.maybe.pop(o[-1], None)
        elif kind == "delete":
            if isinstance(reply, p.Error):
                _error(reply, "not_found")
                m.expect(o[2], None)
            else:
                assert isinstance(reply, p.EntryReply), reply
                assert m.possible(o[2]) - {None}, o
                m.values.pop(o[2], None)
                m.maybe.pop(o[2], None)
        elif kind == "passwd":
            if o[2] and isinstance(reply, p.Ok):
                m.passphrase = req.new
            elif o[2]:
                _error(reply, "rate_limited")
            else:
                _error(reply, "bad_passphrase", "rate_limited")
        elif kind == "list":
            assert sorted(e.name for e in reply.entries) == sorted(m.values), reply

    # ---------------------------------------------------------------- concurrent bursts

    def burst(self, parts: list[tuple]) -> None:
        m = self.m
        before = {name: m.possible(name) for name in NAMES}
        sent = []
        for conn, part in zip(self.conns, parts):
            if part[0] == "sigusr1":
                self.agent.signal(signal.SIGUSR1)
                continue
            req = self.request(part)
            conn.send(req)
            sent.append((conn, part, req))
        written: dict[str, str] = {}
        for conn, part, req in sent:
            body = conn.recv_body()
            assert body is not None, f"the agent closed the connection on {req!r}"
            reply = p.decode_response(body)
            kind = part[0]
            if p.tag_of(type(reply)) not in REVEALING:
                assert SENTINEL.encode() not in body, f"secret bytes in {reply!r}"
            if kind == "unlock":
                assert isinstance(reply, (p.StatusReply, p.Error)), reply
                if isinstance(reply, p.Error):
                    _error(reply, "rate_limited", "locked")  # locked: a lock raced the KDF
                else:
                    m.short = False
            elif kind == "lock":
                assert isinstance(reply, p.Ok), reply
            elif kind in ("get", "reveal"):
                sets = {q.value for _c, prt, q in sent if prt[0] == "set" and q.name == part[1]}
                if isinstance(reply, p.Error):
                    _error(reply, "locked", "not_found")
                    assert reply.code == "locked" or None in before[part[1]], reply
                else:
                    assert reply.value in before[part[1]] | sets, (kind, part)
                    m.revealed += 1
            elif kind == "set":
                if isinstance(reply, p.Error):
                    _error(reply, "locked")
                    m.maybe[part[1]] = m.maybe.get(part[1], before[part[1]]) | {req.value}
                else:
                    assert isinstance(reply, p.EntryReply), reply
                    written[part[1]] = req.value
            elif kind == "list" and isinstance(reply, p.Error):
                _error(reply, "locked")
                _no_secrets(body, "list")
        m.values.update(written)
        for name in written:
            m.maybe.pop(name, None)
        # SIGUSR1 is asynchronous and may land before or after a burst's unlock is read;
        # without an unlock in the burst, it must lock.
        if any(part[0] == "sigusr1" for part in parts) and not any(
                part[0] == "unlock" for part in parts):
            wait_for(lambda: status(self.conns[0]).state == "locked", 3)
        else:
            time.sleep(0.05)  # let a signal land before the model is resynchronised
        m.locked = status(self.conns[0]).state == "locked"

    # ---------------------------------------------------------------- per example

    def reset(self) -> None:
        """Unlocked, every name set to a value the model knows: a failed example may have
        left the model behind the agent, so nothing is carried over but the passphrase."""
        for passphrase in (self.m.passphrase, self.m.other_passphrase()):
            s = status(self.conns[0])
            if s.retry_after:
                time.sleep(s.retry_after + 0.05)
            reply = self.conns[0].call(p.Unlock(passphrase=passphrase))
            if isinstance(reply, p.StatusReply):
                break
        assert isinstance(reply, p.StatusReply) and reply.state == "unlocked", reply
        self.m.locked, self.m.passphrase, self.m.values, self.m.maybe = False, passphrase, {}, {}
        self.m.short = False
        for name in NAMES:
            self.step(("set", 0, name))


@pytest.fixture
def fuzz_rig(unlocked_agent):
    conns = [Raw(unlocked_agent.socket).hello() for _ in range(CONNS)]
    yield Driver(unlocked_agent, conns, Model())
    for c in conns:
        c.close()


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(ops=st.lists(op, min_size=3, max_size=18).map(_cap_failures))
def test_lock_state_machine_never_leaks(fuzz_rig, ops):
    """One agent, many sequences: the model carries what the agent must remember."""
    d = fuzz_rig
    d.reset()
    d.m.revealed = 0
    audited_before = reveal_lines(d.agent)
    for o in ops:
        if o[0] == "burst":
            d.burst(list(o[1]))
        else:
            d.step(o)
    assert reveal_lines(d.agent) - audited_before == d.m.revealed, "reveals != audit lines"
    assert d.agent.proc.poll() is None
