"""The keyring backend against keyring's own backend suite (`BackendBasicTests`) through a
real agent, and what that suite does not ask: any string keyring accepts as a service or
username stays itself and distinct from every other, and entries written by the first,
lossy naming are still read, then moved on the next write."""

from __future__ import annotations

import pytest
from keyring.errors import PasswordDeleteError
from keyring.testing.backend import BackendBasicTests

from credd.integrations.keyring_backend import CreddKeyring, entry_name, legacy_name
from credd.integrations.names import MAX_NAME
from credd.protocol import Field


class TestKeyringSuite(BackendBasicTests):
    """keyring's own conformance cases, each against a fresh unlocked agent."""

    @pytest.fixture(autouse=True)
    def _init_properties(self, request, unlocked_agent):
        # keyring's fixture of the same name, made to depend on the agent so that its
        # cleanup (delete_password) runs before the agent stops
        self.keyring = self.init_keyring()
        self.credentials_created = set()
        request.addfinalizer(self.cleanup)

    def init_keyring(self) -> CreddKeyring:
        return CreddKeyring()


AWKWARD = ["u", " u", "u ", " ", "", "\x00", "%", "%00", "%20u", ".", "..", "a/b", "a%2Fb",
           "tab\there", "line\nbreak", "\u202eevil", "e\u0301", "\u00e9", "\u1100\u1161",
           "\uac00", "\u2126", "\u03a9", "x" * 500, "\U0001f511" * 200, "~", "%~"]


def test_every_awkward_pair_is_its_own_entry(client):
    kr = CreddKeyring()
    pairs = [(s, u) for s in ("svc", " svc", "sv\x07c", "s" * 500) for u in AWKWARD]
    for i, (service, username) in enumerate(pairs):
        kr.set_password(service, username, f"pw-{i}")
    for i, (service, username) in enumerate(pairs):
        assert kr.get_password(service, username) == f"pw-{i}", (service, username)
    names = {entry_name(s, u) for s, u in pairs}
    assert len(names) == len(pairs) and max(map(len, names)) <= MAX_NAME
    kept = [m for m in client.list(prefix="keyring/") if m.fields["keyring_service"] == "svc"]
    assert sorted(m.fields["username"] for m in kept) == sorted(AWKWARD)
    kr.delete_password("svc", " u")
    assert kr.get_password("svc", " u") is None and kr.get_password("svc", "u") == "pw-0"


def _legacy(client, service: str, username: str, value: str) -> str:
    """An entry as the first naming wrote it: its service as the label, no service field."""
    name = legacy_name(service, username)
    client.set(name, kind="password", service=service, tags=["keyring"], value=value,
               fields=[Field(name="username", value=username, secret=False)])
    return name


def test_entries_of_the_first_naming_are_read_then_moved(client):
    kr = CreddKeyring()
    old = _legacy(client, "my service", "alice@example.com", "old-pw")
    assert old == entry_name("my service", "alice@example.com")  # plain text: same name
    _legacy(client, "my service", "", "empty-user-pw")            # "" was "%00" before
    assert kr.get_password("my service", "alice@example.com") == "old-pw"
    assert kr.get_password("my service", "") == "empty-user-pw"
    assert kr.get_credential("my service", None) is not None

    kr.set_password("my service", "", "new-pw")
    assert kr.get_password("my service", "") == "new-pw"
    assert [m.name for m in client.trash()] == [legacy_name("my service", "")]
    kr.delete_password("my service", "")
    assert kr.get_password("my service", "") is None  # nothing left to fall back on
    with pytest.raises(PasswordDeleteError):
        kr.delete_password("my service", "")


def test_a_lossy_old_name_never_answers_for_another_pair(client):
    """The first naming put (svc, " u") at keyring/svc/u, where (svc, "u") now lives."""
    kr = CreddKeyring()
    _legacy(client, "svc", " u", "space-pw")
    assert kr.get_password("svc", "u") is None
    assert kr.get_password("svc", " u") == "space-pw"
    kr.set_password("svc", "u", "plain-pw")  # moves the old entry to its own new name
    assert (kr.get_password("svc", "u"), kr.get_password("svc", " u")) == ("plain-pw",
                                                                           "space-pw")
    assert client.describe(entry_name("svc", " u")).fields["username"] == " u"
