"""A read racing lock() ends in LockedError (or its right answer), never NotFound or another
error: the session it started with is wiped, and a wiped session answers LockedError."""

from __future__ import annotations

import threading

import pytest

from credd.errors import LockedError
from credd.protocol import Field, Set
from credd.vault import Vault
from tests.conftest import TEST_PASSPHRASE

#: Rounds of reader-versus-lock: without the guard the first NotFound came within ~35.
ROUNDS = 150


@pytest.mark.timeout(120)
def test_a_reader_racing_lock_gets_locked_error_never_not_found(vault: Vault):
    vault.put(Set(name="a", value="1", fields=[Field(name="f", value="2")]))
    for _round in range(ROUNDS):
        keys = vault.session.keys
        reading = threading.Event()
        outcome: list[object] = []

        def reader() -> None:
            reads = 0
            try:
                while True:
                    assert (vault.get("a"), vault.reveal("a").secret_fields) == ("1", {"f": "2"})
                    assert vault.describe("a").name == "a"
                    reads += 1
                    reading.set()
            except LockedError:
                outcome.append(reads)
            except BaseException as exc:  # surfaced below
                outcome.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        assert reading.wait(10), "the reader never read"
        locker = threading.Thread(target=vault.lock)
        locker.start()
        locker.join(10)
        thread.join(10)
        assert not thread.is_alive(), "the reader kept reading after the lock"
        assert len(outcome) == 1 and isinstance(outcome[0], int) and outcome[0] > 0, outcome
        assert not vault.unlocked and bytes(keys.dek) == bytes(32)
        vault.unlock(TEST_PASSPHRASE)
