"""`credd keyring enroll | unlock | remove` against a real file-based keyring (keyrings.alt).

PlaintextKeyring keeps its file under $XDG_DATA_HOME/python_keyring, which the
isolated environment points into the test's temporary directory.
"""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest

from credd.errors import BadPassphrase
from tests.conftest import TEST_PASSPHRASE

PLAINTEXT = "keyrings.alt.file.PlaintextKeyring"
PROOF = ("--passphrase-stdin",)  # adding or removing a slot needs the passphrase


@pytest.fixture
def kr_env(credd_env, monkeypatch):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", PLAINTEXT)
    return dict(credd_env, PYTHON_KEYRING_BACKEND=PLAINTEXT)


def stored_key(vault: str) -> str | None:
    from keyrings.alt.file import PlaintextKeyring
    return PlaintextKeyring().get_password("credd", f"vault:{vault}")


def state(run_credd, env) -> str:
    return run_credd("status", env=env).stdout.split()[1]


def test_enroll_lock_unlock_remove(unlocked_agent, run_credd, kr_env, detached):
    refused = run_credd("keyring", "enroll", *PROOF, input="not the passphrase", env=kr_env)
    assert refused.returncode == 6 and stored_key(unlocked_agent.vault) is None
    enroll = run_credd("keyring", "enroll", *PROOF, input=TEST_PASSPHRASE, env=kr_env)
    assert enroll.returncode == 0, enroll.stderr
    assert "unencrypted on disk" in enroll.stderr  # the plaintext backend is called out
    key = base64.urlsafe_b64decode(stored_key(unlocked_agent.vault))
    assert len(key) == 32

    run_credd("lock", env=kr_env, check=True)
    assert state(run_credd, kr_env) == "locked"
    unlock = run_credd("keyring", "unlock", "--timeout", "5m", env=kr_env)
    assert unlock.returncode == 0, unlock.stderr
    assert state(run_credd, kr_env) == "unlocked"

    # Like `credd unlock`, it starts an agent when none answers.
    unlocked_agent.stop()
    unlock = run_credd("keyring", "unlock", env=kr_env)
    assert unlock.returncode == 0, unlock.stderr
    status = run_credd("status", "--json", env=kr_env).stdout
    detached.append(int(status.split('"pid":')[1].split(",")[0]))
    assert '"state": "unlocked"' in status

    remove = run_credd("keyring", "remove", *PROOF, input=TEST_PASSPHRASE, env=kr_env)
    assert remove.returncode == 0, remove.stderr
    assert "removed the keyring slot" in remove.stdout and "deleted the key" in remove.stdout
    assert stored_key(unlocked_agent.vault) is None
    run_credd("lock", env=kr_env, check=True)
    again = run_credd("keyring", "unlock", env=kr_env)
    assert again.returncode == 5 and "holds no credd key" in again.stderr
    from credd.client import Client
    with Client(unlocked_agent.socket) as c, pytest.raises(BadPassphrase):
        c.unlock(key=key)  # the slot is gone too, not just the stored key


def test_enroll_while_locked_changes_nothing(agent, run_credd, kr_env):
    agent.init_and_unlock()
    run_credd("lock", env=kr_env, check=True)
    result = run_credd("keyring", "enroll", *PROOF, input=TEST_PASSPHRASE, env=kr_env)
    assert result.returncode == 3, result.stderr
    assert stored_key(agent.vault) is None


def test_a_damaged_stored_key_is_reported(unlocked_agent, run_credd, kr_env):
    from keyrings.alt.file import PlaintextKeyring
    PlaintextKeyring().set_password("credd", f"vault:{unlocked_agent.vault}", "not a key")
    result = run_credd("keyring", "unlock", env=kr_env)
    assert result.returncode == 6 and "damaged" in result.stderr


def test_no_usable_keyring_says_how_to_unlock_instead(unlocked_agent, run_credd, credd_env):
    env = dict(credd_env, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    for action in ("enroll", "unlock"):
        result = run_credd("keyring", action, env=env)
        assert result.returncode == 5, result.stderr
        assert "no usable OS keyring" in result.stderr and "credd unlock" in result.stderr


def test_plaintext_keyring_is_not_used_unless_chosen(unlocked_agent, run_credd, credd_env):
    """On a headless machine keyring falls back to keyrings.alt's plaintext file, and with an
    agent running credd's own backend ranks first: neither may keep the vault's key."""
    viable = subprocess.run(
        [sys.executable, "-c", "import keyring.backend as b\n"
         "for k in b.get_all_keyring(): print(type(k).__module__ + '.' + type(k).__name__)"],
        env=credd_env, capture_output=True, text=True).stdout.split()
    others = [name for name in viable if "Plaintext" not in name and not name.startswith(
        ("credd.", "keyring.backends.fail", "keyring.backends.null", "keyring.backends.chainer"))]
    if others:
        pytest.skip(f"this machine has a real keyring: {others}")
    result = run_credd("keyring", "enroll", env=credd_env)
    assert result.returncode == 5 and "no usable OS keyring" in result.stderr


def test_keyring_key_is_the_seam_for_unlock(unlocked_agent, run_credd, kr_env, monkeypatch):
    """`credd unlock --keyring` calls keyring_key(): it returns the enrolled key."""
    import keyring.core
    from keyrings.alt.file import PlaintextKeyring

    from credd.cli.keyring_cmd import keyring_key

    run_credd("keyring", "enroll", *PROOF, input=TEST_PASSPHRASE, env=kr_env, check=True)
    monkeypatch.setattr(keyring.core, "_keyring_backend", PlaintextKeyring())  # not a cached one
    key = keyring_key()
    assert base64.urlsafe_b64encode(key).decode() == stored_key(unlocked_agent.vault)
    with unlocked_agent.client() as c:
        c.lock()
        assert c.unlock(key=key).state == "unlocked"


def test_unlock_keyring_flag_and_auto_start(unlocked_agent, run_credd, kr_env, detached):
    """`credd unlock --keyring` uses the enrolled key, and starts an agent when none answers."""
    run_credd("keyring", "enroll", *PROOF, input=TEST_PASSPHRASE, env=kr_env, check=True)
    run_credd("lock", env=kr_env, check=True)
    unlock = run_credd("unlock", "--keyring", env=kr_env)
    assert unlock.returncode == 0, unlock.stderr
    assert state(run_credd, kr_env) == "unlocked"

    unlocked_agent.stop()
    assert run_credd("status", env=kr_env).returncode == 4  # other commands never start one
    unlock = run_credd("unlock", "--passphrase-stdin", input="wrong passphrase\n", env=kr_env)
    status = run_credd("status", "--json", env=kr_env)
    detached.append(int(status.stdout.split('"pid":')[1].split(",")[0]))
    # an agent was started, then the passphrase refused
    assert unlock.returncode == 6, unlock.stderr
    assert '"state": "locked"' in status.stdout
