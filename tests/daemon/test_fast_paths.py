"""The request path's shortcuts change nothing a client can see: cached list pages follow
every write, get_many decrypts an entry once for many refs, the client pipelines list
pages and keeps its timeout in the kernel."""

from __future__ import annotations

import os
import socket
import time

import pytest

from credd import errors
from credd import protocol as p
from credd.client import Client
from tests.daemon.inject import agent_running

BIG = "x" * 30_000  # a plain field this size makes a 1 MiB frame hold ~34 entries


def _fill(client: Client, n: int) -> None:
    for i in range(n):
        client.set(f"e{i:03d}", value="v", fields=[p.Field(name="blob", value=BIG, secret=False)])


def test_cached_list_pages_follow_every_write(client):
    _fill(client, 80)  # three pages
    first = client.list()
    assert [m.name for m in first] == [f"e{i:03d}" for i in range(80)]
    assert client.list() == first  # served again, now from the encoded pages

    client.set("e005", tags=["changed"], merge=True)  # inside the first page
    client.set("e0405", value="v")                   # a new entry between two old ones
    client.delete("e079")                            # the last one goes to the trash
    again = client.list()
    names = [m.name for m in again]
    assert names == sorted({*(f"e{i:03d}" for i in range(79)), "e0405"})
    assert next(m for m in again if m.name == "e005").tags == ("changed",)

    client.lock()  # the lock drops the pages with the rest of the unlocked state
    with pytest.raises(errors.LockedError):
        client.list()


def test_list_error_mid_way_leaves_the_connection_usable(client):
    client.lock()
    with pytest.raises(errors.LockedError):
        client.list()
    assert client.status().state == "locked"  # the same connection, nothing left unread


#: Run by the agent (tests/daemon/inject.py): logs every secret read the handlers ask of
#: the vault, the one place an entry's secret column is decrypted.
SECRET_READ_SPY = """
import os
from credd.vault.vault import Vault

def _spy(method):
    def logged(self, name, *args):
        with open(os.environ["CREDD_TEST_SECRET_READS"], "a") as log:
            log.write(f"{method.__name__} {name} {args}\\n")
        return method(self, name, *args)
    return logged

Vault.get, Vault.reveal = _spy(Vault.get), _spy(Vault.reveal)
"""


def test_get_many_decrypts_an_entry_once_for_all_its_refs(make_agent, credd_env, tmp_path):
    reads = tmp_path / "secret-reads.log"
    agent = agent_running(make_agent, credd_env, tmp_path, SECRET_READ_SPY,
                          CREDD_TEST_SECRET_READS=str(reads))
    agent.init_and_unlock()
    client = agent.client()
    client.set("db/prod", value="pw", fields=[p.Field(name="user", value="app", secret=False),
                                              p.Field(name="token", value="tk")])
    client.set("bare", fields=[p.Field(name="token", value="t2")])  # no value
    refs = ["credd://db/prod", "credd://db/prod/user", "credd://db/prod/token", "db/prod",
            "credd://bare/token"]
    reads.write_text("")
    assert client.get_many(refs) == {"credd://db/prod": "pw", "credd://db/prod/user": "app",
                                     "credd://db/prod/token": "tk", "db/prod": "pw",
                                     "credd://bare/token": "t2"}
    # three refs need db/prod's secrets (its value twice, a secret field): one read; the plain
    # field comes from the metadata; bare's one ref is one read
    assert sorted(line.split()[1] for line in reads.read_text().splitlines()) == [
        "bare", "db/prod"]
    assert list(client.get_many(refs)) == refs  # in the order asked
    with pytest.raises(errors.NotFound, match="no value"):
        client.get_many(["credd://bare", "credd://bare/token"])
    client.close()


def test_client_timeout_is_kept_by_the_kernel(tmp_path):
    """An agent that accepts and never answers: the client gives up after its timeout."""
    path = str(tmp_path / "silent.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(1)
    try:
        started = time.monotonic()
        with pytest.raises(errors.AgentUnavailable, match="did not answer in time"):
            Client(path, timeout=0.3).status()
        assert time.monotonic() - started < 5
    finally:
        server.close()
